/** Finding the MoE layers of a model and reading their last routing metrics. */
import * as tf from '@tensorflow/tfjs';
import {isMoELayer, moeLayers, type MoE} from '@tfjs-moe/router';
import {statsFromMetrics, type LoadBalanceStats} from './load-balance';

/** The one "is this an MoE layer" test (`isMoELayer` of `@tfjs-moe/router`). */
export {isMoELayer};

/** An MoE layer, as measurement reads it. */
export type MoELayerLike = MoE;

/**
 * The MoE layers of `model`, in layer order, searching nested models: `moeLayers` of
 * `@tfjs-moe/router` (this name is kept for the training package's callers).
 *
 * @example
 * ```ts
 * findMoELayers(model).map((l) => l.name); // ['block1_moe', 'block3_moe']
 * ```
 */
export function findMoELayers(model: tf.LayersModel | tf.layers.Layer): MoE[] {
  return moeLayers(model);
}

/**
 * Load statistics of each MoE layer's last call, keyed by layer name (layers that have not run
 * yet are left out). `mode` picks the last call of any mode (`'last'`, the default), the last
 * training call (`'training'`: a `fit` batch) or the last inference call (`'inference'`: a
 * validation or `predict` batch), so that training and validation statistics stay apart.
 *
 * @example
 * ```ts
 * model.predict(xs);
 * readLayerStats(model)['block1_moe'].maxOverMean; // e.g. 1.08
 * ```
 */
export function readLayerStats(model: tf.LayersModel, mode: 'last' | 'training' | 'inference' = 'last'): Record<string, LoadBalanceStats> {
  const out: Record<string, LoadBalanceStats> = {};
  for (const layer of moeLayers(model)) {
    const m = mode === 'training' ? layer.lastTrainingMetrics : mode === 'inference' ? layer.lastInferenceMetrics : layer.lastMetrics;
    if (m && Array.isArray(m.tokensPerExpert)) out[layer.name] = statsFromMetrics(m);
  }
  return out;
}

/**
 * {@link readLayerStats} with asynchronous reads (`MoE.readLastMetrics`), for every backend
 * including webgpu in Node, where synchronous reads fail.
 *
 * @example
 * ```ts
 * const stats = await readLayerStatsAsync(model);
 * ```
 */
export async function readLayerStatsAsync(model: tf.LayersModel): Promise<Record<string, LoadBalanceStats>> {
  await Promise.all(findMoELayers(model).map((layer) => layer.readLastMetrics?.()));
  return readLayerStats(model);
}
