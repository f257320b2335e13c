/**
 * The user's alternative (issue 10 item 4): a plain tfjs convnet, built and trained with
 * tf.layers (`model.fit`), on the main job's data (full MNIST: the same 55,000 training digits,
 * the official 10,000 test digits) and backend (wasm, with the project's fast kernels, which
 * `setupBackend` registers), stopped at a budget of wall seconds or CPU seconds (the main job's),
 * then evaluated on the test set. Prints images/s (wall and per CPU second), test accuracy, the
 * load average and the machine.
 *
 * tfjs-backend-wasm 4.22 has no `Conv2DBackpropFilter` kernel; `bench/wasm-conv-filter-grad.ts`
 * registers one (bench-only; `--check` compares it with the cpu backend's on random shapes first).
 *
 * Run: npx tsx bench/convnet.ts [--filters=8,16] [--kernel=5] [--dense=0] [--batch=128] [--lr=1e-3]
 *        [--epochs=3] [--cpu-seconds=N | --wall-seconds=N] [--backend=wasm] [--check]
 */
import * as tf from '@tensorflow/tfjs';
import * as os from 'os';
import {parseArgs} from 'util';
import {loadSplits, setupBackend, type BackendRequest} from '@tfjs-moe/training';
import {machineDescription} from './common';
import {registerWasmConv2DBackpropFilter} from './wasm-conv-filter-grad';

const {values: args} = parseArgs({
  options: {
    filters: {type: 'string', default: '8,16'},
    kernel: {type: 'string', default: '5'},
    dense: {type: 'string', default: '0'},
    batch: {type: 'string', default: '128'},
    lr: {type: 'string', default: '1e-3'},
    epochs: {type: 'string', default: '3'},
    'cpu-seconds': {type: 'string'},
    'wall-seconds': {type: 'string'},
    backend: {type: 'string', default: 'wasm'},
    check: {type: 'boolean', default: false},
    seed: {type: 'string', default: '0'},
  },
  strict: true,
  allowPositionals: false,
});

const cpuSeconds = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
};

/** The bench kernel against the cpu backend's Conv2DBackpropFilter on random shapes (max abs difference). */
async function check(): Promise<void> {
  const cases: Array<[number[], number[], number | [number, number], 'same' | 'valid']> = [
    [[2, 7, 7, 3], [3, 3, 3, 4], 1, 'same'],
    [[1, 8, 9, 1], [5, 5, 1, 2], 1, 'valid'],
    [[3, 10, 10, 2], [3, 3, 2, 5], 2, 'same'],
    [[2, 6, 5, 4], [2, 3, 4, 3], [2, 1], 'valid'],
    [[1, 1, 1, 1], [1, 1, 1, 1], 1, 'same'],
  ];
  for (const [xs, fs, strides, pad] of cases) {
    const x = tf.randomNormal(xs, 0, 1, 'float32', 1);
    const f = tf.randomNormal(fs, 0, 1, 'float32', 2);
    const grad = (): Float32Array => {
      const xb = tf.tensor4d(x.dataSync(), xs as [number, number, number, number]);
      const g = tf.grad((w: tf.Tensor) => tf.sum(tf.square(tf.conv2d(xb, w as tf.Tensor4D, strides, pad))));
      const out = g(tf.tensor4d(f.dataSync(), fs as [number, number, number, number])).dataSync() as Float32Array;
      xb.dispose();
      return out;
    };
    await tf.setBackend('cpu');
    const want = grad();
    await tf.setBackend(args.backend!);
    const got = grad();
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < want.length; i++) {
      diff = Math.max(diff, Math.abs(want[i] - got[i]));
      scale = Math.max(scale, Math.abs(want[i]));
    }
    console.log(`check x ${xs} filter ${fs} strides ${strides} ${pad}: max |wasm - cpu| ${diff.toExponential(2)} (max |dW| ${scale.toFixed(2)})`);
    if (!(diff <= 1e-4 * Math.max(1, scale))) throw new Error('Conv2DBackpropFilter (bench kernel) disagrees with the cpu backend');
    tf.dispose([x, f]);
  }
}

