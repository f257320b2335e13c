/**
 * MoE layer benchmark: forward+backward time of the MoE layer against a dense FFN with the same
 * per-token FLOPs (d -> h -> d, gelu), at capacity factors 1.0 and 1.25, and the routing time of
 * every router on the same logits, side by side in one run.
 *
 *   npx tsx bench/moe-layer.ts [--quick] [--backends=wasm,cpu] [--stock-kernels] [--experts=8,32] [--no-routers] [--no-metrics] [--profile=12] [--reps=5] [--paired=15] [--read-gradients] [--xnnpack]
 *
 * On wasm the project's fast kernels (`registerFastKernels`: XNNPACK for batched and transposed
 * matMuls, row-copy gathers) are registered, as `setupBackend` does for training;
 * `--stock-kernels` measures tfjs-backend-wasm's own kernels instead (the numbers before issue 10);
 * `--xnnpack` keeps the fast kernels but runs their matMuls through XNNPACK, as before 1 Dec
 * (`setWasmGemm(false)`), instead of the project's own SIMD kernels.
 * The dense FFN is timed before and after the MoE rows; ratios use the mean of the two.
 * `--paired=n` times instead n pairs of steps alternating the dense FFN and the MoE layer (so that
 * the machine's load hits both alike) and reports the medians of the per-pair ratios, wall and
 * CPU; use it on a loaded machine.
 * `--no-metrics` switches the layers' routing metrics off (`computeMetrics = false`, as the
 * trainer's steps that do not log run). `--profile=n` prints, per row, the n kernels with the most
 * time in one step (`tf.profile`: kernel count and milliseconds per kernel name).
 *
 * Full config (issue 3): 2048 tokens (32 images x 64 patches), d 192, h 768, E in {8, 32}, groups
 * of one image (64 tokens). The cpu backend always runs the --quick sizes (it is far slower).
 * Add a router to ROUTERS to have it timed.
 */
import * as tf from '@tensorflow/tfjs';
import * as os from 'os';
import {backendsFromArgs, benchArgs, machineDescription, measureMatMulPeak, QUICK, selectBackend, timeMs, timeWallCpuMs} from './common';
import {createRouter, moe, registerFastKernels, Router, setWasmGemm, unregisterFastKernels, wasmGemmActive, type RouterSpec} from '@tfjs-moe/router';

const ARGS = benchArgs({
  'stock-kernels': {type: 'boolean'}, experts: {type: 'string'}, 'no-routers': {type: 'boolean'}, 'no-metrics': {type: 'boolean'},
  profile: {type: 'string'}, reps: {type: 'string'}, paired: {type: 'string'}, 'read-gradients': {type: 'boolean'}, xnnpack: {type: 'boolean'},
});

/**
 * One timed step's outputs: the loss plus the sum of every gradient, one scalar, so that a step
 * reads back 4 bytes whatever its parameter count, as a training step does (its optimizer takes the
 * gradients in the backend; the sums still read each gradient once, as the optimizer would).
 * Until 1 Dec every gradient was read back to JS: E x d x h floats twice per MoE step, E times the
 * dense FFN's, so at E 32 19% of this benchmark's CPU time was `readSync` copying gradients out of
 * the wasm heap, charged to the MoE side. `--read-gradients` restores that for comparison.
 */
function settle(value: tf.Scalar, grads: tf.NamedTensorMap): tf.Tensor[] {
  const parts = [value, ...Object.values(grads)];
  if (ARGS['read-gradients']) return parts;
  const out = tf.tidy(() => tf.addN(parts.map((t, i) => (i === 0 ? t : tf.sum(t)))));
  tf.dispose(parts);
  return [out];
}

/** Wall and CPU milliseconds of one call of `step` (outputs read back and freed). */
async function timedStep(step: () => tf.Tensor[]): Promise<{wall: number; cpu: number}> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const out = step();
  for (const t of out) await t.data();
  tf.dispose(out);
  const c = process.cpuUsage(c0);
  return {wall: performance.now() - t0, cpu: (c.user + c.system) / 1000};
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * `--paired=n`: n pairs of (dense step, MoE step), alternating; the medians of each side and of
 * the per-pair ratios MoE / dense, wall and CPU.
 */
async function pairedRatios(dense: () => tf.Tensor[], moeStep: () => tf.Tensor[], pairs: number): Promise<{moeWall: number; moeCpu: number; denseWall: number; denseCpu: number; wall: number; cpu: number}> {
  await timedStep(dense);
  await timedStep(moeStep);
  const d: {wall: number; cpu: number}[] = [];
  const m: {wall: number; cpu: number}[] = [];
  for (let i = 0; i < pairs; i++) {
    d.push(await timedStep(dense));
    m.push(await timedStep(moeStep));
  }
  return {
    moeWall: median(m.map((t) => t.wall)), moeCpu: median(m.map((t) => t.cpu)),
    denseWall: median(d.map((t) => t.wall)), denseCpu: median(d.map((t) => t.cpu)),
    wall: median(m.map((t, i) => t.wall / d[i].wall)), cpu: median(m.map((t, i) => t.cpu / d[i].cpu)),
  };
}

