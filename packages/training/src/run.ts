/**
 * A complete training run as the CLI performs it: backend, data, model, training with
 * checkpoints, final evaluation, and the outputs in one folder:
 * `model/` (model.json + weights.bin), `report.html`, `log.jsonl`, `summary.json`, `run.json`,
 * `checkpoints/`.
 */
import * as fs from 'fs';
import * as path from 'path';
import {ConfigError} from '@tfjs-moe/router';
import {setupBackend, type BackendRequest} from './backend';
import {datasetSize} from './data/dataset';
import {loadSplits} from './data/load';
import {TRAINING_DEFAULTS as D, defaultEvalEvery} from './defaults';
import {atomicWriteFile, fileHandler} from './io/file-io';
import {formatBalance, type LoadBalanceStats} from './metrics/load-balance';
import {buildModel, resolveModelSpec, type ModelSpec} from './model-factory';
import {renderReport} from './report/html';
import {ProgressBar, type ProgressStream} from './report/progress';
import {train, type TrainResult} from './train/trainer';

/** Options of {@link runTraining}: the model, the data, the schedule and the outputs. */
export interface RunOptions extends ModelSpec {
  /** Data (see {@link loadDataSets}): `'mnist'` (default), `'fashion-mnist'`, `'idx:DIR'`, `'digits'`, `'synthetic'`, a folder of images or a `.npy` / `.json` file. */
  data?: string;
  /** Data without an official test set: fraction of each class held out as the test set. Default {@link TRAINING_DEFAULTS}.testFraction. */
  heldOutFraction?: number;
  /** Fraction of each class of the training data carved out for validation (periodic evaluation). Default {@link TRAINING_DEFAULTS}.validationFraction. */
  validationFraction?: number;
  /** Augmentation: random shift of training images, pixels per axis. Default {@link TRAINING_DEFAULTS}.maxShift. */
  maxShift?: number;
  /** Seed of the split, initialization, data order and step randomness. Default 0. */
  seed?: number;
  /** Epochs (default {@link TRAINING_DEFAULTS}.epochs); ignored when `steps` is given. */
  epochs?: number;
  /** Training steps. */
  steps?: number;
  /** Examples per step. Default {@link TRAINING_DEFAULTS}.batchSize. */
  batchSize?: number;
  /** Peak learning rate. Default {@link TRAINING_DEFAULTS}.learningRate. */
  learningRate?: number;
  /** Warmup steps. Default {@link TRAINING_DEFAULTS}.warmupFraction of the steps. */
  warmupSteps?: number;
  /** Gradient clipping norm. Default {@link TRAINING_DEFAULTS}.clipNorm. */
  clipNorm?: number;
  /** Weight decay. Default {@link TRAINING_DEFAULTS}.weightDecay. */
  weightDecay?: number;
  /** Backend. Default `'auto'` (tfjs-node, then wasm, then cpu). */
  backend?: BackendRequest;
  /** Output folder. Default `'runs/<router>'`. */
  out?: string;
  /** Continue from the newest checkpoint in `out`. Default false. */
  resume?: boolean;
  /** Checkpoint every this many steps. Default {@link TRAINING_DEFAULTS}.checkpointEvery. */
  checkpointEvery?: number;
  /** Evaluate on the validation set every this many steps (0: at the end only). Default {@link defaultEvalEvery}. */
  evalEvery?: number;
  /** Log every this many steps. Default {@link TRAINING_DEFAULTS}.logEvery. */
  logEvery?: number;
  /** Write report.html. Default true. */
  report?: boolean;
  /** Progress output (default stderr); null for silence. */
  progress?: ProgressStream | null;
}

/** What {@link runTraining} returns. */
export interface RunSummary {
  /** Output folder. */
  out: string;
  /** Active backend. */
  backend: string;
  /** The training result (the model stays alive; dispose it when done). */
  result: TrainResult;
  /** Wall time of training and evaluation, seconds. */
  seconds: number;
  /** Settings of the run, as stored in `run.json`. */
  config: Record<string, unknown>;
}

/**
 * Trains and evaluates as `tfjs-moe train` does, writing every output into `options.out`.
 *
 * @example
 * ```ts
 * const {result} = await runTraining({router: 'sparse-ot', epochs: 1, out: 'runs/demo'});
 * console.log(result.final.accuracy);
 * result.model.dispose();
 * ```
 */
