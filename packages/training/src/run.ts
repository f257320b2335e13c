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
import {datasetSize, splitDataset} from './data/dataset';
import {loadData} from './data/load';
import {atomicWriteFile, fileHandler} from './io/file-io';
import {formatBalance, type LoadBalanceStats} from './metrics/load-balance';
import {buildModel, resolveModelSpec, type ModelSpec} from './model-factory';
import {renderReport} from './report/html';
import {ProgressBar, type ProgressStream} from './report/progress';
import {train, type TrainResult} from './train/trainer';

/** Options of {@link runTraining}: the model, the data, the schedule and the outputs. */
export interface RunOptions extends ModelSpec {
  /** Data: `'digits'` (default), `'synthetic'`, a folder of images or a `.npy` / `.json` file. */
  data?: string;
  /** Fraction of each class held out. Default 0.2. */
  heldOutFraction?: number;
  /** Seed of the split, initialization, data order and step randomness. Default 0. */
  seed?: number;
  /** Epochs (default 1: 125 steps of 64 digits); ignored when `steps` is given. */
  epochs?: number;
  /** Training steps. */
  steps?: number;
  /** Examples per step. Default 64. */
  batchSize?: number;
  /** Peak learning rate. Default 2e-3. */
  learningRate?: number;
  /** Warmup steps. Default 5% of the steps. */
  warmupSteps?: number;
  /** Gradient clipping norm. Default 1. */
  clipNorm?: number;
  /** Weight decay. Default 1e-4. */
  weightDecay?: number;
  /** Backend. Default `'auto'` (tfjs-node, then wasm, then cpu). */
  backend?: BackendRequest;
  /** Output folder. Default `'runs/<router>'`. */
  out?: string;
  /** Continue from the newest checkpoint in `out`. Default false. */
  resume?: boolean;
  /** Checkpoint every this many steps. Default 50. */
  checkpointEvery?: number;
  /** Evaluate every this many steps (0: at the end only). Default: about 4 times per run. */
  evalEvery?: number;
  /** Log every this many steps. Default 10. */
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
  const ds = loadData(opts.data ?? 'digits', {seed});
  const split = splitDataset(ds, {heldOutFraction: opts.heldOutFraction ?? 0.2, seed});
  const batchSize = opts.batchSize ?? 64;
  const stepsPerEpoch = Math.floor(datasetSize(split.train) / batchSize);
  const totalSteps = opts.steps ?? Math.max(1, Math.round((opts.epochs ?? 1) * stepsPerEpoch));
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
    data: opts.data ?? 'digits',
    heldOutFraction: opts.heldOutFraction ?? 0.2,
    seed,
    steps: totalSteps,
    batchSize,
    learningRate: opts.learningRate ?? 2e-3,
    warmupSteps: opts.warmupSteps,
    clipNorm: opts.clipNorm ?? 1,
    weightDecay: opts.weightDecay ?? 1e-4,
    checkpointEvery: opts.checkpointEvery ?? 50,
    evalEvery: opts.evalEvery ?? Math.max(1, Math.floor(totalSteps / 4)),
    logEvery: opts.logEvery ?? 10,
    backend: setup.backend,
  };
  for (const k of Object.keys(config)) if (config[k] === undefined) delete config[k];
  fs.mkdirSync(out, {recursive: true});
  if (!opts.resume) atomicWriteFile(runFile, JSON.stringify({...config, backend: opts.backend ?? 'auto', out}, null, 2));

  const bar = opts.progress === null ? null : new ProgressBar(totalSteps, opts.progress ?? process.stderr);
  bar?.message(
    `tfjs-moe train: ${spec.router}${spec.router === 'sparse-ot' ? ` (${spec.gradient} gradient)` : ''}` +
      `${spec.router === 'dense' ? '' : `, ${spec.experts} experts, capacity factor ${spec.capacityFactor}`}` +
      ` | ${ds.name}: ${datasetSize(split.train)} train / ${datasetSize(split.heldOut)} held-out | ${totalSteps} steps of ${batchSize} | backend ${setup.backend} | out ${out}`,
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
    clipNorm: config.clipNorm as number,
    weightDecay: config.weightDecay as number,
    logEvery: config.logEvery as number,
    evalEvery: config.evalEvery as number,
    checkpointEvery: config.checkpointEvery as number,
    outDir: out,
    resume: opts.resume,
    onLog: (r) => bar?.update(r),
    onEval: (e) => {
      if (!e.final) bar?.message(`  step ${e.step}: held-out accuracy ${(100 * e.accuracy).toFixed(2)}% (${e.examples} examples)`);
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
      title: `tfjs-moe: ${spec.router}${spec.router === 'sparse-ot' ? ` (${spec.gradient})` : ''} on ${ds.name}`,
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
  const lines = [`held-out accuracy ${(100 * r.final.accuracy).toFixed(2)}% on ${r.final.examples} examples (loss ${r.final.loss.toFixed(4)}), ${r.steps} steps in ${run.seconds.toFixed(1)} s on ${run.backend}`];
  for (const [name, s] of Object.entries(r.trainBalance)) lines.push(`  ${name} train:    ${formatBalance(s)}`);
  for (const [name, s] of Object.entries(r.final.balance)) {
    lines.push(`  ${name} held-out: ${formatBalance(s)}${s.normalizedEntropy !== undefined ? ` entropy ${s.normalizedEntropy.toFixed(2)}` : ''}`);
  }
  lines.push(`wrote ${path.join(run.out, 'model')}/, ${path.join(run.out, 'report.html')}, ${path.join(run.out, 'log.jsonl')}`);
  return lines;
}

