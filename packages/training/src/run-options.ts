/**
 * A training run's settings: the options {@link runTraining} takes, and how they meet the
 * settings stored in the run folder's `run.json` when a run is resumed.
 */
import * as fs from 'fs';
import * as path from 'path';
import {ConfigError} from '@tfjs-moe/router';
import type {BackendRequest} from './backend';
import {TRAINING_DEFAULTS as D} from './defaults';
import {readJsonFile} from './io/file-io';
import {MODEL_SPEC_KEYS, type ModelSpec} from './model-factory';
import type {ProgressStream} from './report/progress';

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

/** Every key {@link RunOptions} accepts. */
export const RUN_OPTION_KEYS = [
  ...MODEL_SPEC_KEYS,
  'data', 'heldOutFraction', 'validationFraction', 'maxShift', 'seed', 'epochs', 'steps', 'batchSize', 'learningRate', 'warmupSteps', 'clipNorm', 'weightDecay',
  'backend', 'out', 'resume', 'overwrite', 'checkpointEvery', 'evalEvery', 'logEvery', 'report', 'progress',
] as const;

/** Settings a resumed run may change: the budget, the backend, the intervals and the outputs. */
const CHANGEABLE_ON_RESUME = new Set(['steps', 'epochs', 'backend', 'out', 'resume', 'overwrite', 'checkpointEvery', 'evalEvery', 'logEvery', 'report', 'progress']);

/**
 * The run's settings as given, merged with run.json's on resume: a resumed run keeps the stored
 * settings; only the budget (`steps` / `epochs`, to extend it), the backend, the intervals and
 * the outputs may change, and any other changed setting is a `ConfigError` that names each one.
 *
 * @example
 * ```ts
 * const {opts, stored} = resumeSettings({resume: true, steps: 2000}, 'runs/a');
 * ```
 */
export function resumeSettings(options: RunOptions, out: string): {opts: RunOptions; stored: Record<string, unknown>} {
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
