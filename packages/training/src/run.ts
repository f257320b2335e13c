/**
 * A complete training run as the CLI performs it: backend, data, model, training with
 * checkpoints, final evaluation, and the outputs in one folder:
 * `model/` (model.json + weights.bin), `report.html`, `log.jsonl`, `summary.json`, `run.json`,
 * `checkpoints/`.
 */
import * as crypto from 'crypto';
import * as path from 'path';
import {checkOptions, ConfigError, InvalidArgumentError} from '@tfjs-moe/router';
import {setupBackend} from './backend';
import {datasetSize} from './data/dataset';
import {loadSplits} from './data/load';
import {TRAINING_DEFAULTS as D, defaultEvalEvery, defaultWarmupSteps} from './defaults';
import {atomicWriteFile, fileHandler} from './io/file-io';
import {prepareRunFolder} from './io/run-folder';
import {formatBalance, type LoadBalanceStats} from './metrics/load-balance';
import {buildModel, MODEL_SPEC_KEYS, resolveModelSpec, type ModelSpec} from './model-factory';
import {renderReport} from './report/html';
import {routingDetails} from './report/routing';
import {ProgressBar} from './report/progress';
import {inspectLatestCheckpoint} from './train/checkpoint';
import {train, type TrainResult} from './train/trainer';
import {resumeSettings, RUN_OPTION_KEYS, type RunOptions} from './run-options';

export {RUN_OPTION_KEYS, type RunOptions} from './run-options';

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
  /** The report written (`<out>/report.html`); absent with `report: false`. */
  report?: string;
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
  // A bad model setting is named before the run folder is looked at: a folder left by an earlier
  // run must not hide it behind "pass --resume or --overwrite". (A resumed run's settings merge
  // with run.json, so they are checked after it is read.)
  if (!options.resume) resolveModelSpec(Object.fromEntries(MODEL_SPEC_KEYS.map((k) => [k, options[k]])) as ModelSpec);
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
  // Model settings that do not fit the data (a patch size that does not divide the images, heads
  // that do not divide the width) fail here, before run.json claims the folder for a fresh run.
  if (!resumed) buildModel(spec, ds, seed).dispose();
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
    trainBalance: result.trainBalance,
    heldOutBalance: result.final.balance,
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
  return {out, backend: setup.backend, result, seconds, config, resumed, ...(opts.report !== false ? {report: path.join(out, 'report.html')} : {})};
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
  const entropy = (s: LoadBalanceStats): string => (s.normalizedEntropy !== undefined ? ` entropy ${s.normalizedEntropy.toFixed(2)}` : '');
  for (const [name, s] of Object.entries(r.trainBalance)) lines.push(`  ${name} train:    ${formatBalance(s)}${entropy(s)}`);
  for (const [name, s] of Object.entries(r.final.balance)) lines.push(`  ${name} test:     ${formatBalance(s)}${entropy(s)}`);
  lines.push(`wrote ${path.join(run.out, 'model')}/, ${run.report ? `${run.report}, ` : ''}${path.join(run.out, 'log.jsonl')}`);
  return lines;
}