function buildConvnet(h: number, w: number, c: number, classes: number): tf.LayersModel {
  const filters = args.filters!.split(',').map(Number);
  const k = Number(args.kernel);
  const model = tf.sequential();
  filters.forEach((n, i) => {
    model.add(tf.layers.conv2d({
      ...(i === 0 ? {inputShape: [h, w, c]} : {}),
      filters: n, kernelSize: k, padding: 'same', activation: 'relu', kernelInitializer: tf.initializers.heNormal({seed: Number(args.seed) + i}),
    }));
    model.add(tf.layers.maxPooling2d({poolSize: 2, strides: 2}));
  });
  model.add(tf.layers.flatten());
  if (Number(args.dense) > 0) model.add(tf.layers.dense({units: Number(args.dense), activation: 'relu', kernelInitializer: tf.initializers.heNormal({seed: 99})}));
  model.add(tf.layers.dense({units: classes, activation: 'softmax', kernelInitializer: tf.initializers.glorotUniform({seed: 100})}));
  model.compile({optimizer: tf.train.adam(Number(args.lr)), loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy']});
  return model;
}

async function main(): Promise<void> {
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  await setupBackend(args.backend as BackendRequest);
  if (tf.getBackend() !== args.backend) throw new Error(`backend ${args.backend} is not active (${tf.getBackend()})`);
  if (args.backend === 'wasm') registerWasmConv2DBackpropFilter();
  console.log(`${machineDescription()}; backend ${tf.getBackend()}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  if (args.check) await check();
  const {train, test} = loadSplits('mnist', {seed: Number(args.seed)});
  const n = train.labels.length;
  const shape = [train.height, train.width, train.channels];
  const xs = tf.tensor4d(train.images, [n, ...shape] as [number, number, number, number]);
  const ys = tf.tensor1d(Float32Array.from(train.labels), 'float32');
  const model = buildConvnet(train.height, train.width, train.channels, train.numClasses);
  model.summary(undefined, undefined, (line: string) => console.log(line));
  const testX = tf.tensor4d(test.images, [test.labels.length, ...shape] as [number, number, number, number]);
  const testAccuracy = async (): Promise<number> => {
    const pred = model.predict(testX, {batchSize: 500}) as tf.Tensor;
    const classes = tf.argMax(pred, 1);
    const predicted = await classes.data();
    tf.dispose([pred, classes]);
    let correct = 0;
    for (let i = 0; i < predicted.length; i++) if (predicted[i] === test.labels[i]) correct++;
    return correct / predicted.length;
  };
  const batch = Number(args.batch);
  const cpuBudget = args['cpu-seconds'] === undefined ? Infinity : Number(args['cpu-seconds']);
  const wallBudget = args['wall-seconds'] === undefined ? Infinity : Number(args['wall-seconds']);
  let images = 0;
  let trainCpu = 0;
  let trainWall = 0;
  let batchCpu = 0;
  let batchWall = 0;
  let lastLog = 0;
  // Test accuracy along the way, at each quarter of a CPU budget (outside the timed batches).
  const milestones = Number.isFinite(cpuBudget) ? [0.25, 0.5, 0.75].map((f) => f * cpuBudget) : [];
  const along: {cpuSeconds: number; images: number; testAccuracy: number}[] = [];
  await model.fit(xs, ys, {
    batchSize: batch,
    epochs: Number(args.epochs),
    shuffle: true,
    verbose: 0,
    callbacks: {
      onBatchBegin: async () => {
        batchCpu = cpuSeconds();
        batchWall = performance.now();
      },
      onBatchEnd: async (_b, logs) => {
        images += batch;
        trainCpu += cpuSeconds() - batchCpu;
        trainWall += (performance.now() - batchWall) / 1000;
        const elapsedCpu = cpuSeconds() - cpu0;
        const elapsedWall = (performance.now() - t0) / 1000;
        if (elapsedWall - lastLog > 30) {
          lastLog = elapsedWall;
          console.log(`  ${images} images, loss ${logs?.loss?.toFixed(3)}, acc ${logs?.acc?.toFixed(3)}; ${elapsedWall.toFixed(0)} s wall, ${elapsedCpu.toFixed(0)} CPU-s`);
        }
        if (milestones.length && elapsedCpu >= milestones[0]) {
          milestones.shift();
          const acc = await testAccuracy();
          along.push({cpuSeconds: Math.round(elapsedCpu), images, testAccuracy: acc});
          console.log(`  test accuracy ${(100 * acc).toFixed(2)}% after ${images} images, ${elapsedCpu.toFixed(0)} CPU-s`);
        }
        if (elapsedCpu >= cpuBudget || elapsedWall >= wallBudget) model.stopTraining = true;
      },
    },
  });
  const accuracy = await testAccuracy();
  const result = {
    model: `conv ${args.filters} k${args.kernel}${Number(args.dense) > 0 ? ` dense ${args.dense}` : ''} (${model.countParams()} parameters)`,
    backend: tf.getBackend(),
    batch,
    lr: Number(args.lr),
    trainImages: images,
    epochs: Number((images / n).toFixed(2)),
    testAccuracy: accuracy,
    along,
    wallSeconds: Math.round((performance.now() - t0) / 1000),
    cpuSeconds: Math.round(cpuSeconds() - cpu0),
    imagesPerSecond: Math.round(images / trainWall),
    imagesPerCpuSecond: Math.round(images / trainCpu),
    load: Number(os.loadavg()[0].toFixed(1)),
    machine: machineDescription(),
  };
  console.log(JSON.stringify(result));
  tf.dispose([xs, ys, testX]);
  model.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
