/**
 * A complete training run as the CLI performs it: backend, data, model, training with
 * checkpoints, final evaluation, and the outputs in one folder:
 * `model/` (model.json + weights.bin), `report.html`, `log.jsonl`, `summary.json`, `run.json`,
 * `checkpoints/`.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import {checkOptions, ConfigError, InvalidArgumentError} from '@tfjs-moe/router';
import {setupBackend, type BackendRequest} from './backend';
import {datasetSize} from './data/dataset';
import {loadSplits} from './data/load';
import {TRAINING_DEFAULTS as D, defaultEvalEvery, defaultWarmupSteps} from './defaults';
import {atomicWriteFile, fileHandler, readJsonFile} from './io/file-io';
import {prepareRunFolder} from './io/run-folder';
import {formatBalance, type LoadBalanceStats} from './metrics/load-balance';
import {buildModel, MODEL_SPEC_KEYS, resolveModelSpec, type ModelSpec} from './model-factory';
import {renderReport} from './report/html';
import {routingDetails} from './report/routing';
import {ProgressBar, type ProgressStream} from './report/progress';
import {inspectLatestCheckpoint} from './train/checkpoint';
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
  /**
   * Continue the run in `out` from its newest intact checkpoint. Default false. The run keeps its
   * stored settings; `steps` / `epochs` may extend it, `backend`, the intervals and the outputs
   * may change, and any other setting that differs from the stored one is a {@link ConfigError}
   * naming it. Without a checkpoint in `out` it is an error.
   */
  resume?: boolean;
  /** Replace the outputs of an earlier run in `out` (a fresh run into a non-empty folder is refused otherwise). Default false. */
  overwrite?: boolean;
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
  /** For a resumed run: the checkpoint it continued, and damaged newer ones it skipped. */
  resumed?: {checkpoint: string; step: number; skipped: Array<{path: string; reason: string}>};
}

/** Every key {@link RunOptions} accepts. */
export const RUN_OPTION_KEYS = [
  ...MODEL_SPEC_KEYS,
  'data', 'heldOutFraction', 'validationFraction', 'maxShift', 'seed', 'epochs', 'steps', 'batchSize', 'learningRate', 'warmupSteps', 'clipNorm', 'weightDecay',
  'backend', 'out', 'resume', 'overwrite', 'checkpointEvery', 'evalEvery', 'logEvery', 'report', 'progress',
] as const;

/** Settings a resumed run may change: the budget, the backend, the intervals and the outputs. */
const CHANGEABLE_ON_RESUME = new Set(['steps', 'epochs', 'backend', 'out', 'resume', 'overwrite', 'checkpointEvery', 'evalEvery', 'logEvery', 'report', 'progress']);

/** The run's settings as given, merged with run.json's on resume (an error for a changed setting). */
function resumeSettings(options: RunOptions, out: string): {opts: RunOptions; stored: Record<string, unknown>} {
  const runFile = path.join(out, 'run.json');
  if (!fs.existsSync(runFile)) {
    throw new ConfigError('resume', `a run folder holding run.json (from an earlier tfjs-moe train --out ${out})`, out);
  }
  const stored = readJsonFile<Record<string, unknown>>(runFile, 'run settings file (run.json)', undefined, (j) =>
    typeof j.router === 'string' && typeof j.steps === 'number' ? undefined : 'no "router" and "steps" settings',
  );
  const changed: string[] = [];
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined || CHANGEABLE_ON_RESUME.has(k)) continue;
    const was = stored[k] ?? (k === 'data' ? D.data : undefined);
    if (was !== v) changed.push(`${k} ${JSON.stringify(was ?? 'default')} -> ${JSON.stringify(v)}`);
  }
  if (changed.length) {
    const e = new ConfigError('resume', 'the stored settings', changed);
    e.message = `Cannot resume ${out} with changed settings: ${changed.join(', ')}. A resumed run keeps run.json's settings; only --steps/--epochs (to extend it), --backend and the intervals may change. Start a fresh run (another --out, or --overwrite) to change them.`;
    throw e;
  }
  const {steps: _s, epochs: _e, out: _o, backend: _b, runId: _r, ...kept} = stored;
  const opts: RunOptions = {
    ...(kept as RunOptions),
    backend: options.backend ?? (stored.backend as BackendRequest | undefined),
    steps: options.steps ?? (options.epochs === undefined ? (stored.steps as number) : undefined),
    epochs: options.epochs,
    checkpointEvery: options.checkpointEvery ?? (stored.checkpointEvery as number | undefined),
    evalEvery: options.evalEvery ?? (stored.evalEvery as number | undefined),
    logEvery: options.logEvery ?? (stored.logEvery as number | undefined),
    progress: options.progress,
    report: options.report,
    out,
    resume: true,
  };
  return {opts, stored};
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
  checkOptions(options, RUN_OPTION_KEYS, 'runTraining');
  const out = options.out ?? path.join('runs', options.router ?? 'sparse-ot');
  if (options.epochs !== undefined && (typeof options.epochs !== 'number' || !Number.isFinite(options.epochs) || options.epochs <= 0)) {
    throw new InvalidArgumentError('epochs', 'a finite number > 0', options.epochs);
  }
  if (options.steps !== undefined && (!Number.isInteger(options.steps) || options.steps < 1)) throw new InvalidArgumentError('steps', 'a positive integer', options.steps);
  const {release, cleaned} = prepareRunFolder(out, {resume: options.resume, overwrite: options.overwrite});
  try {
    return await runLocked(options, out, cleaned);
  } finally {
    release();
  }
}

