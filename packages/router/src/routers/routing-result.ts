/**
 * The one record that every router returns, in the style of flaxformer's routing instructions:
 * per-expert token indices and combine weights (experts x capacity slots per group), the router
 * logits, an auxiliary loss and typed metrics. Dispatch and combine (`moe/dispatch.ts`) consume
 * it; they do not care which routing rule produced it.
 */
import * as tf from '@tensorflow/tfjs';

/** Marks an empty slot of `tokenIndices`: the expert took fewer tokens than its capacity. */
export const EMPTY_SLOT = -1;

/**
 * The metrics every router fills (see `metrics.ts`). Per-expert vectors are `<float32>[experts]`
 * means over groups; the rest are scalars `<float32>[]`.
 */
export interface StandardMetrics {
  /**
   * `[experts]`: tokens per group that asked for the expert, before capacity (token-choice
   * routers: tokens with the expert among their choices; expert-choice and OT routers: tokens
   * whose largest gate is the expert).
   */
  demand: tf.Tensor1D;
  /** `[experts]`: tokens kept per group by each expert (after capacity). */
  tokensPerExpert: tf.Tensor1D;
  /** `[]`: the fewest tokens any expert kept in any group. */
  tokensPerExpertMin: tf.Scalar;
  /** `[]`: tokens kept per expert and group, on average. */
  tokensPerExpertMean: tf.Scalar;
  /** `[]`: the most tokens any expert kept in any group. */
  tokensPerExpertMax: tf.Scalar;
  /** `[]`: fraction of real (unmasked) tokens that no expert took. */
  droppedFraction: tf.Scalar;
  /** `[]`: the fewest experts any real token went to. */
  expertsPerTokenMin: tf.Scalar;
  /** `[]`: experts per real token, on average. */
  expertsPerTokenMean: tf.Scalar;
  /** `[]`: the most experts any real token went to. */
  expertsPerTokenMax: tf.Scalar;
  /** `[experts]`: mean gate probability of each expert over real tokens. */
  importance: tf.Tensor1D;
  /**
   * `[]`: router entropy in nats, `-sum_e p_e ln p_e` of each real token's gate probabilities,
   * averaged over real tokens: `ln(experts)` for uniform gates, 0 for one-hot gates. Divided by
   * `ln(experts)` it is the normalized router entropy shown in training reports.
   */
  routerEntropy: tf.Scalar;
  /**
   * `[]`: Switch load-balancing loss (see `losses.ts`), computed by every router whether or not
   * it is weighted into the auxiliary loss.
   */
  loadBalanceLoss: tf.Scalar;
  /** `[]`: router z-loss (ST-MoE), computed by every router. */
  zLoss: tf.Scalar;
  /** `[]`: the auxiliary loss, `loadBalanceLossWeight * loadBalanceLoss + zLossWeight * zLoss`. */
  auxiliaryLoss: tf.Scalar;
}

/**
 * Metrics of one routing call: the {@link StandardMetrics} plus the routing rule's own (e.g. the
 * sparse-OT router's `meanRowViolation`, `solverIterations`, `solverConverged`, `feasible`).
 */
export type RoutingMetrics = StandardMetrics & Record<string, tf.Tensor>;

/** Metrics as plain JavaScript values (scalars become numbers, vectors become number arrays). */
export type RoutingMetricValues = Record<string, number | number[]>;

/** Per-token view of an assignment, see {@link RoutingResult.expertsOfTokens}. */
export interface TokenExperts {
  /**
   * `<int32>[groups, groupSize, experts]`: the experts that hold each token, by descending combine
   * weight (ties: lower expert first), then {@link EMPTY_SLOT} (-1).
   */
  experts: tf.Tensor3D;
  /** `<float32>[groups, groupSize, experts]`: the combine weight of each listed expert, 0 after. */
  weights: tf.Tensor3D;
}

/**
 * The output of a router for one batch of groups. The caller owns its tensors and must call
 * {@link RoutingResult.dispose} (or let an enclosing `tf.tidy` collect them).
 *
 * @example
 * ```ts
 * const router = topKRouter({numExperts: 4});
 * const tokens = tf.randomNormal([2, 8, 16]) as tf.Tensor3D; // <float32>[groups, groupSize, d]
 * const r = router.route(tokens, {training: false, capacity: 2});
 * r.tokenIndices.shape; // [2, 4, 2]: token index within its group, -1 in empty slots
 * r.routerLogits.shape; // [2, 8, 4]
 * r.dispose();
 * ```
 */
