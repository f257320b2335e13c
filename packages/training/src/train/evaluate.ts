/** Evaluation on held-out data: accuracy, loss, and the MoE layers' load balance. */
import * as tf from '@tensorflow/tfjs';
import {ConfigError} from '@tfjs-moe/router';
import {datasetSize, subset, toTfDataset, type Batch, type ImageDataset} from '../data/dataset';
import {mergeStats, type LoadBalanceStats} from '../metrics/load-balance';
import {readLayerStatsAsync} from '../metrics/moe-layers';
import {measureProbe, routingProbe} from '../metrics/probe';
import {seededPermutation} from '../rng';

/** Options of {@link evaluate}. */
export interface EvaluateOptions {
  /** Examples per forward pass. Default 128. */
  batchSize?: number;
  /** Use at most this many examples: a fixed (seed 0) random subset, so every class shows up. Default: all. */
  maxExamples?: number;
  /**
   * Measure per-token routing (class x expert counts, entropy) on this many examples, a fixed
   * random sample (`probeRouting`; it re-runs each MoE layer's router, so it costs extra time).
   * 0 turns it off. Default 512.
   */
  probeExamples?: number;
}

/** Held-out results. */
export interface EvalResult {
  /** Fraction of examples classified correctly. */
  accuracy: number;
  /** Mean cross-entropy. */
  loss: number;
  /** Examples evaluated. */
  examples: number;
  /** Accuracy of each class (NaN for a class without examples). */
  perClassAccuracy: number[];
  /** Load statistics of each MoE layer over the evaluation batches (inference mode), with class x expert counts where the model allows probing. */
  balance: Record<string, LoadBalanceStats>;
}

/**
 * Checks that `model`'s output units (its classes) fit the data set `ds`: as many as
 * `ds.numClasses`, and more than every label (tf.oneHot would make all-zero rows for the others,
 * training and scoring silently wrong).
 *
 * @throws {ConfigError} naming the data's classes (or largest label) and the model's classes
 *
 * @example
 * ```ts
 * checkModelClasses(vmoe('mnist-tiny'), loadDigits()); // 10 = 10: fine
 * ```
 */
export function checkModelClasses(model: tf.LayersModel, ds: ImageDataset, context?: string): void {
  const units = model.outputs[0]?.shape[model.outputs[0].shape.length - 1];
  if (typeof units !== 'number') return;
  if (Number.isInteger(ds.numClasses) && ds.numClasses !== units) {
    throw new ConfigError(`data classes (${ds.name})`, `the model's ${units} classes (output units)`, ds.numClasses, context);
  }
  let maxLabel = -1;
  for (let i = 0; i < ds.labels.length; i++) if (ds.labels[i] > maxLabel) maxLabel = ds.labels[i];
  if (maxLabel >= units) {
    throw new ConfigError(`data labels (${ds.name})`, `less than the model's ${units} classes (output units)`, `label ${maxLabel}`, context);
  }
}

/**
 * Evaluates `model` (inference mode) on `ds`. Reads back once per batch, asynchronously, after the
 * batch's forward pass (evaluation is not a hot loop of the training step).
 *
 * @throws {ConfigError} when the data's classes or labels do not fit the model's output units ({@link checkModelClasses})
 *
 * @example
 * ```ts
 * const {accuracy} = await evaluate(model, heldOut);
 * ```
 */
export async function evaluate(model: tf.LayersModel, ds: ImageDataset, options: EvaluateOptions = {}): Promise<EvalResult> {
  checkModelClasses(model, ds, 'evaluate');
  const batchSize = options.batchSize ?? 128;
  let data = ds;
  if (options.maxExamples !== undefined && options.maxExamples < datasetSize(ds)) {
    const perm = seededPermutation(datasetSize(ds), 0).slice(0, options.maxExamples);
    data = subset(ds, Array.from(perm).sort((a, b) => a - b));
  }
  let correct = 0;
  let lossSum = 0;
  const classTotal = new Array<number>(ds.numClasses).fill(0);
  const classCorrect = new Array<number>(ds.numClasses).fill(0);
  const stats: Record<string, LoadBalanceStats[]> = {};
  // The probe reads synchronously, which webgpu in Node cannot (no OffscreenCanvas): skipped there.
  const syncReads = tf.getBackend() !== 'webgpu' || typeof (globalThis as {OffscreenCanvas?: unknown}).OffscreenCanvas !== 'undefined';
  const probe = (options.probeExamples ?? 512) > 0 && syncReads ? routingProbe(model) : null;
  let probed = 0;
  // A fixed shuffled order (seed 0): the probed first examples then sample every class, even when
  // the data set is sorted by class (as the embedded digits and their held-out split are).
  const batches = await toTfDataset(data, {batchSize, seed: 0}).iterator();
  for (let next = await batches.next(); !next.done; next = await batches.next()) {
    const {xs, ys} = next.value as Batch;
    const useProbe = probe !== null && probed < (options.probeExamples ?? 512);
    let outputs: tf.Tensor[];
    try {
      outputs = useProbe ? (probe.model.apply(xs, {training: false}) as tf.Tensor[]) : [model.apply(xs, {training: false}) as tf.Tensor];
    } catch (e) {
      tf.dispose([xs, ys]); // a layer's check failed (e.g. NaN inputs): the batch is not left behind
      throw e;
    }
    const logits = outputs[0] as tf.Tensor2D;
    const [pred, loss] = tf.tidy(() => {
      const l = tf.losses.softmaxCrossEntropy(tf.oneHot(ys, logits.shape[1]), logits, undefined, 0, tf.Reduction.SUM);
      return [tf.argMax(logits, 1), l];
    });
    const layerStats = useProbe ? measureProbe(probe, outputs.slice(1), ys, ds.numClasses) : await readLayerStatsAsync(model);
    if (useProbe) probed += ys.shape[0];
    tf.dispose(outputs);
    const [p, y, l] = await Promise.all([pred.data(), ys.data(), loss.data()]);
    lossSum += l[0];
    for (let i = 0; i < y.length; i++) {
      classTotal[y[i]]++;
      if (p[i] === y[i]) {
        correct++;
        classCorrect[y[i]]++;
      }
    }
    for (const [name, s] of Object.entries(layerStats)) (stats[name] ??= []).push(s);
    tf.dispose([pred, loss, xs, ys]);
  }
  const n = datasetSize(data);
  const balance: Record<string, LoadBalanceStats> = {};
  for (const [name, list] of Object.entries(stats)) balance[name] = mergeStats(list);
  return {
    accuracy: correct / n,
    loss: lossSum / n,
    examples: n,
    perClassAccuracy: classTotal.map((t, c) => (t ? classCorrect[c] / t : NaN)),
    balance,
  };
}
