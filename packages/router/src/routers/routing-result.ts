/**
 * The one record that every router returns, in the style of flaxformer's routing instructions:
 * per-expert token indices and combine weights (experts x capacity slots per group), an auxiliary
 * loss and a flat map of metrics. Dispatch and combine (`dispatch.ts`) consume it; they do not
 * care which routing rule produced it.
 */
import * as tf from '@tensorflow/tfjs';

/** Marks an empty slot of `expertIndices`: the expert took fewer tokens than its capacity. */
export const EMPTY_SLOT = -1;

/**
 * Metrics of one routing call: a flat map from a metric name to a scalar `<float32>[]` or a
 * per-expert vector `<float32>[experts]`. Every router fills the standard names below (see
 * `metrics.ts`); OT routers add their solver's names. Values are averaged over groups.
 *
 * Standard names:
 * - `demand` `[experts]`: tokens per group that asked for the expert, before capacity (for
 *   token-choice routers: tokens with the expert among their choices; for expert-choice and OT
 *   routers: tokens whose largest gate is the expert).
 * - `tokensPerExpert` `[experts]`: tokens kept per group by each expert (after capacity).
 * - `tokensPerExpertMin`, `tokensPerExpertMean`, `tokensPerExpertMax` `[]`: over experts and groups.
 * - `droppedFraction` `[]`: fraction of real (unmasked) tokens that no expert took.
 * - `expertsPerTokenMin`, `expertsPerTokenMean`, `expertsPerTokenMax` `[]`: over real tokens.
 * - `importance` `[experts]`: mean gate probability of each expert over real tokens.
 * - `auxiliaryLoss` `[]`: the total auxiliary loss (weighted sum of the parts), and the parts
 *   themselves where a router has them (e.g. `loadBalanceLoss`, `zLoss`).
 *
 * OT router names (added by `SparseOTRouter`): `suboptimality` (where known), `meanRowViolation`,
 * `solverIterations`.
 */
export type RoutingMetrics = Record<string, tf.Tensor>;

/** Metrics as plain JavaScript values (scalars become numbers, vectors become number arrays). */
export type RoutingMetricValues = Record<string, number | number[]>;

/**
 * The output of a router for one batch of groups. The caller owns its tensors and must call
 * {@link RoutingResult.dispose} (or let an enclosing `tf.tidy` collect them).
 *
 * @example
 * ```ts
 * const router = topKRouter({numExperts: 4});
 * const tokens = tf.randomNormal([2, 8, 16]) as tf.Tensor3D; // <float32>[groups, groupSize, d]
 * const r = router.route(tokens, {training: false, capacity: 2});
 * r.expertIndices.shape; // [2, 4, 2]: token index within its group, -1 in empty slots
 * r.dispose();
 * ```
 */
export interface RoutingResult {
  /**
   * `<int32>[groups, experts, capacity]`: for every expert, the indices (within the group) of
   * the tokens it processes, in slot order; {@link EMPTY_SLOT} (-1) in unused slots. An expert
   * never holds the same token twice.
   */
  expertIndices: tf.Tensor3D;
  /**
   * `<float32>[groups, experts, capacity]`: the weight of each slot's expert output in the
   * token's combined output; exactly 0 in empty slots. Differentiable with respect to the router
   * logits where the routing rule is.
   */
  combineWeights: tf.Tensor3D;
  /** `<float32>[]`: the router's weighted auxiliary loss (0 when the rule has none). */
  auxiliaryLoss: tf.Scalar;
  /** Scalars and per-expert vectors, see {@link RoutingMetrics}. */
  metrics: RoutingMetrics;
  /** Disposes every tensor of the result (indices, weights, loss and metrics). */
  dispose(): void;
}

/**
 * Assembles a {@link RoutingResult} with its `dispose` helper.
 *
 * @example
 * ```ts
 * const r = makeRoutingResult(indices, weights, tf.scalar(0), {});
 * r.dispose();
 * ```
 */
export function makeRoutingResult(
  expertIndices: tf.Tensor3D,
  combineWeights: tf.Tensor3D,
  auxiliaryLoss: tf.Scalar,
  metrics: RoutingMetrics,
): RoutingResult {
  return {
    expertIndices,
    combineWeights,
    auxiliaryLoss,
    metrics,
    dispose() {
      tf.dispose([expertIndices, combineWeights, auxiliaryLoss, ...Object.values(metrics)]);
    },
  };
}

/**
 * Reads metric tensors back as plain numbers and arrays (one synchronous read per metric: meant
 * for callbacks and logs, not for hot loops).
 *
 * @example
 * ```ts
 * const values = metricsToValues(result.metrics);
 * console.log(values.droppedFraction, values.tokensPerExpert); // 0.125 [2, 2, 1, 2]
 * ```
 */
export function metricsToValues(metrics: RoutingMetrics): RoutingMetricValues {
  const out: RoutingMetricValues = {};
  for (const [name, t] of Object.entries(metrics)) {
    if (t.isDisposed) continue;
    const v = t.dataSync();
    out[name] = t.rank === 0 ? v[0] : Array.from(v);
  }
  return out;
}