/** With `--profile=n`: the n kernel names with the most time in one call of `step`, with counts. */
async function printProfile(label: string, step: () => tf.Tensor[]): Promise<void> {
  const n = Number(ARGS.profile ?? 0);
  if (!(n > 0)) return;
  const profile = await tf.profile(() => tf.dispose(step()));
  const byName = new Map<string, {count: number; ms: number}>();
  let total = 0;
  for (const k of profile.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    const e = byName.get(k.name) ?? {count: 0, ms: 0};
    e.count++;
    e.ms += ms;
    total += ms;
    byName.set(k.name, e);
  }
  const top = [...byName].sort((a, b) => b[1].ms - a[1].ms).slice(0, n);
  console.log(`  profile ${label}: ${profile.kernels.length} kernels, ${total.toFixed(0)} ms: ${top.map(([k, e]) => `${k} ${e.count}x ${e.ms.toFixed(1)}`).join(', ')}`);
}

interface Sizes {
  images: number;
  patches: number;
  d: number;
  h: number;
  experts: number[];
  reps: number;
}

const FULL: Sizes = {images: 32, patches: 64, d: 192, h: 768, experts: [8, 32], reps: 5};
const SMALL: Sizes = {images: 8, patches: 64, d: 96, h: 384, experts: [8, 32], reps: 3};

/** Routers timed on the same logits. Extend freely (e.g. more sparse-OT gradient modes). */
const ROUTERS: {label: string; spec: RouterSpec}[] = [
  {label: 'topk (k=1, Switch)', spec: {name: 'topk'}},
  {label: 'topk (k=2, GShard)', spec: {name: 'topk', k: 2}},
  {label: 'expert-choice', spec: 'expert-choice'},
  {label: 'sinkhorn (S-BASE, 20 it)', spec: 'sinkhorn'},
  {label: 'sparse-ot (softmax grad)', spec: {name: 'sparse-ot', gradient: 'softmax'}},
  {label: 'sparse-ot (implicit grad)', spec: {name: 'sparse-ot', gradient: 'implicit'}},
  {label: 'sparse-ot (unrolled grad)', spec: {name: 'sparse-ot', gradient: 'unrolled'}},
];

/** MoE layer variants timed against the dense FFN: router and expert matMul mode. */
const VARIANTS: [RouterSpec, 'batched' | 'per-expert'][] = [
  [{name: 'topk'}, 'batched'],
  [{name: 'topk'}, 'per-expert'],
  [{name: 'sparse-ot'}, 'batched'],
];

/** FLOPs of one forward+backward of a d -> h -> d FFN on n tokens: 3 x (2 matMuls of 2 n d h). */
function ffnStepFlops(n: number, d: number, h: number): number {
  return 3 * 2 * 2 * n * d * h;
}

/** Dense FFN baseline with the same per-token FLOPs as one top-1 expert. */
function denseStep(x: tf.Tensor2D, vars: tf.Variable[], r: tf.Tensor2D): () => tf.Tensor[] {
  const [w1, b1, w2, b2] = vars;
  return () => {
    const {value, grads} = tf.variableGrads(() => {
      const hdn = tf.layers.activation({activation: 'gelu'}).apply(tf.add(tf.matMul(x, w1), b1)) as tf.Tensor2D;
      const y = tf.add(tf.matMul(hdn, w2), b2);
      return tf.sum(tf.mul(y, r)) as tf.Scalar;
    }, vars);
    return settle(value, grads);
  };
}

