/**
 * Side-by-side comparison of routers at the same budget (same data, steps, batch size, schedule
 * and seeds): held-out accuracy, load balance, throughput and the fraction of the backend's
 * measured matMul peak that training reaches.
 */
import * as path from 'path';
import {ConfigError, matMulPeakGflops} from '@tfjs-moe/router';
import {atomicWriteFile} from './io/file-io';
import {vitForwardFlops, vmoeForwardFlops} from '@tfjs-moe/models';
import {GRADIENT_CHOICES, modelConfig, ROUTER_CHOICES, type GradientChoice, type ModelSpec, type RouterChoice} from './model-factory';
import {runTraining, type RunOptions} from './run';

/** One contender: a router, and for sparse-OT a gradient mode. Written `router` or `sparse-ot:<gradient>`. */
export interface Variant {
  router: RouterChoice;
  gradient?: GradientChoice;
}

/**
 * The default contenders: dense ViT, top-k, expert choice, Sinkhorn, sparse OT in each gradient mode.
 *
 * @example
 * ```ts
 * parseVariants(DEFAULT_VARIANTS).length; // 7
 * ```
 */
export const DEFAULT_VARIANTS = 'dense,topk,expert-choice,sinkhorn,sparse-ot:softmax,sparse-ot:implicit,sparse-ot:unrolled';

/**
 * Parses `'dense,topk,sparse-ot:implicit'` into variants (typed errors for unknown names).
 *
 * @example
 * ```ts
 * parseVariants('dense,sparse-ot:implicit'); // [{router: 'dense'}, {router: 'sparse-ot', gradient: 'implicit'}]
 * ```
 */
export function parseVariants(list: string): Variant[] {
  return list.split(',').map((item) => {
    const [router, gradient] = item.trim().split(':');
    if (!(ROUTER_CHOICES as readonly string[]).includes(router)) {
      throw new ConfigError('router', `one of ${ROUTER_CHOICES.map((r) => `'${r}'`).join(', ')}`, router);
    }
    if (gradient !== undefined && !(GRADIENT_CHOICES as readonly string[]).includes(gradient)) {
      throw new ConfigError('gradient', `one of ${GRADIENT_CHOICES.map((r) => `'${r}'`).join(', ')}`, gradient);
    }
    return {router: router as RouterChoice, ...(gradient ? {gradient: gradient as GradientChoice} : {})};
  });
}

/**
 * The display name of a variant.
 *
 * @example
 * ```ts
 * variantName({router: 'sparse-ot'}); // 'sparse-ot:softmax'
 * ```
 */
export function variantName(v: Variant): string {
  return v.router === 'sparse-ot' ? `sparse-ot:${v.gradient ?? 'softmax'}` : v.router;
}

/**
 * Multiply-add FLOPs (2 per multiply-add) of one forward pass of one image through the model of
 * `spec`, counting matMuls only: patch embedding, attention projections and products, MLPs (or
 * expert slots: `experts x capacity` tokens per group instead of every token once), router and
 * head, at the training capacity: `total` of `vitForwardFlops` / `vmoeForwardFlops` of
 * `@tfjs-moe/models` (the one FLOP count) for the model `buildModel` builds. A training step costs
 * about 3 times this (forward + two backward matMuls).
 *
 * @example
 * ```ts
 * forwardFlopsPerImage({router: 'dense'}, {height: 28, width: 28, channels: 1, numClasses: 10}); // 4854016
 * ```
 */
export function forwardFlopsPerImage(spec: ModelSpec, input: {height: number; width: number; channels: number; numClasses: number}): number {
  const m = modelConfig(spec, input);
  return m.kind === 'vit' ? vitForwardFlops(m.config).total : vmoeForwardFlops(m.config, {training: true}).total;
}

/** The backend's matMul peak in GFLOP/s: `matMulPeakGflops` of `@tfjs-moe/router`, re-exported. */
export {matMulPeakGflops};

/** One (variant, seed) run of a comparison. */
export interface CompareRun {
  variant: string;
  seed: number;
  /** The run's folder (model/, log.jsonl, summary.json, ...). */
  out: string;
  accuracy: number;
  /** Largest max/mean load over the MoE layers, averaged over training (1 for dense). */
  maxOverMean: number;
  /** Largest dropped fraction over the MoE layers, averaged over training (0 for dense). */
  droppedFraction: number;
  /** Same two at inference, on the held-out data. */
  evalMaxOverMean: number;
  evalDroppedFraction: number;
  /** Training throughput (median over logged intervals after the first). */
  imagesPerSecond: number;
  /** Training FLOP/s (3 x forward FLOPs per image x images/s) over the matMul peak. */
  fractionOfPeak: number;
  seconds: number;
}

/** Options of {@link compareRouters}. */
export interface CompareOptions extends Omit<RunOptions, 'router' | 'gradient' | 'out' | 'resume' | 'overwrite'> {
  /** Contenders. Default {@link DEFAULT_VARIANTS}. */
  variants?: Variant[];
  /** Seeds; every variant runs once per seed. Default [0, 1, 2]. */
  seeds?: number[];
  /** Output folder: one sub-folder per run, plus `compare.md` and `compare.json`. Default `'runs/compare'`. */
  out?: string;
  /** Called after every run. */
  onRun?: (run: CompareRun) => void;
  /** The backend's matMul peak in GFLOP/s, if already measured (else {@link matMulPeakGflops} after the first run). */
  peakGflops?: number;
}