export interface RoutingResult {
  /**
   * `<int32>[groups, experts, capacity]`: for every expert slot, the index (within the group) of
   * the token it processes, in slot order; {@link EMPTY_SLOT} (-1) in unused slots. An expert
   * never holds the same token twice.
   */
  tokenIndices: tf.Tensor3D;
  /**
   * `<float32>[groups, experts, capacity]`: the weight of each slot's expert output in the
   * token's combined output; exactly 0 in empty slots. Differentiable with respect to the router
   * logits where the routing rule is.
   */
  combineWeights: tf.Tensor3D;
  /**
   * `<float32>[groups, groupSize, experts]`: the router logits this call routed with (after the
   * router bias and, in training, any noise): what HF's `output_router_logits` returns.
   */
  routerLogits: tf.Tensor3D;
  /** `<float32>[]`: the router's weighted auxiliary loss (0 when every weight is 0). */
  auxiliaryLoss: tf.Scalar;
  /**
   * The standard metrics and the rule's own, see {@link RoutingMetrics}; an empty record `{}`
   * (no tensor) when the router's `computeMetrics` is false.
   */
  metrics: RoutingMetrics;
  /**
   * The assignment per token (computed on demand; the caller owns the returned tensors).
   *
   * @example
   * ```ts
   * const {experts, weights} = r.expertsOfTokens(); // <int32>[G, S, E], <float32>[G, S, E]
   * ```
   */
  expertsOfTokens(): TokenExperts;
  /** Disposes every tensor of the result (indices, weights, logits, loss and metrics). */
  dispose(): void;
}

/** The tensors of a {@link RoutingResult}, without its methods. */
export type RoutingTensors = Omit<RoutingResult, 'dispose' | 'expertsOfTokens'>;

/**
 * The per-token view of an assignment: for each token, the experts that hold it, by descending
 * combine weight, and their weights.
 *
 * @param tokenIndices `<int32>[groups, experts, capacity]`, -1 in empty slots
 * @param combineWeights `<float32>[groups, experts, capacity]`
 * @param groupSize tokens per group S
 * @returns experts `<int32>[groups, S, experts]` (-1 after the last holder) and their weights
 *
 * @example
 * ```ts
 * // One group of 2 tokens, 2 experts of capacity 1: expert 0 holds token 1 (0.7), expert 1 token 1 (0.2).
 * const t = expertsOfTokens(tf.tensor3d([[[1], [1]]], [1, 2, 1], 'int32'), tf.tensor3d([[[0.7], [0.2]]]), 2);
 * t.experts.print(); // [[[-1, -1], [0, 1]]]
 * ```
 */
export function expertsOfTokens(tokenIndices: tf.Tensor3D, combineWeights: tf.Tensor3D, groupSize: number): TokenExperts {
  return tf.tidy(() => {
    const experts = tokenIndices.shape[1];
    // hits[g, e, s, c] = 1 when slot c of expert e holds token s; reduced over its last axis
    // (a reduction over a middle axis of a 4-D tensor miscompiles on tfjs-backend-webgpu 4.22).
    const hits = tf.cast(tf.equal(tf.expandDims(tokenIndices, 2), tf.reshape(tf.range(0, groupSize, 1, 'int32'), [1, 1, groupSize, 1])), 'float32');
    const held = tf.transpose(tf.sum(hits, 3), [0, 2, 1]); // [G, S, E]
    const weight = tf.transpose(tf.sum(tf.mul(hits, tf.expandDims(combineWeights, 2)), 3), [0, 2, 1]);
    // Order: held experts first by weight (descending), ties by lower expert index (topk is stable).
    const score = tf.where(tf.greater(held, 0), weight, tf.fill(held.shape, -Infinity));
    const order = tf.topk(score, experts).indices; // [G, S, E]
    const heldSorted = gatherLast(held, order);
    const experts3 = tf.where(tf.greater(heldSorted, 0), order, tf.fill(order.shape, EMPTY_SLOT, 'int32')) as tf.Tensor3D;
    const weights3 = tf.mul(gatherLast(weight, order), heldSorted) as tf.Tensor3D;
    return {experts: experts3, weights: weights3};
  });
}

/** `x[g, s, order[g, s, j]]` for `<float32>[G, S, E]` values and `<int32>[G, S, E]` indices. */
function gatherLast(x: tf.Tensor, order: tf.Tensor): tf.Tensor {
  const e = x.shape[2] as number;
  const hot = tf.cast(tf.equal(tf.expandDims(order, 3), tf.reshape(tf.range(0, e, 1, 'int32'), [1, 1, 1, e])), 'float32'); // [G, S, E, E]
  return tf.sum(tf.mul(hot, tf.expandDims(x, 2)), 3);
}

/**
 * Assembles a {@link RoutingResult} from its tensors.
 *
 * @example
 * ```ts
 * const r = makeRoutingResult({tokenIndices, combineWeights, routerLogits, auxiliaryLoss, metrics});
 * r.dispose();
 * ```
 */
export function makeRoutingResult(parts: RoutingTensors): RoutingResult {
  const groupSize = parts.routerLogits.shape[1];
  return {
    ...parts,
    expertsOfTokens() {
      return expertsOfTokens(parts.tokenIndices, parts.combineWeights, groupSize);
    },
    dispose() {
      tf.dispose([parts.tokenIndices, parts.combineWeights, parts.routerLogits, parts.auxiliaryLoss, ...Object.values(parts.metrics)]);
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
export function metricsToValues(metrics: Record<string, tf.Tensor>): RoutingMetricValues {
  const out: RoutingMetricValues = {};
  for (const [name, t] of Object.entries(metrics)) {
    if (t.isDisposed) continue;
    const v = t.dataSync();
    out[name] = t.rank === 0 ? v[0] : Array.from(v);
  }
  return out;
}