async function runLocked(options: RunOptions, out: string, cleaned: string[]): Promise<RunSummary> {
  const say = (line: string): void => {
    if (options.progress !== null) (options.progress ?? process.stderr).write(`${line}\n`);
  };
  if (cleaned.length) say(`removed what interrupted writes left: ${cleaned.join(', ')}`);
  const runFile = path.join(out, 'run.json');
  let opts = options;
  let stored: Record<string, unknown> | undefined;
  let resumed: RunSummary['resumed'];
  if (options.resume) {
    ({opts, stored} = resumeSettings(options, out));
    const ckpt = inspectLatestCheckpoint<{runId?: string}>(path.join(out, 'checkpoints'));
    if (stored.runId !== undefined && ckpt.trainer.runId !== undefined && ckpt.trainer.runId !== stored.runId) {
      throw new ConfigError('checkpoint', `a checkpoint of the run in ${runFile} (run ${stored.runId})`, `${ckpt.path} of run ${ckpt.trainer.runId}`);
    }
    // A warning, not progress: said on stderr also when progress output is off (--quiet).
    for (const s of ckpt.skipped) (options.progress ?? process.stderr).write(`skipped damaged checkpoint: ${s.reason}\n`);
    resumed = {checkpoint: ckpt.path, step: ckpt.step, skipped: ckpt.skipped};
  }
  const spec = resolveModelSpec(Object.fromEntries(MODEL_SPEC_KEYS.map((k) => [k, opts[k]])) as ModelSpec);
  const setup = await setupBackend(opts.backend ?? 'auto');
  const seed = opts.seed ?? 0;
  const dataSpec = opts.data ?? D.data;
  const split = loadSplits(dataSpec, {seed, testFraction: opts.heldOutFraction, validationFraction: opts.validationFraction});
  const ds = split.train;
  if (ds.numClasses < 2) throw new InvalidArgumentError('data', 'a data set with at least 2 classes', `${dataSpec} with ${ds.numClasses} class`);
  const batchSize = opts.batchSize ?? D.batchSize;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new InvalidArgumentError('batchSize', 'a positive integer', batchSize);
  const stepsPerEpoch = Math.floor(datasetSize(split.train) / batchSize);
  if (stepsPerEpoch < 1) throw new InvalidArgumentError('batchSize', `at most the ${datasetSize(split.train)} training examples`, batchSize);
  const totalSteps = opts.steps ?? Math.max(1, Math.round((opts.epochs ?? D.epochs) * stepsPerEpoch));
  if (resumed && totalSteps < resumed.step) {
    throw new InvalidArgumentError('steps', `at least ${resumed.step} (the step of the checkpoint being resumed)`, totalSteps);
  }
  const runId = (stored?.runId as string | undefined) ?? crypto.randomUUID();
  const config: Record<string, unknown> = {
    runId,
    router: spec.router,
    gradient: spec.router === 'sparse-ot' ? spec.gradient : undefined,
    experts: spec.router === 'dense' ? undefined : spec.experts,
    capacityFactor: spec.router === 'dense' ? undefined : spec.capacityFactor,
    evalCapacityFactor: opts.evalCapacityFactor,
    groupSize: opts.groupSize,
    k: opts.k,
    loadBalanceLossWeight: opts.loadBalanceLossWeight,
    zLossWeight: opts.zLossWeight,
    jitterNoise: opts.jitterNoise,
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
    // Pinned at the first run so that extending a resumed run keeps the warmup it had.
    warmupSteps: opts.warmupSteps ?? defaultWarmupSteps(totalSteps),
    clipNorm: opts.clipNorm ?? D.clipNorm,
    weightDecay: opts.weightDecay ?? D.weightDecay,
    checkpointEvery: opts.checkpointEvery ?? D.checkpointEvery,
    evalEvery: opts.evalEvery ?? defaultEvalEvery(totalSteps),
    logEvery: opts.logEvery ?? D.logEvery,
    backend: setup.backend,
  };
  for (const k of Object.keys(config)) if (config[k] === undefined) delete config[k];
  atomicWriteFile(runFile, JSON.stringify({...config, backend: opts.backend ?? 'auto', out}, null, 2));
  if (resumed) {
    const was = stored!.steps as number;
    say(
      `resuming ${out} from ${path.relative(out, resumed.checkpoint)} (step ${resumed.step} of ${was})` +
        (totalSteps !== was ? `; budget ${was} -> ${totalSteps} steps` : resumed.step >= totalSteps ? '; already at its budget: evaluating and writing the outputs again' : ''),
    );
  }

  const bar = opts.progress === null ? null : new ProgressBar(totalSteps, opts.progress ?? process.stderr);
  bar?.message(
    `tfjs-moe train: ${spec.router}${spec.router === 'sparse-ot' ? ` (${spec.gradient} gradient)` : ''}` +
      `${spec.router === 'dense' ? '' : `, ${spec.experts} experts, capacity factor ${spec.capacityFactor}`}` +
      ` | ${dataSpec}: ${datasetSize(split.train)} train / ${datasetSize(split.heldOut)} validation / ${datasetSize(split.test)} test | ${totalSteps} steps of ${batchSize} | backend ${setup.backend} | out ${out}`,
  );
  const t0 = performance.now();
  const result = await train({
    model: (initSeed) => buildModel(spec, ds, initSeed),
    data: split,
    seed,
    batchSize,
    steps: totalSteps,
    learningRate: config.learningRate as number,
    warmupSteps: config.warmupSteps as number,
    maxShift: config.maxShift as number,
    clipNorm: config.clipNorm as number,
    weightDecay: config.weightDecay as number,
    logEvery: config.logEvery as number,
    evalEvery: config.evalEvery as number,
    checkpointEvery: config.checkpointEvery as number,
    outDir: out,
    resume: opts.resume,
    runId,
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
      routing: routingDetails(result.model, split.test, 256),
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
  return {out, backend: setup.backend, result, seconds, config, resumed};
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
  const lines: string[] = [];
  if (run.resumed) lines.push(`resumed from ${run.resumed.checkpoint} (step ${run.resumed.step})${run.resumed.skipped.length ? `, skipping ${run.resumed.skipped.length} damaged` : ''}`);
  lines.push(`test accuracy ${(100 * r.final.accuracy).toFixed(2)}% on ${r.final.examples} examples (loss ${r.final.loss.toFixed(4)}), ${r.steps} steps in ${run.seconds.toFixed(1)} s on ${run.backend}`);
  for (const [name, s] of Object.entries(r.trainBalance)) lines.push(`  ${name} train:    ${formatBalance(s)}`);
  for (const [name, s] of Object.entries(r.final.balance)) {
    lines.push(`  ${name} test:     ${formatBalance(s)}${s.normalizedEntropy !== undefined ? ` entropy ${s.normalizedEntropy.toFixed(2)}` : ''}`);
  }
  lines.push(`wrote ${path.join(run.out, 'model')}/, ${path.join(run.out, 'report.html')}, ${path.join(run.out, 'log.jsonl')}`);
  return lines;
}

