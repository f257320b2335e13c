/**
 * Inference benchmark shared by Node (`bench/inference.ts`) and the browser page
 * (`window.moeDemo.benchmark`): the same models, the same timing and the same FLOP count on every
 * backend, so that numbers from Node and from Chromium can be put side by side.
 *
 * For one backend it builds, from seeds, a dense ViT and V-MoEs of the same size (every other
 * block a mixture of experts, each expert the shape of the dense MLP, per-example routing, the
 * inference capacity factor), and times `model.predict` at each batch size, reading the result
 * back so that asynchronous backends (webgl, webgpu) have finished. Each model's time is given as
 * a ratio to the dense ViT's on the same backend in the same run, and its useful FLOP rate as a
 * fraction of the backend's measured matMul peak.
 *
 * Nothing here imports Node modules: the page bundles it as is.
 */
import * as tf from '@tensorflow/tfjs';
import {moeLayers, vit, vmoe, resolveViTConfig, vitForwardFlops, vmoeForwardFlops, type ViTPresetName} from '@tfjs-moe/models';
import {webgpuSyncReadProblem} from './sync-read-routers';
import {matMulPeakGflops, medianTimeMs} from '@tfjs-moe/router';

/**
 * One model to time: built from seeds (the dense ViT when `router` is absent, else a V-MoE with
 * `router`), or loaded from `url` (a model.json saved by `tfjs-moe train`, of the benchmark's
 * preset and depth; it is dense when it has no MoE layer).
 */
export interface InferenceModelSpec {
  /** Label printed in tables, e.g. `'vmoe sparse-ot'`. */
  label: string;
  /** Router of a seeded V-MoE (a registered name or `{name, ...args}`); absent for the dense ViT. */
  router?: string | ({name: string} & Record<string, unknown>);
  /** A saved model to load instead of building one (see {@link InferenceBenchOptions.loadModel}). */
  url?: string;
}

/** What {@link runInferenceBenchmark} measures. */
export interface InferenceBenchOptions {
  /** ViT preset of every model. Default `'mnist-tiny'`. */
  preset?: ViTPresetName;
  /** Encoder depth (overrides the preset's). Default: the preset's (4 for mnist-tiny). */
  depth?: number;
  /** Experts per MoE block. Default 4. */
  numExperts?: number;
  /** Capacity factor at inference. Default 1.25. */
  evalCapacityFactor?: number;
  /** Batch sizes; the first is the latency batch (1), the others give throughput. Default `[1, 32]`. */
  batches?: number[];
  /** Timed repetitions per (model, batch); the median is reported. Default 5. */
  reps?: number;
  /** Untimed warm-up runs (kernel/shader compilation). Default 2. */
  warmup?: number;
  /** Models; the first must be the dense baseline. Default {@link DEFAULT_MODELS}. */
  models?: InferenceModelSpec[];
  /** Seed of every model's weights and of the input images. Default 0. */
  seed?: number;
  /**
   * The backend's matMul peak in GFLOP/s, if already measured (Node passes `bench/common.ts`'s);
   * otherwise `matMulPeakGflops` (`@tfjs-moe/router`) measures it.
   */
  peakGflops?: number;
  /**
   * On webgpu, models whose router reads back synchronously (sparse-OT) are reported as not run
   * (their read-back destroys the device in Chromium without a GPU and fails in Node); set this
   * to run them anyway. Default false.
   */
  runSyncReadRoutersOnWebGPU?: boolean;
  /** Loads the models given by `url`. Default `tf.loadLayersModel` (in a page: over HTTP). */
  loadModel?: (url: string) => Promise<tf.LayersModel>;
}

/** One timed (model, batch) cell. */
export interface InferenceCell {
  model: string;
  batch: number;
  /** Median wall time of one `predict` + read-back, in ms; NaN if the model failed. */
  ms: number;
  /** `ms / batch`. */
  msPerImage: number;
  /** Images per second (`1000 * batch / ms`). */
  imagesPerSecond: number;
  /** `ms` divided by the dense ViT's `ms` at the same batch on the same backend. */
  ratioToDense: number;
  /** Useful forward FLOPs per image (see {@link forwardFlopsPerImage}). */
  flopsPerImage: number;
  /** Achieved useful GFLOP/s divided by the backend's matMul peak. */
  fractionOfPeak: number;
  /** Why the model could not run, when it failed (the message of the error). */
  error?: string;
}

