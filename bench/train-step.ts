/**
 * Training-step throughput of the default V-MoE (sparse-OT), the top-k V-MoE and the dense ViT,
 * before and after each speed fix, as images/s and as % of the backend's matMul peak measured in
 * the same process, with kernel counts and kernel milliseconds of one step from `tf.profile`.
 *
 * Variants (all in one process, so their ratios share the machine's load):
 * - `legacy`: tfjs-layers' `LayerNormalization` and a `broadcastTo` class token (the layers of
 *   the models saved before the fix), stock wasm kernels.
 * - `layernorm`: our `LayerNorm` and broadcasting class token, stock wasm kernels.
 * - `fast`: plus `registerFastKernels()` (every matMul through the own SIMD kernels, row gathers).
 * - `fast-xnnpack`: `fast` with its matMuls through XNNPACK (`setWasmGemm(false)`), as before
 *   1 Dec 11:30.
 * - `fast-no-metrics`: `fast` on a step that does not log: the MoE layers' routing metrics
 *   switched off (`withRoutingMetrics(model, false, ...)`, what the trainer does on 9 of 10 steps).
 * - `fast-tensor-ot`: `fast` with the OT solver and the rebalancing step on their tensor path
 *   (`setHostSolvers(false)`: hundreds of tiny kernels per MoE layer), i.e. `fast` before the
 *   host path of the OT core; sparse-OT only (the other models have no OT step).
 *
 * On webgpu (Dawn in Node) the wasm kernel variants do not apply: run `--variants=layernorm`.
 *
 * `npx tsx bench/train-step.ts [--backend=wasm|cpu|webgpu] [--batch=64] [--steps=4] [--models=sparse-ot,topk,dense] [--variants=legacy,layernorm,fast,fast-no-metrics,fast-tensor-ot] [--rounds=1] [--pairs=16] [--capacity-layout] [--xnnpack] [--js-solver]`
 *
 * `--pairs=n` (fast kernels) times n rounds in which every model takes one step in turn, each MoE
 * model with its routing metrics on (what the trainer's logging steps run) and off (its other
 * steps), and prints the medians of per-round ratios (wall and CPU): on a shared machine, load
 * changes hit every entry alike.
 *
 * `--xnnpack` (with `--pairs`) runs the paired steps' matMuls through XNNPACK (`setWasmGemm(false)`).
 *
 * `--js-solver` (with `--pairs`) runs the OT solver's host group loop in JavaScript
 * (`setWasmSolver(false)`, as before 1 Dec 13:00) instead of WebAssembly; the results are the same bits.
 *
 * `--capacity-layout` (with `--pairs`) adds, per MoE model, a step without metrics whose MoE
 * layers run every capacity slot (`compactDispatch = false`, the layout before 1 Dec) instead of
 * the packed filled slots, and prints its ratios to the dense ViT and to the packed step.
 *
 * `--rounds=n` repeats the whole table n times (models interleaved, so that load changes hit all
 * of them) and prints, per round, each model's images/s as a ratio to the others.
 */
import * as tf from '@tensorflow/tfjs';
import {parseArgs} from 'util';
import {replaceLayers, type LayerReplacement} from '@tfjs-moe/models';
import {moeLayers, registerFastKernels, setHostSolvers, setWasmGemm, setWasmSolver, unregisterFastKernels, withRoutingMetrics} from '@tfjs-moe/router';
import {
  AdamW, buildModel, clipByGlobalNorm, forwardFlopsPerImage, releaseWebGPU, setupBackend, trainableVariables, trainStep,
  type BackendRequest, type ModelSpec,
} from '@tfjs-moe/training';
import {machineDescription, measureMatMulPeak} from './common';

const {values: args} = parseArgs({
  options: {
    backend: {type: 'string', default: 'wasm'},
    batch: {type: 'string', default: '64'},
    steps: {type: 'string', default: '4'},
    models: {type: 'string', default: 'sparse-ot,topk,dense'},
    variants: {type: 'string', default: 'legacy,layernorm,fast'},
    quick: {type: 'boolean', default: false},
    top: {type: 'string', default: '0'},
    optimizer: {type: 'boolean', default: false},
    pairs: {type: 'string', default: '0'},
    rounds: {type: 'string', default: '1'},
    'capacity-layout': {type: 'boolean', default: false},
    xnnpack: {type: 'boolean', default: false},
    'js-solver': {type: 'boolean', default: false},
  },
});