function median(v: number[]): number {
  if (!v.length) return NaN;
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * `mean ± sample std` of `v` with `digits` decimals; a single value is shown alone (no "± 0.00").
 *
 * @example
 * ```ts
 * meanStdText([1, 2, 3], 2); // '2.00 ± 1.00'
 * meanStdText([0.5], 2); // '0.50'
 * ```
 */
export function meanStdText(v: number[], digits: number): string {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  if (v.length < 2) return m.toFixed(digits);
  const sd = Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1));
  return `${m.toFixed(digits)} ± ${sd.toFixed(digits)}`;
}

/**
 * Trains every variant once per seed at the same budget and writes a markdown table
 * (`compare.md`, mean ± sample standard deviation over seeds, and min-max of accuracy) and the
 * raw runs (`compare.json`) into `out`.
 *
 * @example
 * ```ts
 * const {table} = await compareRouters({variants: parseVariants('dense,topk,sparse-ot'), seeds: [0, 1], steps: 100});
 * console.log(table);
 * ```
 */
export async function compareRouters(options: CompareOptions = {}): Promise<{runs: CompareRun[]; table: string; peakGflops: number}> {
  const variants = options.variants ?? parseVariants(DEFAULT_VARIANTS);
  const seeds = options.seeds ?? [0, 1, 2];
  const out = options.out ?? path.join('runs', 'compare');
  const runs: CompareRun[] = [];
  let peak = options.peakGflops ?? 0;
  let backend = '';
  const stream = options.progress === undefined ? process.stderr : options.progress;
  let index = 0;
  for (const v of variants) {
    for (const seed of seeds) {
      const {variants: _v, seeds: _s, onRun: _o, peakGflops: _p, ...rest} = options;
      const runOut = path.join(out, `${variantName(v)}-s${seed}`.replace(':', '-'));
      stream?.write(`compare: run ${++index} of ${variants.length * seeds.length}: ${variantName(v)} seed ${seed} -> ${runOut}\n`);
      const run = await runTraining({...rest, router: v.router, gradient: v.gradient, seed, out: runOut, overwrite: true, progress: stream, report: options.report ?? false});
      backend = run.backend;
      if (peak === 0) peak = await matMulPeakGflops();
      const r = run.result;
      const layersTrain = Object.values(r.trainBalance);
      const layersEval = Object.values(r.final.balance);
      const speeds = r.history.slice(1).map((h) => h.imagesPerSecond);
      const ips = median(speeds.length ? speeds : r.history.map((h) => h.imagesPerSecond));
      const [, height, width, channels] = r.model.inputs[0].shape as number[];
      const numClasses = r.model.outputs[0].shape[1] as number;
      const flops = 3 * forwardFlopsPerImage({...rest, router: v.router, gradient: v.gradient}, {height, width, channels, numClasses});
      const cr: CompareRun = {
        variant: variantName(v),
        seed,
        out: runOut,
        accuracy: r.final.accuracy,
        maxOverMean: layersTrain.length ? Math.max(...layersTrain.map((s) => s.maxOverMean)) : 1,
        droppedFraction: layersTrain.length ? Math.max(...layersTrain.map((s) => s.droppedFraction)) : 0,
        evalMaxOverMean: layersEval.length ? Math.max(...layersEval.map((s) => s.maxOverMean)) : 1,
        evalDroppedFraction: layersEval.length ? Math.max(...layersEval.map((s) => s.droppedFraction)) : 0,
        imagesPerSecond: ips,
        fractionOfPeak: (flops * ips) / (peak * 1e9),
        seconds: run.seconds,
      };
      r.model.dispose();
      runs.push(cr);
      options.onRun?.(cr);
    }
  }
  const lines = [
    `Backend ${backend}, matMul peak ${peak.toFixed(1)} GFLOP/s; ${seeds.length} seed(s) (${seeds.join(', ')})${seeds.length > 1 ? '; mean ± sample std over seeds, accuracy range in brackets' : ''}.`,
    '',
    '| model | held-out accuracy | train max/mean load | train dropped | eval max/mean | eval dropped | images/s | % of matMul peak |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const v of variants) {
    const rs = runs.filter((r) => r.variant === variantName(v));
    const f = (sel: (r: CompareRun) => number, digits: number, scale = 1): string => meanStdText(rs.map((r) => scale * sel(r)), digits);
    const accs = rs.map((r) => 100 * r.accuracy);
    const range = accs.length > 1 ? ` [${Math.min(...accs).toFixed(2)}, ${Math.max(...accs).toFixed(2)}]` : '';
    lines.push(
      `| ${variantName(v)} | ${f((r) => r.accuracy, 2, 100)}%${range} | ${f((r) => r.maxOverMean, 2)} | ${f((r) => r.droppedFraction, 2, 100)}% | ${f((r) => r.evalMaxOverMean, 2)} | ${f((r) => r.evalDroppedFraction, 2, 100)}% | ${f((r) => r.imagesPerSecond, 0)} | ${f((r) => r.fractionOfPeak, 1, 100)}% |`,
    );
  }
  lines.push('', 'Run folders:', ...runs.map((r) => `- ${r.variant} seed ${r.seed}: ${r.out}`));
  lines.push('', `Wrote ${path.join(out, 'compare.md')} and ${path.join(out, 'compare.json')}.`);
  const table = lines.join('\n');
  atomicWriteFile(path.join(out, 'compare.md'), table + '\n');
  atomicWriteFile(path.join(out, 'compare.json'), JSON.stringify({peakGflops: peak, backend, runs}, null, 2));
  return {runs, table, peakGflops: peak};
}