/** The result on one backend. */
export interface InferenceBenchResult {
  backend: string;
  /** The matMul peak used for `fractionOfPeak`, in GFLOP/s. */
  peakGflops: number;
  /** The resolved settings. */
  settings: Required<Omit<InferenceBenchOptions, 'peakGflops' | 'models' | 'loadModel' | 'runSyncReadRoutersOnWebGPU'>> & {models: string[]};
  cells: InferenceCell[];
}

/** Dense ViT, then the V-MoE with top-1 (Switch) routing and with the k-sparse OT router. */
export const DEFAULT_MODELS: InferenceModelSpec[] = [
  {label: 'vit (dense)'},
  {label: 'vmoe topk (k=1)', router: {name: 'topk', k: 1}},
  {label: 'vmoe sparse-ot', router: 'sparse-ot'},
];

/**
 * Useful forward FLOPs per image of a ViT, or of a V-MoE whose `moeBlocks` blocks route each
 * token to `k` experts of the MLP's shape (plus the router's `d x E` matMul). Counts 2 FLOPs per
 * multiply-add of the matMuls (patch embedding, QKV and output projections, attention scores and
 * values, MLPs/experts, router, head); element-wise work (LayerNorm, softmax, gelu) and the OT
 * solver are not counted, so a slower router lowers the fraction of peak.
 *
 * @example
 * ```ts
 * // mnist-tiny at depth 4: 16 patches + class token, d 64, MLP 128.
 * forwardFlopsPerImage({preset: 'mnist-tiny'});  // 4854016
 * ```
 */
export function forwardFlopsPerImage(config: {preset?: ViTPresetName; depth?: number},
  moe?: {numExperts: number; k?: number; moeBlocks: number}): number {
  const base = {...(config.preset ? {preset: config.preset} : {preset: 'mnist-tiny' as const}), ...(config.depth ? {depth: config.depth} : {})};
  if (!moe) return vitForwardFlops(base).useful;
  const k = moe.k ?? 1;
  // The one FLOP count of @tfjs-moe/models, counted as useful work (k experts per token).
  return vmoeForwardFlops({...base, moeBlocks: {last: moe.moeBlocks}, moe: {numExperts: moe.numExperts, router: {name: 'topk', k}}}).useful;
}

type Settings = Required<Omit<InferenceBenchOptions, 'peakGflops' | 'loadModel' | 'runSyncReadRoutersOnWebGPU'>>;

async function obtainModel(spec: InferenceModelSpec, o: Settings, load: (url: string) => Promise<tf.LayersModel>): Promise<tf.LayersModel> {
  if (spec.url === undefined) return buildModel(spec, o);
  const model = await load(spec.url);
  const depth = model.layers.filter((l) => l.getClassName() === 'MultiHeadSelfAttention').length;
  if (depth !== o.depth) {
    model.dispose();
    throw new Error(`the model at ${spec.url} has ${depth} encoder blocks, but the benchmark's depth is ${o.depth}`);
  }
  return model;
}

function buildModel(spec: InferenceModelSpec, o: Settings): tf.LayersModel {
  const base = {preset: o.preset, depth: o.depth, seed: o.seed};
  if (spec.router === undefined) return vit(base);
  return vmoe({...base, moe: {numExperts: o.numExperts, router: spec.router, groupingMode: 'per-example', evalCapacityFactor: o.evalCapacityFactor}});
}

function routerK(router: InferenceModelSpec['router']): number {
  if (router && typeof router === 'object' && typeof router.k === 'number') return router.k;
  return 1;
}

/**
 * Times every model of `options.models` at every batch size on the active backend.
 * A model that throws (e.g. the sparse-OT router where the backend cannot read back
 * synchronously) gets NaN times and its error message; the others still run.
 *
 * @returns One cell per (model, batch) with ms, ms/image, images/s, the ratio to the dense ViT
 *   and the fraction of the matMul peak.
 * @example
 * ```ts
 * await tf.setBackend('wasm');
 * const r = await runInferenceBenchmark({batches: [1, 32], reps: 5});
 * console.table(r.cells);  // vit / vmoe topk / vmoe sparse-ot at batch 1 and 32
 * ```
 */