const INPUT = {height: 28, width: 28, channels: 1, numClasses: 10};
const SPECS: Record<string, ModelSpec> = {
  'sparse-ot': {router: 'sparse-ot'},
  topk: {router: 'topk'},
  dense: {router: 'dense'},
};

/** The class token as it was before the fix: `tf.broadcastTo` (the Tile kernel and its gradient loop). */
class LegacyClassToken extends tf.layers.Layer {
  static className = 'BenchLegacyClassToken';
  private token!: tf.LayerVariable;
  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const d = (inputShape as number[])[2];
    this.token = this.addWeight('token', [1, 1, d], 'float32', tf.initializers.zeros());
    this.built = true;
  }
  override computeOutputShape(s: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = s as number[];
    return [shape[0], shape[1] + 1, shape[2]];
  }
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      return tf.concat([tf.broadcastTo(this.token.read(), [x.shape[0], 1, x.shape[2] as number]), x], 1);
    });
  }
}
tf.serialization.registerClass(LegacyClassToken);

/** The model with the layers of before the fix (same weights). */
function legacyLayers(model: tf.LayersModel): tf.LayersModel {
  const swaps = new Map<string, LayerReplacement>();
  const copy = (n: tf.layers.Layer, o: tf.layers.Layer) => n.setWeights(o.getWeights());
  for (const layer of model.layers) {
    const cls = layer.getClassName();
    if (cls === 'LayerNorm') {
      const epsilon = (layer.getConfig() as {epsilon: number}).epsilon;
      swaps.set(layer.name, {layer: tf.layers.layerNormalization({epsilon, name: layer.name}), init: copy});
    } else if (cls === 'ClassToken') {
      swaps.set(layer.name, {layer: new LegacyClassToken({name: layer.name}), init: copy});
    }
  }
  const rebuilt = replaceLayers(model, swaps);
  model.dispose();
  return rebuilt;
}

interface Row {
  model: string;
  variant: string;
  kernels: number;
  kernelMs: number;
  stepMs: number;
  /** CPU milliseconds of this process per step (process.cpuUsage: user + system). */
  cpuMs: number;
  imagesPerSecond: number;
  /** Images per CPU second of this process: what an idle core gives, little moved by other processes' load. */
  imagesPerCpuSecond: number;
  percentOfPeak: number;
}

/** Prints the `n` kernels with the most total time in one step (`--top=n`). */
function printTop(kernels: Awaited<ReturnType<typeof tf.profile>>['kernels'], n: number, label: string): void {
  if (n <= 0) return;
  const byName = new Map<string, {count: number; ms: number}>();
  for (const k of kernels) {
    const e = byName.get(k.name) ?? {count: 0, ms: 0};
    e.count++;
    e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    byName.set(k.name, e);
  }
  const top = [...byName].sort((a, b) => b[1].ms - a[1].ms).slice(0, n);
  console.log(`${label}: ${top.map(([k, e]) => `${k} ${e.count}x ${e.ms.toFixed(0)} ms`).join(', ')}`);
}

