/**
 * `npm run model -w @tfjs-moe/example-browser`: puts a model and held-out digits into
 * public/model/ for the page.
 *
 * - `--from=<dir>`: copy the model that `tfjs-moe train --out <run>` saved in `<run>/model`
 *   (model.json + weight files), the intended path.
 * - `--cli`: run `tfjs-moe train` itself (sparse-OT router, `--steps=<n>` default 300, on
 *   `--examples=<n>` digits, default 3000) and copy the model it saved.
 * - otherwise: build a small V-MoE (`vmoe`, preset 'mnist-tiny', 4 experts, per-example routing)
 *   and fit it briefly on the embedded digits, so the page works without the training CLI.
 *
 * Always writes public/model/heldout.json: 30 held-out digits (3 per class) of the split that
 * training uses (`splitDataset(loadDigits(), {seed: 0})`).
 */
import * as fs from 'fs';
import * as path from 'path';
import {parseArgs} from 'util';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as models from '@tfjs-moe/models';
import '@tfjs-moe/router'; // registers every router for tf.loadLayersModel
import {loadDigits, splitDataset} from '@tfjs-moe/training';
import {saveModelFiles} from './save-model';
import {trainWithCli} from './train-model';

const out = path.resolve(__dirname, '..', 'public', 'model');
/** Command-line flags (unknown ones are an error). */
function flags(): {from?: string; cli?: boolean; steps?: string; examples?: string; epochs?: string} {
  return parseArgs({
    options: {from: {type: 'string'}, cli: {type: 'boolean'}, steps: {type: 'string'}, examples: {type: 'string'}, epochs: {type: 'string'}},
    strict: true,
    allowPositionals: false,
  }).values;
}

/** The default example model: a small V-MoE, or the dense ViT if vmoe is not available. */
export function exampleModel(seed = 0, router: string = 'sparse-ot'): tf.LayersModel {
  const vmoe = (models as Record<string, unknown>).vmoe as ((c: unknown) => tf.LayersModel) | undefined;
  const base = {preset: 'mnist-tiny', depth: 2, seed};
  if (!vmoe) {
    console.warn('vmoe is not available in @tfjs-moe/models yet: using the dense ViT');
    return models.vit(base as never);
  }
  return vmoe({...base, moe: {numExperts: 4, router, groupingMode: 'per-example', evalCapacityFactor: 2}});
}

/** `count` held-out digits, equally many of each class: `{images: number[][784], labels}`. */
export function heldOutDigits(perClass = 3): {images: number[][]; labels: number[]} {
  const {heldOut} = splitDataset(loadDigits(), {seed: 0});
  const images: number[][] = [];
  const labels: number[] = [];
  const pixels = heldOut.height * heldOut.width * heldOut.channels;
  const taken = new Array<number>(heldOut.numClasses).fill(0);
  for (let i = 0; i < heldOut.labels.length; i++) {
    const y = heldOut.labels[i];
    if (taken[y] >= perClass) continue;
    taken[y]++;
    images.push(Array.from(heldOut.images.subarray(i * pixels, (i + 1) * pixels), (v) => Math.round(v * 1000) / 1000));
    labels.push(y);
  }
  return {images, labels};
}

async function main(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.ready();
  fs.mkdirSync(out, {recursive: true});
  const args = flags();
  const arg = (name: 'steps' | 'examples' | 'epochs'): string | undefined => args[name];
  // npm runs workspace scripts in the workspace folder; a relative --from means the caller's folder.
  let from = args.from === undefined ? undefined : path.resolve(process.env.INIT_CWD ?? process.cwd(), args.from);
  if (from !== undefined && !fs.existsSync(path.join(from, 'model.json')) && fs.existsSync(path.join(from, 'model', 'model.json'))) from = path.join(from, 'model');
  if (from !== undefined && !fs.existsSync(path.join(from, 'model.json'))) {
    throw new Error(`--from ${from}: no model.json there (give the run folder of tfjs-moe train --out, or its model/)`);
  }
  if (args.cli) {
    from = await trainWithCli({
      out: path.resolve(__dirname, '..', '..', '..', 'runs', 'browser-example'),
      steps: Number(arg('steps') ?? 300), examples: Number(arg('examples') ?? 3000), timeoutMs: 3600000,
    });
    console.log(`tfjs-moe train wrote ${from}`);
  }
  if (from) {
    for (const f of fs.readdirSync(from)) {
      if (f === 'model.json' || f.endsWith('.bin')) fs.copyFileSync(path.join(from, f), path.join(out, f));
    }
    console.log(`copied the model in ${from} to ${out}`);
  } else {
    const model = exampleModel();
    const {train} = splitDataset(loadDigits(), {seed: 0});
    // The data set is ordered by digit: take evenly spaced examples so every class is present.
    const n = Math.min(Number(arg('examples') ?? 3000), train.labels.length);
    const pick = Array.from({length: n}, (_, i) => Math.floor((i * train.labels.length) / n));
    const pixels = new Float32Array(n * 784);
    pick.forEach((j, i) => pixels.set(train.images.subarray(j * 784, (j + 1) * 784), i * 784));
    const x = tf.tensor4d(pixels, [n, 28, 28, 1]);
    const y = tf.oneHot(tf.tensor1d(pick.map((j) => train.labels[j]), 'int32'), 10);
    const last = model.layers[model.layers.length - 1].getConfig() as {activation?: string};
    model.compile({
      optimizer: tf.train.adam(1e-3),
      loss: last.activation === 'softmax' ? 'categoricalCrossentropy'
        : (yt: tf.Tensor, yp: tf.Tensor) => tf.losses.softmaxCrossEntropy(yt, yp),
      metrics: ['accuracy'],
    });
    await model.fit(x, y, {epochs: Number(arg('epochs') ?? 2), batchSize: 32, verbose: 0, shuffle: true,
      callbacks: {onEpochEnd: (e, logs) => console.log(`epoch ${e + 1}: loss ${logs?.loss?.toFixed(3)} acc ${logs?.acc?.toFixed(3)}`)}});
    tf.dispose([x, y]);
    await saveModelFiles(model, out);
    console.log(`wrote a freshly trained example model to ${out}`);
  }
  fs.writeFileSync(path.join(out, 'heldout.json'), JSON.stringify(heldOutDigits()));
  console.log(`wrote ${path.join(out, 'heldout.json')}`);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(`make-model: ${(e as Error).message}`);
    process.exit(1);
  });
}