export async function runInferenceBenchmark(options: InferenceBenchOptions = {}): Promise<InferenceBenchResult> {
  const preset = options.preset ?? 'mnist-tiny';
  const o = {
    preset,
    depth: options.depth ?? resolveViTConfig({preset} as never).depth,
    numExperts: options.numExperts ?? 4,
    evalCapacityFactor: options.evalCapacityFactor ?? 1.25,
    batches: options.batches ?? [1, 32],
    reps: options.reps ?? 5,
    warmup: options.warmup ?? 2,
    models: options.models ?? DEFAULT_MODELS,
    seed: options.seed ?? 0,
  };
  if (o.models[0]?.router !== undefined) throw new Error('runInferenceBenchmark: the first model must be the dense ViT (no router)');
  const load = options.loadModel ?? ((url: string) => tf.loadLayersModel(url));
  const peakGflops = options.peakGflops ?? await matMulPeakGflops();
  const resolved = resolveViTConfig({preset, depth: o.depth} as never);
  const imageSize = resolved.imageSize;
  const cells: InferenceCell[] = [];
  const denseMs = new Map<number, number>();
  for (const spec of o.models) {
    let model: tf.LayersModel | undefined;
    let error: string | undefined;
    try {
      model = await obtainModel(spec, o, load);
    } catch (e) {
      error = (e as Error).message;
    }
    // Experts-choose-tokens OT routing gives each token ~1 expert: counted as k = 1.
    const moes = model ? moeLayers(model) : [];
    if (spec === o.models[0] && moes.length > 0) {
      error = `the first model must be dense, but ${spec.label} has ${moes.length} MoE layers`;
    }
    if (error === undefined && tf.getBackend() === 'webgpu' && !options.runSyncReadRoutersOnWebGPU) {
      const problem = webgpuSyncReadProblem(moes);
      if (problem) error = `not run: ${problem.split(': ')[0]}: its solver reads values back synchronously (see bench/RESULTS-browser.md)`;
    }
    const flops = forwardFlopsPerImage({preset, depth: o.depth},
      moes.length === 0 ? undefined : {numExperts: moes[0].numExperts, k: routerK(spec.router), moeBlocks: moes.length});
    for (const batch of o.batches) {
      let ms = NaN;
      if (model && error === undefined) {
        const x = tf.randomUniform([batch, imageSize[0], imageSize[1], resolved.channels], 0, 1, 'float32', o.seed + batch);
        try {
          ms = await medianTimeMs(() => model!.predict(x) as tf.Tensor, o.reps, o.warmup);
        } catch (e) {
          error = (e as Error).message;
        }
        x.dispose();
      }
      if (spec === o.models[0]) denseMs.set(batch, ms);
      cells.push({
        model: spec.label, batch, ms, msPerImage: ms / batch, imagesPerSecond: (1000 * batch) / ms,
        ratioToDense: ms / (denseMs.get(batch) ?? NaN), flopsPerImage: flops,
        fractionOfPeak: (flops * batch) / (ms * 1e6) / peakGflops,
        ...(error !== undefined ? {error: error.split('\n')[0]} : {}),
      });
    }
    if (model) {
      // The MoE layers keep their last call's metrics; model.dispose() does not free them.
      for (const layer of moeLayers(model)) layer.disposeLast();
      model.dispose();
    }
  }
  return {backend: tf.getBackend(), peakGflops, settings: {...o, models: o.models.map((m) => m.label)}, cells};
}

function fmt(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : 'n/a';
}

/**
 * Formats results of several backends/places as one markdown table, side by side: per model and
 * batch, ms/image, images/s, the ratio to the dense ViT and the fraction of matMul peak.
 *
 * @example
 * ```ts
 * console.log(formatInferenceTable([{where: 'Node', result: r}]));
 * ```
 */
export function formatInferenceTable(rows: Array<{where: string; result: InferenceBenchResult}>): string {
  const lines = [
    '| where | backend | peak GFLOP/s | model | batch | ms/image | images/s | x dense ViT | % of matMul peak |',
    '|---|---|---:|---|---:|---:|---:|---:|---:|',
  ];
  const notes: string[] = [];
  for (const {where, result} of rows) {
    for (const c of result.cells) {
      lines.push(`| ${where} | ${result.backend} | ${fmt(result.peakGflops, 1)} | ${c.model} | ${c.batch} | ${fmt(c.msPerImage, 2)} | ` +
        `${fmt(c.imagesPerSecond, 1)} | ${fmt(c.ratioToDense, 2)} | ${fmt(100 * c.fractionOfPeak, 2)} |`);
      if (c.error && !notes.some((n) => n.includes(`${where} ${result.backend} ${c.model}:`))) {
        notes.push(`- ${where} ${result.backend} ${c.model}: failed: ${c.error}`);
      }
    }
  }
  return [...lines, ...(notes.length ? ['', ...notes] : [])].join('\n');
}