export async function runTraining(options: RunOptions = {}): Promise<RunSummary> {
  let opts = options;
  const out = options.out ?? path.join('runs', options.router ?? 'sparse-ot');
  const runFile = path.join(out, 'run.json');
  if (options.resume && fs.existsSync(runFile)) {
    // A resumed run continues with the stored settings; the flags only choose what to resume.
    const stored = JSON.parse(fs.readFileSync(runFile, 'utf8')) as RunOptions;
    opts = {...stored, backend: options.backend ?? stored.backend, progress: options.progress, report: options.report, out, resume: true};
  } else if (options.resume) {
    throw new ConfigError('resume', `a run folder holding run.json (from an earlier tfjs-moe train --out ${out})`, out);
  }
  const spec = resolveModelSpec(opts);
  const setup = await setupBackend(opts.backend ?? 'auto');
  const seed = opts.seed ?? 0;
  const dataSpec = opts.data ?? D.data;
  const split = loadSplits(dataSpec, {seed, testFraction: opts.heldOutFraction, validationFraction: opts.validationFraction});
  const ds = split.train;
  const batchSize = opts.batchSize ?? D.batchSize;
  const stepsPerEpoch = Math.floor(datasetSize(split.train) / batchSize);
  const totalSteps = opts.steps ?? Math.max(1, Math.round((opts.epochs ?? D.epochs) * stepsPerEpoch));
  const config: Record<string, unknown> = {
    router: spec.router,
    gradient: spec.router === 'sparse-ot' ? spec.gradient : undefined,
    experts: spec.router === 'dense' ? undefined : spec.experts,
    capacityFactor: spec.router === 'dense' ? undefined : spec.capacityFactor,
    evalCapacityFactor: opts.evalCapacityFactor,
    groupSize: opts.groupSize,
    preset: spec.preset,
    depth: opts.depth,
    hiddenSize: opts.hiddenSize,
    mlpDim: opts.mlpDim,
    numHeads: opts.numHeads,
    patchSize: opts.patchSize,
    data: dataSpec,
    heldOutFraction: opts.heldOutFraction,
    validationFraction: opts.validationFraction ?? D.validationFraction,
    maxShift: opts.maxShift ?? D.maxShift,
    seed,
    steps: totalSteps,
    batchSize,
    learningRate: opts.learningRate ?? D.learningRate,
    warmupSteps: opts.warmupSteps,
    clipNorm: opts.clipNorm ?? D.clipNorm,
    weightDecay: opts.weightDecay ?? D.weightDecay,
    checkpointEvery: opts.checkpointEvery ?? D.checkpointEvery,
    evalEvery: opts.evalEvery ?? defaultEvalEvery(totalSteps),
    logEvery: opts.logEvery ?? D.logEvery,
    backend: setup.backend,
  };
  for (const k of Object.keys(config)) if (config[k] === undefined) delete config[k];
  fs.mkdirSync(out, {recursive: true});
  if (!opts.resume) atomicWriteFile(runFile, JSON.stringify({...config, backend: opts.backend ?? 'auto', out}, null, 2));

  const bar = opts.progress === null ? null : new ProgressBar(totalSteps, opts.progress ?? process.stderr);
  bar?.message(
    `tfjs-moe train: ${spec.router}${spec.router === 'sparse-ot' ? ` (${spec.gradient} gradient)` : ''}` +
      `${spec.router === 'dense' ? '' : `, ${spec.experts} experts, capacity factor ${spec.capacityFactor}`}` +
      ` | ${dataSpec}: ${datasetSize(split.train)} train / ${datasetSize(split.heldOut)} validation / ${datasetSize(split.test)} test | ${totalSteps} steps of ${batchSize} | backend ${setup.backend} | out ${out}`,
  );
  const t0 = performance.now();
  const result = await train({
    model: () => buildModel(spec, ds),
    data: split,
    seed,
    batchSize,
    steps: totalSteps,
    learningRate: config.learningRate as number,
    warmupSteps: opts.warmupSteps,
    maxShift: config.maxShift as number,
    clipNorm: config.clipNorm as number,
    weightDecay: config.weightDecay as number,
    logEvery: config.logEvery as number,
    evalEvery: config.evalEvery as number,
    checkpointEvery: config.checkpointEvery as number,
    outDir: out,
    resume: opts.resume,
    onLog: (r) => bar?.update(r),
    onEval: (e) => {
      if (!e.final) bar?.message(`  step ${e.step}: validation accuracy ${(100 * e.accuracy).toFixed(2)}% (${e.examples} examples)`);
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  bar?.done();
  await result.model.save(fileHandler(path.join(out, 'model'), {tfjsMoe: {...config, classNames: (ds.classNames ?? []) as string[]}}));
  const summary = {
    accuracy: result.final.accuracy,
    heldOutExamples: result.final.examples,
    loss: result.final.loss,
    seconds,
    backend: setup.backend,
    trainBalance: stripClasses(result.trainBalance),
    heldOutBalance: stripClasses(result.final.balance),
    config,
  };
  atomicWriteFile(path.join(out, 'summary.json'), JSON.stringify(summary, null, 2));
  if (opts.report !== false) {
    const html = await renderReport({
      title: `tfjs-moe: ${spec.router}${spec.router === 'sparse-ot' ? ` (${spec.gradient})` : ''} on ${dataSpec}`,
      config,
      history: result.history,
      evals: result.evals,
      trainBalance: result.trainBalance,
      classNames: ds.classNames,
      notes: [`Backend ${setup.backend}; ${totalSteps} steps in ${seconds.toFixed(1)} s${result.resumedFrom ? ` (resumed from step ${result.resumedFrom})` : ''}.`],
    });
    atomicWriteFile(path.join(out, 'report.html'), html);
  }
  return {out, backend: setup.backend, result, seconds, config};
}

function stripClasses(stats: Record<string, LoadBalanceStats>): Record<string, LoadBalanceStats> {
  return Object.fromEntries(Object.entries(stats).map(([k, s]) => [k, {...s}]));
}

/**
 * Human-readable lines of a finished run: accuracy and each MoE layer's load balance.
 *
 * @example
 * ```ts
 * summaryLines(await runTraining({steps: 50})).forEach((l) => console.log(l));
 * ```
 */
export function summaryLines(run: RunSummary): string[] {
  const r = run.result;
  const lines = [`test accuracy ${(100 * r.final.accuracy).toFixed(2)}% on ${r.final.examples} examples (loss ${r.final.loss.toFixed(4)}), ${r.steps} steps in ${run.seconds.toFixed(1)} s on ${run.backend}`];
  for (const [name, s] of Object.entries(r.trainBalance)) lines.push(`  ${name} train:    ${formatBalance(s)}`);
  for (const [name, s] of Object.entries(r.final.balance)) {
    lines.push(`  ${name} test:     ${formatBalance(s)}${s.normalizedEntropy !== undefined ? ` entropy ${s.normalizedEntropy.toFixed(2)}` : ''}`);
  }
  lines.push(`wrote ${path.join(run.out, 'model')}/, ${path.join(run.out, 'report.html')}, ${path.join(run.out, 'log.jsonl')}`);
  return lines;
}

