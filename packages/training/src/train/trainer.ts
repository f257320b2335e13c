/**
 * The training loop: a custom loop (tf.variableGrads + {@link AdamW}) rather than `model.fit`,
 * because exact resumption needs every piece of state in hand: weights, Adam moments and step,
 * the data order and the random streams.
 *
 * Determinism, through seeds only (`Math.random` is never read or replaced): the model builder
 * receives a seed derived from `seed` and passes it to the models' seeded initializers; the
 * data order of epoch e is a permutation seeded by `(seed, e)`; before step s every router's
 * training noise (jitter, logit noise) is seeded from `(seed, s)` (`seedRouterNoise`). On `cpu`
 * two runs with one seed are therefore identical, and a run resumed from a checkpoint at step s
 * continues exactly as the uninterrupted run did.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {checkOptions, ConfigError, InvalidArgumentError, NonFiniteError, seedRouterNoise, withRoutingMetrics} from '@tfjs-moe/router';
import {batchesPerEpoch, datasetSize, toTfDataset, type Batch, type DataSplit, type ImageDataset} from '../data/dataset';
import {atomicWriteFile, nodeFileSystem} from '../io/file-io';
import {mergeStats, type LoadBalanceStats} from '../metrics/load-balance';
import {readLayerStatsAsync} from '../metrics/moe-layers';
import {deriveSeed} from '../rng';
import {hasCheckpoint, readLatestCheckpoint, setWeightsFromArtifacts, writeCheckpoint} from './checkpoint';
import {checkModelClasses, evaluate} from './evaluate';
import {AdamW} from './optimizer';
import {TRAINING_DEFAULTS as D, defaultEvalEvery, defaultWarmupSteps} from '../defaults';
import {warmupCosine} from './schedule';
import type {TrainOptions, TrainResult, TrainerState, StepRecord, EvalRecord} from './records';
import {DivergedError, trainableVariables, trainStep} from './step';

export type {TrainOptions, StepRecord, EvalRecord, TrainResult} from './records';
export {evalSplit} from './records';
export {auxiliaryLoss, DivergedError, trainableVariables, trainStep} from './step';
export type {DivergenceCause} from './step';

/** The keys of {@link TrainOptions} (any other key is an UnknownOptionError naming the nearest). */
export const TRAIN_OPTION_KEYS = [
  'model', 'data', 'seed', 'batchSize', 'epochs', 'steps', 'learningRate', 'warmupSteps', 'maxShift', 'endLearningRate',
  'weightDecay', 'clipNorm', 'auxLossWeight', 'logEvery', 'evalEvery', 'evalExamples', 'checkpointEvery', 'keepCheckpoints',
  'outDir', 'resume', 'runId', 'onLog', 'onEval', 'fs',
] as const;

/** True when every trainable variable holds only finite values (one device read). */
async function weightsFinite(variables: tf.Variable[]): Promise<boolean> {
  if (variables.length === 0) return true;
  const bad = tf.tidy(() => tf.addN(variables.map((v) => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(v)), 'float32')))));
  const n = (await bad.data())[0];
  bad.dispose();
  return n === 0;
}

/** The name of the model's first weight holding NaN or Infinity (read only after a failed check). */
async function firstNonFiniteWeight(model: tf.LayersModel): Promise<string | null> {
  for (const w of model.weights) {
    const flag = tf.tidy(() => tf.all(tf.isFinite(w.read())));
    const ok = (await flag.data())[0];
    flag.dispose();
    if (!ok) return w.name;
  }
  return null;
}

function resolveSteps(o: TrainOptions, train: ImageDataset, batchSize: number): {total: number; perEpoch: number} {
  const perEpoch = batchesPerEpoch(datasetSize(train), batchSize, true);
  if (perEpoch < 1) throw new InvalidArgumentError('batchSize', `at most the ${datasetSize(train)} training examples`, batchSize);
  if (o.steps !== undefined) {
    if (!Number.isInteger(o.steps) || o.steps < 1) throw new InvalidArgumentError('steps', 'a positive integer', o.steps);
    return {total: o.steps, perEpoch};
  }
  const epochs = o.epochs ?? D.epochs;
  if (typeof epochs !== 'number' || !(epochs > 0)) throw new InvalidArgumentError('epochs', 'a number > 0', epochs);
  return {total: Math.max(1, Math.round(epochs * perEpoch)), perEpoch};
}

function nonNegativeInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0) throw new InvalidArgumentError(name, 'an integer >= 0', v);
  return v;
}
/**
 * Trains `options.model()` on `options.data.train` with cross-entropy plus the model's
 * auxiliary losses, AdamW, linear warmup + cosine decay, global-norm clipping, periodic
 * evaluation and atomic checkpoints; see the module doc for determinism and exact resumption.
 *
 * @example
 * ```ts
 * const data = splitDataset(loadDigits(), {seed: 0});
 * const result = await train({model: () => vmoe('mnist-tiny'), data, epochs: 1, outDir: 'runs/a', checkpointEvery: 50});
 * console.log(result.final.accuracy);
 * ```
 */
export async function train(options: TrainOptions): Promise<TrainResult> {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options', 'an object with model and data', options, 'train');
  checkOptions(options as unknown as Record<string, unknown>, TRAIN_OPTION_KEYS, 'train');
  if (typeof options.model !== 'function') throw new InvalidArgumentError('model', 'a function that builds the model from a seed', options.model, 'train');
  const data = options.data as Partial<DataSplit> | undefined;
  if (data === null || typeof data !== 'object' || data.train == null) {
    throw new InvalidArgumentError('data', 'a split {train, heldOut} (splitDataset(...))', data, 'train');
  }
  if (options.seed !== undefined && !Number.isInteger(options.seed)) throw new InvalidArgumentError('seed', 'an integer', options.seed, 'train');
  if (options.weightDecay !== undefined && !(Number.isFinite(options.weightDecay) && options.weightDecay >= 0)) {
    throw new InvalidArgumentError('weightDecay', 'a finite number >= 0', options.weightDecay, 'train');
  }
  const fs = options.fs ?? nodeFileSystem;
  const seed = options.seed ?? 0;
  const batchSize = options.batchSize ?? D.batchSize;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new InvalidArgumentError('batchSize', 'a positive integer', batchSize);
  const {total, perEpoch} = resolveSteps(options, options.data.train, batchSize);
  const warmup = nonNegativeInt('warmupSteps', options.warmupSteps ?? defaultWarmupSteps(total));
  const peak = options.learningRate ?? D.learningRate;
  const logEvery = Math.max(1, options.logEvery ?? D.logEvery);
  const evalEvery = nonNegativeInt('evalEvery', options.evalEvery ?? defaultEvalEvery(total));
  const checkpointEvery = nonNegativeInt('checkpointEvery', options.checkpointEvery ?? (options.outDir ? D.checkpointEvery : 0));
  const clipNorm = options.clipNorm ?? D.clipNorm;
  const auxWeight = options.auxLossWeight ?? D.auxLossWeight;
  if (checkpointEvery > 0 && !options.outDir) throw new InvalidArgumentError('outDir', 'a folder when checkpointEvery > 0', options.outDir);
  const ckptDir = options.outDir ? path.join(options.outDir, 'checkpoints') : '';
  const logPath = options.outDir ? path.join(options.outDir, 'log.jsonl') : '';

  const model = options.model(deriveSeed(seed, 'init') % 2 ** 31);
  const head = model.layers[model.layers.length - 1]?.getConfig().activation;
  if (head === 'softmax' || head === 'sigmoid') {
    model.dispose();
    throw new ConfigError('model output', 'logits (a linear classifier head; the loss applies the softmax)', head);
  }
  try {
    for (const ds of [options.data.train, options.data.heldOut, options.data.test]) if (ds) checkModelClasses(model, ds, 'train');
  } catch (e) {
    model.dispose();
    throw e;
  }
  const variables = trainableVariables(model);
  const optimizer = new AdamW(variables, {weightDecay: options.weightDecay ?? D.weightDecay});
  let state: TrainerState = {runId: options.runId, seed, totalSteps: total, batchSize, history: [], evals: []};
  let step = 0;
  if (options.resume && options.outDir && hasCheckpoint(ckptDir, fs)) {
    const ckpt = readLatestCheckpoint<TrainerState>(ckptDir, fs);
    try {
      if (options.runId !== undefined && ckpt.trainer.runId !== undefined && ckpt.trainer.runId !== options.runId) {
        throw new ConfigError('checkpoint', `a checkpoint of run ${options.runId} (${ckpt.path} belongs to run ${ckpt.trainer.runId})`, ckpt.path);
      }
      for (const [k, v] of [['seed', seed], ['batchSize', batchSize]] as const) {
        if (ckpt.trainer[k] !== v) throw new InvalidArgumentError(k, `${ckpt.trainer[k]} as in the checkpoint being resumed`, v);
      }
      if (total < ckpt.step) throw new InvalidArgumentError('steps', `at least ${ckpt.step} (the step of the checkpoint being resumed)`, total);
      setWeightsFromArtifacts(model, ckpt.artifacts);
      optimizer.setState(ckpt.optimizer);
    } finally {
      tf.dispose([...ckpt.optimizer.m, ...ckpt.optimizer.v]);
    }
    state = {...ckpt.trainer, runId: options.runId ?? ckpt.trainer.runId, totalSteps: total};
    step = ckpt.step;
  }
  const resumedFrom = step;
  if (logPath) {
    // The log holds exactly the records up to the resumed step (a killed run may have logged more).
    fs.mkdirSync(options.outDir!, {recursive: true});
    atomicWriteFile(logPath, [...state.history, ...state.evals].sort((a, b) => a.step - b.step).map((r) => JSON.stringify(r) + '\n').join(''), fs);
  }
  const appendLog = (r: StepRecord | EvalRecord): void => {
    if (logPath) fs.appendFileSync(logPath, JSON.stringify(r) + '\n');
  };

  const runEval = async (final: boolean): Promise<EvalRecord> => {
    // The final evaluation reads the test set when there is one; periodic ones the validation set.
    const held = final ? (options.data.test ?? options.data.heldOut) : options.data.heldOut;
    const limit = final ? datasetSize(held) : Math.min(datasetSize(held), options.evalExamples ?? D.evalExamples);
    // Periodic evaluations skip the per-token routing probe (it re-runs every router: about half
    // of an evaluation's time); the final one measures it.
    let result: Awaited<ReturnType<typeof evaluate>>;
    try {
      result = await evaluate(model, held, {batchSize: Math.max(batchSize, 128), maxExamples: limit, ...(final ? {} : {probeExamples: 0})});
    } catch (e) {
      // Weights overflowed by the last updates show up inside a layer (e.g. the sparse-OT cost).
      if (e instanceof NonFiniteError && !(e instanceof DivergedError)) throw new DivergedError(intervalStart + 1, step, {error: e}, lastCheckpoint, peak);
      throw e;
    }
    const record: EvalRecord = {type: 'eval', step, final, split: final && options.data.test ? 'test' : 'validation', ...result};
    state.evals.push(record);
    appendLog(record);
    await options.onEval?.(record);
    return record;
  };

  let iterator: Awaited<ReturnType<tf.data.Dataset<Batch>['iterator']>> | null = null;
  let iteratorEpoch = -1;
  let sumLoss: tf.Scalar | null = null;
  let sumCe: tf.Scalar | null = null;
  let sumAux: tf.Scalar | null = null;
  let sumCorrect: tf.Scalar | null = null;
  let lastNorm: tf.Scalar | null = null;
  let sinceLog = 0;
  let t0 = performance.now();
  let lastCheckpoint = step;
  let intervalStart = step;
  // The steps after which the loop logs: every logEvery, at every checkpoint and at the end.
  const logsAfter = (s: number): boolean => s % logEvery === 0 || s === total || (checkpointEvery > 0 && s % checkpointEvery === 0);
  const accumulate = (acc: tf.Scalar | null, v: tf.Scalar): tf.Scalar => {
    if (!acc) return v;
    const s = tf.add(acc, v) as tf.Scalar;
    tf.dispose([acc, v]);
    return s;
  };
  try {
    while (step < total) {
      const epoch = Math.floor(step / perEpoch);
      if (epoch !== iteratorEpoch) {
        const ds = toTfDataset(options.data.train, {batchSize, seed, epoch, dropRemainder: true, maxShift: options.maxShift ?? D.maxShift}, step % perEpoch);
        iterator = await ds.iterator();
        iteratorEpoch = epoch;
      }
      const next = await iterator!.next();
      const {xs, ys} = next.value as Batch;
      const lr = warmupCosine(step, {peak, totalSteps: total, warmupSteps: warmup, end: options.endLearningRate ?? D.endLearningRate});
      seedRouterNoise(model, deriveSeed(seed, 'step', step));
      // Only the steps that log (and checkpoint, and the last) compute the routing metrics: the
      // log reads the MoE layers' last metrics; the other steps skip their kernels (a quarter of
      // the default V-MoE's kernels), with the same outputs, auxiliary losses and gradients.
      let out: ReturnType<typeof trainStep>;
      try {
        out = withRoutingMetrics(model, logsAfter(step + 1), () => trainStep(model, variables, optimizer, xs, ys, lr, clipNorm, auxWeight));
      } catch (e) {
        tf.dispose([xs, ys]);
        // Non-finite data or weights from an earlier step surface inside a layer (the routers'
        // input check): the run diverged; say so, with the layer and tensor that showed it.
        if (e instanceof NonFiniteError && !(e instanceof DivergedError)) throw new DivergedError(intervalStart + 1, step + 1, {error: e}, lastCheckpoint, peak);
        throw e;
      }
      tf.dispose([xs, ys]);
      sumLoss = accumulate(sumLoss, out.loss);
      sumCe = accumulate(sumCe, out.crossEntropy);
      sumAux = accumulate(sumAux, out.aux);
      sumCorrect = accumulate(sumCorrect, out.correct);
      if (lastNorm) lastNorm.dispose();
      lastNorm = out.norm;
      sinceLog++;
      step++;
      // A run shorter than the interval (or not a multiple of it) still ends with a checkpoint.
      const checkpointNow = checkpointEvery > 0 && (step % checkpointEvery === 0 || step === total);
      if (logsAfter(step)) {
        const [loss, ce, aux, correct, norm] = await Promise.all([sumLoss, sumCe, sumAux, sumCorrect, lastNorm].map(async (t) => (await t!.data())[0]));
        tf.dispose([sumLoss!, sumCe!, sumAux!, sumCorrect!]);
        sumLoss = sumCe = sumAux = sumCorrect = null;
        // The values are read for the log anyway: a non-finite loss (any step since the last
        // log) or gradient norm stops training before anything of this interval is saved.
        if (!Number.isFinite(loss) || !Number.isFinite(norm)) throw new DivergedError(intervalStart + 1, step, {loss: loss / sinceLog, gradNorm: norm}, lastCheckpoint, peak);
        // The loss is computed before the update: an update that overflows the weights (a huge
        // learning rate) shows only in the weights. Checked before a checkpoint and at the end.
        if ((checkpointNow || step === total) && !(await weightsFinite(variables))) {
          const weight = (await firstNonFiniteWeight(model)) ?? 'unknown';
          throw new DivergedError(intervalStart + 1, step, {weight, loss: loss / sinceLog, gradNorm: norm}, lastCheckpoint, peak);
        }
        intervalStart = step;
        const now = performance.now();
        const record: StepRecord = {
          type: 'step',
          step,
          epoch,
          loss: loss / sinceLog,
          crossEntropy: ce / sinceLog,
          auxLoss: aux / sinceLog,
          accuracy: correct / (sinceLog * batchSize),
          learningRate: lr,
          gradNorm: norm,
          imagesPerSecond: (sinceLog * batchSize * 1000) / Math.max(1e-6, now - t0),
          balance: await readLayerStatsAsync(model),
        };
        sinceLog = 0;
        state.history.push(record);
        appendLog(record);
        await options.onLog?.(record);
        t0 = performance.now();
      }
      if (evalEvery > 0 && step % evalEvery === 0 && step < total) {
        await runEval(false);
        t0 = performance.now();
      }
      if (checkpointNow) {
        const optState = optimizer.getState();
        try {
          await writeCheckpoint(ckptDir, model, {step, optimizer: optState, trainer: state}, {keep: options.keepCheckpoints ?? D.keepCheckpoints, fs});
          lastCheckpoint = step;
        } finally {
          tf.dispose([...optState.m, ...optState.v]);
        }
        t0 = performance.now();
      }
    }
  } catch (e) {
    tf.dispose([sumLoss, sumCe, sumAux, sumCorrect, lastNorm].filter((t): t is tf.Scalar => t !== null));
    optimizer.dispose();
    model.dispose();
    throw e;
  }
  tf.dispose(lastNorm ?? []);
  optimizer.dispose();
  const final = await runEval(true);
  const perLayer: Record<string, LoadBalanceStats[]> = {};
  for (const r of state.history) for (const [name, s] of Object.entries(r.balance)) (perLayer[name] ??= []).push(s);
  const trainBalance: Record<string, LoadBalanceStats> = {};
  for (const [name, list] of Object.entries(perLayer)) trainBalance[name] = mergeStats(list);
  return {model, history: state.history, evals: state.evals, final, steps: total, resumedFrom, trainBalance};
}
