/** Finding the MoE layers of a model and reading their last routing metrics. */
import * as tf from '@tensorflow/tfjs';
import {statsFromMetrics, type LoadBalanceStats} from './load-balance';

/** The part of an MoE layer (`@tfjs-moe/router`'s `moe()`) that measurement reads. */
export interface MoELayerLike {
  /** The layer's name (used as the key of its statistics). */
  name: string;
  /** Metrics of the layer's last call as plain values (see `RoutingResult.metrics`), or null before the first call. */
  lastMetrics: Record<string, number | number[]> | null | undefined;
}

/**
 * True when `layer` exposes routing metrics like the MoE layer does.
 *
 * @example
 * ```ts
 * model.layers.filter(isMoELayer).map((l) => l.name); // ['block1_moe', 'block3_moe']
 * ```
 */
export function isMoELayer(layer: unknown): layer is MoELayerLike {
  return typeof layer === 'object' && layer !== null && 'lastMetrics' in layer;
}

/**
 * The MoE layers of `model`, in layer order, searching nested models and layers that hold
 * sub-layers (`layer.layers`).
 *
 * @example
 * ```ts
 * findMoELayers(model).map((l) => l.name); // ['block1_moe', 'block3_moe']
 * ```
 */
export function findMoELayers(model: tf.LayersModel | tf.layers.Layer): MoELayerLike[] {
  const out: MoELayerLike[] = [];
  const seen = new Set<unknown>();
  const visit = (layer: unknown): void => {
    if (!layer || seen.has(layer)) return;
    seen.add(layer);
    if (isMoELayer(layer)) out.push(layer);
    const children = (layer as {layers?: unknown[]}).layers;
    if (Array.isArray(children)) children.forEach(visit);
  };
  visit(model);
  return out;
}

/**
 * Load statistics of each MoE layer's last call, keyed by layer name (layers that have not run
 * yet are left out).
 *
 * @example
 * ```ts
 * model.predict(xs);
 * readLayerStats(model)['block1_moe'].maxOverMean; // e.g. 1.08
 * ```
 */
export function readLayerStats(model: tf.LayersModel): Record<string, LoadBalanceStats> {
  const out: Record<string, LoadBalanceStats> = {};
  for (const layer of findMoELayers(model)) {
    const m = layer.lastMetrics;
    if (m && Array.isArray(m.tokensPerExpert)) out[layer.name] = statsFromMetrics(m);
  }
  return out;
}