async function measure(name: string, variant: string, batch: number, steps: number, peak: number): Promise<Row> {
  if (variant.startsWith('fast')) registerFastKernels();
  else unregisterFastKernels();
  setWasmGemm(variant !== 'fast-xnnpack');
  setHostSolvers(variant !== 'fast-tensor-ot');
  let model = buildModel(SPECS[name], INPUT);
  if (variant === 'legacy') model = legacyLayers(model);
  const variables = trainableVariables(model);
  const optimizer = new AdamW(variables, {weightDecay: 1e-4});
  const xs = tf.randomUniform([batch, 28, 28, 1]);
  const ys = tf.tensor1d(Array.from({length: batch}, (_, i) => i % 10), 'int32') as tf.Tensor1D;
  const step = async () => {
    const out = withRoutingMetrics(model, variant !== 'fast-no-metrics', () => trainStep(model, variables, optimizer, xs, ys, 1e-3, 1));
    await out.loss.data();
    tf.dispose(Object.values(out));
  };
  await step(); // warm-up (kernel setup, XNNPACK operators)
  const profile = await tf.profile(step);
  printTop(profile.kernels, Number(args.top), `${name} ${variant}`);
  const kernelMs = profile.kernels.reduce((s, k) => s + (typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0), 0);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await step();
  const stepMs = (performance.now() - t0) / steps;
  const c = process.cpuUsage(c0);
  const cpuMs = (c.user + c.system) / 1000 / steps;
  const imagesPerSecond = (batch * 1000) / stepMs;
  const imagesPerCpuSecond = (batch * 1000) / cpuMs;
  // A training step is about 3 forward passes of matMul work (forward, dX and dW).
  const percentOfPeak = (100 * 3 * forwardFlopsPerImage(SPECS[name], INPUT) * imagesPerSecond) / (peak * 1e9);
  optimizer.dispose();
  tf.dispose([xs, ys]);
  model.dispose();
  return {model: name, variant, kernels: profile.kernels.length, kernelMs, stepMs, cpuMs, imagesPerSecond, imagesPerCpuSecond, percentOfPeak};
}

/** Wall and CPU milliseconds of one call of `fn` (awaited). */
async function timed(fn: () => Promise<void>): Promise<{wall: number; cpu: number}> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const c = process.cpuUsage(c0);
  return {wall: performance.now() - t0, cpu: (c.user + c.system) / 1000};
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * `--pairs=n`: every model of `--models` built once (fast kernels); n rounds, each running one
 * training step of every entry in turn: each MoE model with its routing metrics on (a logging
 * step) and off (the other steps), the dense ViT once, in reversed order every other round. Prints the median step times and the
 * medians of per-round ratios, so that load changes on a shared machine hit all entries alike.
 */
async function pairedSteps(names: string[], batch: number, rounds: number): Promise<void> {
  registerFastKernels();
  setWasmGemm(!args.xnnpack);
  setHostSolvers(true);
  setWasmSolver(!args['js-solver']);
  const xs = tf.randomUniform([batch, 28, 28, 1]);
  const ys = tf.tensor1d(Array.from({length: batch}, (_, i) => i % 10), 'int32') as tf.Tensor1D;
  const built = names.map((name) => {
    const model = buildModel(SPECS[name], INPUT);
    const variables = trainableVariables(model);
    return {name, model, variables, optimizer: new AdamW(variables, {weightDecay: 1e-4})};
  });
  const entries = built.flatMap((b) => (b.name === 'dense' ? [{label: 'dense', b, metrics: true, compact: true}] : [
    {label: `${b.name} metrics off`, b, metrics: false, compact: true},
    {label: `${b.name} metrics on`, b, metrics: true, compact: true},
    ...(args['capacity-layout'] ? [{label: `${b.name} metrics off, capacity layout`, b, metrics: false, compact: false}] : []),
  ]));
  const step = (e: (typeof entries)[number]) => async () => {
    for (const layer of moeLayers(e.b.model)) layer.compactDispatch = e.compact ? 'auto' : false;
    const out = withRoutingMetrics(e.b.model, e.metrics, () => trainStep(e.b.model, e.b.variables, e.b.optimizer, xs, ys, 1e-3, 1));
    await out.loss.data();
    tf.dispose(Object.values(out));
  };
  for (const e of entries) await step(e)(); // warm-up
  const times = new Map<string, {wall: number; cpu: number}[]>(entries.map((e) => [e.label, []]));
  for (let r = 0; r < rounds; r++) {
    // Reversed every other round: a step's cost depends on what ran before it (garbage, heap state).
    for (const e of r % 2 === 0 ? entries : [...entries].reverse()) times.get(e.label)!.push(await timed(step(e)));
  }
  console.log(`paired steps, batch ${batch}, ${rounds} rounds (median wall / CPU ms per step, images/s by wall):`);
  for (const [label, t] of times) {
    const wall = median(t.map((x) => x.wall));
    console.log(`  ${label}: ${wall.toFixed(0)} / ${median(t.map((x) => x.cpu)).toFixed(0)} ms, ${((batch * 1000) / wall).toFixed(0)} images/s`);
  }
  const ratio = (a: string, b: string) => {
    const ta = times.get(a);
    const tb = times.get(b);
    if (!ta || !tb) return;
    // Throughput ratio a / b = step time b / a, per round.
    const wall = median(ta.map((x, i) => tb[i].wall / x.wall));
    const cpu = median(ta.map((x, i) => tb[i].cpu / x.cpu));
    console.log(`  images/s ${a} / ${b}: wall ${wall.toFixed(3)}, CPU ${cpu.toFixed(3)}`);
  };
  for (const name of names.filter((n) => n !== 'dense')) ratio(`${name} metrics off`, `${name} metrics on`);
  ratio('sparse-ot metrics off', 'topk metrics off');
  ratio('sparse-ot metrics off', 'dense');
  ratio('topk metrics off', 'dense');
  ratio('sparse-ot metrics on', 'dense');
  for (const name of names.filter((n) => n !== 'dense')) {
    ratio(`${name} metrics off, capacity layout`, 'dense');
    ratio(`${name} metrics off`, `${name} metrics off, capacity layout`);
  }
  for (const b of built) {
    b.optimizer.dispose();
    b.model.dispose();
  }
  tf.dispose([xs, ys]);
}