async function benchBackend(backend: string): Promise<void> {
  await selectBackend(backend);
  if (backend === 'wasm') {
    if (ARGS['stock-kernels']) unregisterFastKernels();
    else registerFastKernels();
    setWasmGemm(!ARGS.xnnpack);
  }
  const base = QUICK || backend === 'cpu' ? SMALL : FULL;
  const sized = ARGS.experts ? {...base, experts: ARGS.experts.split(',').map(Number)} : base;
  const sizes = ARGS.reps ? {...sized, reps: Number(ARGS.reps)} : sized;
  const kernels = backend === 'wasm'
    ? (ARGS['stock-kernels'] ? 'stock wasm kernels' : `fast kernels (registerFastKernels), matMuls through ${wasmGemmActive() ? 'the own SIMD kernels (gemm.wat)' : 'XNNPACK'}`)
    : 'stock kernels';
  const tokens = sizes.images * sizes.patches;
  const {d, h, reps} = sizes;
  const peak = await measureMatMulPeak();
  console.log(`\n### ${backend}: ${tokens} tokens (${sizes.images} x ${sizes.patches}), d ${d}, h ${h}; matMul peak ${peak.toFixed(1)} GFLOP/s; ${kernels}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);

  const x3 = tf.randomNormal([sizes.images, sizes.patches, d]) as tf.Tensor3D;
  const x2 = tf.reshape(x3, [tokens, d]) as tf.Tensor2D;
  const r3 = tf.randomNormal([sizes.images, sizes.patches, d]);
  const r2 = tf.reshape(r3, [tokens, d]) as tf.Tensor2D;
  const denseVars = [
    tf.variable(tf.randomNormal([d, h], 0, 0.05)),
    tf.variable(tf.zeros([h])),
    tf.variable(tf.randomNormal([h, d], 0, 0.05)),
    tf.variable(tf.zeros([d])),
  ];
  const flops = ffnStepFlops(tokens, d, h);
  const denseBeforeBoth = await timeWallCpuMs(denseStep(x2, denseVars, r2), reps, 1);
  const denseBefore = denseBeforeBoth.wallMs;
  let denseMs = denseBefore;
  const frac = (ms: number) => ((flops / (ms * 1e6)) / peak * 100).toFixed(1);
  console.log(`dense FFN step: ${denseMs.toFixed(1)} ms (${frac(denseMs)}% of peak), CPU ${denseBeforeBoth.cpuMs.toFixed(1)} ms\n`);
  await printProfile('dense FFN', denseStep(x2, denseVars, r2));
  const rows: {text: (dense: number, denseCpu: number) => string}[] = [];
  console.log('| E | capacity factor | router | MoE step ms | vs dense | MoE step CPU ms | vs dense (CPU) | % of peak (dense-equivalent FLOPs) | dropped |');
  console.log('|---|---|---|---|---|---|---|---|---|');

  const moeMs: Record<number, number> = {};
  const pairs = Number(ARGS.paired ?? 0);
  if (pairs > 0) {
    console.log(`\nPaired (${pairs} alternating dense / MoE steps per row; medians; ratio = median of per-pair ratios), routing metrics ${ARGS['no-metrics'] ? 'off' : 'on'}:\n`);
    console.log('| E | capacity factor | router | MoE step ms (wall / CPU) | dense step ms (wall / CPU) | MoE / dense, wall | MoE / dense, CPU | dropped |');
    console.log('|---|---|---|---|---|---:|---:|---:|');
    for (const E of sizes.experts) {
      for (const cf of [1.0, 1.25]) {
        for (const [spec, expertMatMul] of VARIANTS.filter(([, mode]) => mode === 'batched')) {
          const layer = moe({numExperts: E, hiddenDim: h, router: spec, capacityFactor: cf, activation: 'gelu', expertMatMul});
          layer.build([null, sizes.patches, d]);
          tf.dispose(layer.apply(x3, {training: true}) as tf.Tensor);
          const dropped = layer.lastMetrics?.droppedFraction as number;
          layer.computeMetrics = !ARGS['no-metrics'];
          const step = () => {
            const {value, grads} = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(x3, {training: true}) as tf.Tensor, r3)) as tf.Scalar);
            return settle(value, grads);
          };
          const r = await pairedRatios(denseStep(x2, denseVars, r2), step, pairs);
          console.log(`| ${E} | ${cf} | ${(spec as {name: string}).name} | ${r.moeWall.toFixed(0)} / ${r.moeCpu.toFixed(0)} | ${r.denseWall.toFixed(0)} / ${r.denseCpu.toFixed(0)} | ${r.wall.toFixed(2)}x | ${r.cpu.toFixed(2)}x | ${(dropped * 100).toFixed(1)}% |`);
          layer.disposeLast();
          tf.dispose(layer.getWeights());
        }
      }
    }
    console.log(`\nload average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    tf.dispose([x3, r3, ...denseVars]);
    return;
  }
  for (const E of sizes.experts) {
    for (const cf of [1.0, 1.25]) {
      for (const [spec, expertMatMul] of VARIANTS) {
        const layer = moe({numExperts: E, hiddenDim: h, router: spec, capacityFactor: cf, activation: 'gelu', expertMatMul});
        layer.build([null, sizes.patches, d]);
        if (ARGS['no-metrics']) layer.computeMetrics = false;
        const step = () => {
          const {value, grads} = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(x3, {training: true}) as tf.Tensor, r3)) as tf.Scalar);
          return settle(value, grads);
        };
        const both = await timeWallCpuMs(step, reps, 1);
        const ms = both.wallMs;
        const name = `${(spec as {name: string}).name}${expertMatMul === 'per-expert' ? ' (per-expert matMul)' : ''}`;
        if (cf === 1.0 && name === 'sparse-ot') moeMs[E] = ms;
        // The drop rate comes from one call with metrics (the timed calls may run without).
        layer.computeMetrics = true;
        tf.dispose(layer.apply(x3, {training: true}) as tf.Tensor);
        const dropped = layer.lastMetrics?.droppedFraction as number;
        layer.computeMetrics = !ARGS['no-metrics'];
        await printProfile(`E ${E} cf ${cf} ${(spec as {name: string}).name}${expertMatMul === 'per-expert' ? ' per-expert' : ''}`, step);
        const row = (dense: number, denseCpu: number) =>
          `| ${E} | ${cf} | ${name} | ${ms.toFixed(1)} | ${(ms / dense).toFixed(2)}x | ${both.cpuMs.toFixed(1)} | ${(both.cpuMs / denseCpu).toFixed(2)}x | ${frac(ms)}% | ${(dropped * 100).toFixed(1)}% |`;
        rows.push({text: row});
        console.log(row(denseBefore, denseBeforeBoth.cpuMs));
        layer.disposeLast();
        tf.dispose(layer.getWeights());
      }
    }
  }
  const denseAfter = await timeWallCpuMs(denseStep(x2, denseVars, r2), reps, 1);
  denseMs = (denseBefore + denseAfter.wallMs) / 2;
  const denseCpu = (denseBeforeBoth.cpuMs + denseAfter.cpuMs) / 2;
  console.log(`\ndense FFN step again: ${denseAfter.wallMs.toFixed(1)} ms, CPU ${denseAfter.cpuMs.toFixed(1)} ms; the rows against the means, ${denseMs.toFixed(1)} ms and CPU ${denseCpu.toFixed(1)} ms (load average ${os.loadavg()[0].toFixed(2)}):\n`);
  console.log('| E | capacity factor | router | MoE step ms | vs dense | MoE step CPU ms | vs dense (CPU) | % of peak (dense-equivalent FLOPs) | dropped |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r.text(denseMs, denseCpu));
  if (ARGS['no-routers']) {
    tf.dispose([x3, r3, ...denseVars]);
    return;
  }

  console.log('\nRouting only, on the same logits `<float32>[groups, 64, E]` (capacity factor 1.0): forward, and forward+backward through the combine weights.\n');
  console.log('| E | router | route ms | route+grad ms | route+grad / MoE step (sparse-ot, cf 1.0) |');
  console.log('|---|---|---|---|---|');
  for (const E of sizes.experts) {
    // Logits as tokens with an identity kernel: logits = tokens @ I, the same for every router.
    const logits = tf.randomNormal([sizes.images, sizes.patches, E]) as tf.Tensor3D;
    const rw = tf.randomNormal([sizes.images, E, 64]);
    for (const {label, spec} of ROUTERS) {
      let router: Router;
      try {
        router = createRouter(spec, {numExperts: E});
      } catch (e) {
        console.log(`| ${E} | ${label} | n/a: ${(e as Error).message} | | |`);
        continue;
      }
      router.build([null, null, E]);
      router.setWeights([tf.eye(E)]);
      const capacity = router.computeCapacity(sizes.patches, 1.0);
      const fwd = await timeMs(() => {
        const res = router.route(logits, {training: true, capacity});
        const out = [res.tokenIndices, res.combineWeights];
        tf.dispose([res.auxiliaryLoss, ...Object.values(res.metrics)]);
        return out;
      }, reps, 1);
      const both = await timeMs(() => {
        const g = tf.grad((l: tf.Tensor) => {
          const res = router.route(l as tf.Tensor3D, {training: true, capacity});
          const w = res.combineWeights;
          return tf.add(tf.sum(tf.mul(w, tf.slice(rw, [0, 0, 0], w.shape))), res.auxiliaryLoss);
        })(logits);
        return g;
      }, reps, 1);
      const share = moeMs[E] ? `${((both / moeMs[E]) * 100).toFixed(1)}%` : 'n/a';
      console.log(`| ${E} | ${label} | ${fwd.toFixed(2)} | ${both.toFixed(2)} | ${share} |`);
      tf.dispose(router.getWeights());
    }
    tf.dispose([logits, rw]);
  }
  tf.dispose([x3, r3, ...denseVars]);
}

async function main(): Promise<void> {
  console.log(`MoE layer benchmark${QUICK ? ' (--quick)' : ''}: ${machineDescription()}`);
  for (const backend of backendsFromArgs()) await benchBackend(backend);
}
void main();