/**
 * The optimizer update alone on the default V-MoE's variables: AdamW as one flat vector (now)
 * against the per-variable update it replaced (clipping then ~15 ops and scalar uploads per
 * variable, written out here as it was).
 */
async function optimizerComparison(): Promise<void> {
  const model = buildModel(SPECS['sparse-ot'], INPUT);
  const variables = trainableVariables(model);
  const grads = Object.fromEntries(variables.map((x) => [x.name, tf.randomNormal(x.shape)]));
  const flat = new AdamW(variables, {weightDecay: 1e-4});
  const m = variables.map((x) => tf.variable(tf.zerosLike(x), false));
  const v = variables.map((x) => tf.variable(tf.zerosLike(x), false));
  let t = 0;
  const perVariable = () => tf.tidy(() => {
    t++;
    const {grads: clipped, norm} = clipByGlobalNorm(grads, 1);
    const c1 = 1 / (1 - 0.9 ** t);
    const c2 = 1 / (1 - 0.999 ** t);
    variables.forEach((p, i) => {
      const g = clipped[p.name];
      const mi = tf.add(tf.mul(m[i], 0.9), tf.mul(g, 0.1));
      const vi = tf.add(tf.mul(v[i], 0.999), tf.mul(tf.square(g), 0.001));
      let update = tf.div(tf.mul(mi, c1), tf.add(tf.sqrt(tf.mul(vi, c2)), 1e-8));
      if (p.rank >= 2) update = tf.add(update, tf.mul(p, 1e-4));
      m[i].assign(mi);
      v[i].assign(vi);
      p.assign(tf.sub(p, tf.mul(update, 1e-3)));
    });
    return norm;
  });
  const flatUpdate = () => flat.applyClipped(grads, 1e-3, 1);
  console.log(`optimizer update on ${variables.length} variables (${variables.reduce((a, x) => a + x.size, 0)} parameters):`);
  for (const [label, fn] of [['per-variable (before)', perVariable], ['flat (now)', flatUpdate]] as const) {
    (await fn().data()); // warm-up
    const profile = await tf.profile(() => fn());
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) {
      const n = fn();
      await n.data();
      n.dispose();
    }
    console.log(`  ${label}: ${profile.kernels.length} kernels, ${((performance.now() - t0) / 5).toFixed(1)} ms`);
  }
  tf.dispose([...Object.values(grads), ...m, ...v]);
  flat.dispose();
  model.dispose();
}

/**
 * Per round: each sparse-OT variant's images/s (wall, then per CPU second) over top-k's and the
 * dense ViT's (`fast` variants; `fast-no-metrics` against top-k's `fast-no-metrics`), each
 * model's `fast-no-metrics` over its `fast`, and the median over rounds.
 */
function printRatios(rounds: Row[][], key: 'imagesPerSecond' | 'imagesPerCpuSecond' = 'imagesPerSecond'): void {
  const ratios = new Map<string, number[]>();
  for (const rows of rounds) {
    const of = (model: string, variant = 'fast') => rows.find((r) => r.model === model && r.variant === variant)?.[key];
    for (const r of rows.filter((x) => x.model === 'sparse-ot')) {
      for (const other of ['topk', 'dense']) {
        // A step without metrics is set against the other model's step without metrics (the dense ViT has none).
        const baseVariant = r.variant === 'fast-no-metrics' && other !== 'dense' ? r.variant : 'fast';
        const base = of(other, baseVariant);
        if (base === undefined) continue;
        const label = `${key === 'imagesPerSecond' ? 'wall' : 'CPU'}: sparse-ot ${r.variant} / ${other} ${baseVariant}`;
        ratios.set(label, [...(ratios.get(label) ?? []), r[key] / base]);
      }
    }
  }
  for (const rows of rounds) {
    for (const r of rows.filter((x) => x.variant === 'fast-no-metrics')) {
      const base = rows.find((x) => x.model === r.model && x.variant === 'fast');
      if (!base) continue;
      const label = `${key === 'imagesPerSecond' ? 'wall' : 'CPU'}: ${r.model} fast-no-metrics / fast`;
      ratios.set(label, [...(ratios.get(label) ?? []), r[key] / base[key]]);
    }
  }
  for (const [label, values] of ratios) {
    const sorted = [...values].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    console.log(`${label}: ${values.map((v) => v.toFixed(2)).join(', ')} (median ${median.toFixed(2)})`);
  }
}

async function main(): Promise<void> {
  const batch = Number(args.batch);
  const steps = args.quick ? 2 : Number(args.steps);
  const setup = await setupBackend(args.backend as BackendRequest, {fastKernels: false});
  if (tf.getBackend() !== args.backend) throw new Error(`backend ${args.backend} is not active (${tf.getBackend()})`);
  if (setup.adapter) console.log(`WebGPU adapter: ${JSON.stringify(setup.adapter)}`);
  const load = (await import('os')).loadavg().map((l) => l.toFixed(2)).join(' ');
  console.log(`${machineDescription()}; backend ${tf.getBackend()}; load average ${load}; batch ${batch}`);
  registerFastKernels(); // the peak: the faster of the own kernels and XNNPACK (bench/common.ts)
  const peak = await measureMatMulPeak();
  console.log(`matMul peak ${peak.toFixed(2)} GFLOP/s`);
  if (Number(args.pairs) > 0) {
    await pairedSteps(args.models!.split(','), batch, Number(args.pairs));
    console.log(`load average at the end ${(await import('os')).loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    await releaseWebGPU();
    return;
  }
  console.log('| model | variant | kernels/step | kernel ms/step | wall ms/step | CPU ms/step | images/s | images/CPU-s | % of matMul peak |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  const rounds: Row[][] = [];
  for (let round = 0; round < Number(args.rounds); round++) {
    const rows: Row[] = [];
    for (const name of args.models!.split(',')) {
      for (const variant of args.variants!.split(',')) {
        if (variant === 'fast-tensor-ot' && name !== 'sparse-ot') continue;
        if (variant === 'fast-no-metrics' && name === 'dense') continue; // no MoE layer, no metrics
        const r = await measure(name, variant, batch, steps, peak);
        rows.push(r);
        console.log(`| ${r.model} | ${r.variant} | ${r.kernels} | ${r.kernelMs.toFixed(0)} | ${r.stepMs.toFixed(0)} | ${r.cpuMs.toFixed(0)} | ${r.imagesPerSecond.toFixed(1)} | ${r.imagesPerCpuSecond.toFixed(1)} | ${r.percentOfPeak.toFixed(2)} |`);
      }
    }
    rounds.push(rows);
  }
  printRatios(rounds);
  printRatios(rounds, 'imagesPerCpuSecond');
  console.log(`load average at the end ${(await import('os')).loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  setHostSolvers(true);
  if (args.optimizer) await optimizerComparison();
  await releaseWebGPU();
}
void main();
