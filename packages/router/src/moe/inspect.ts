/**
 * Per-token routing of an MoE layer: the routing that `MoE.call` computes on its groups, turned
 * back into the caller's token layout `[..., tokens, experts]` by the same ungrouping.
 */
import * as tf from '@tensorflow/tfjs';
import {slotRowIndices} from './dispatch';
import {groupTokens, GroupingMode, ungroupTokens} from './grouping';
import {groupLogits, routeGroups, type RoutingLayer} from './route-groups';
import type {RoutingMetrics} from '../routers/routing-result';

/** The routing of one call, as the layer grouped it (`G` groups of `S` tokens, capacity `C`). */
export interface GroupedRouting {
  /** `<int32>[G, E, C]`: token index within its group per expert slot, -1 in empty slots. */
  tokenIndices: tf.Tensor3D;
  /** `<float32>[G, E, C]`: combine weight per slot, 0 in empty slots. */
  combineWeights: tf.Tensor3D;
  /** `<float32>[G, S, E]`: the router logits of each grouped token. */
  routerLogits: tf.Tensor3D;
  /**
   * `<int32>[G, S]`: the position of each grouped token in the flattened input
   * (`example * tokens + token`, examples counted over the flattened leading axes), -1 for padding.
   */
  tokenIndex: tf.Tensor2D;
  /** `<float32>[G, S]`: the routing mask (1 = real token, 0 = masked or padding), absent when all are real. */
  mask?: tf.Tensor2D;
  /** Tokens per group S. */
  groupSize: number;
  /** Slots per expert C. */
  capacity: number;
}

/**
 * What {@link MoE.inspect} returns. Per-token tensors have the input's leading axes:
 * `<...>[...batch, tokens, E]` for an input `[...batch, tokens, d]`. The caller owns the tensors
 * and frees them with `dispose()`.
 */
export interface MoERouting {
  /** `<float32>[...batch, tokens, E]`: router logits (as Hugging Face's `output_router_logits`). */
  routerLogits: tf.Tensor;
  /** `<float32>[...batch, tokens, E]`: `softmax(routerLogits)` over experts. */
  gates: tf.Tensor;
  /** `<float32>[...batch, tokens, E]`: 1 where the token was dispatched to the expert, else 0. */
  dispatchMask: tf.Tensor;
  /**
   * `<float32>[...batch, tokens, E]`: the weight of each expert's output in the token's output
   * (0 where not dispatched; a dispatched token may have weight 0 under OT routing).
   */
  combineWeights: tf.Tensor;
  /**
   * `<int32>[...batch, tokens, E]`: the experts holding each token, largest combine weight first,
   * then -1. Column 0 is the token's main expert (-1 for a dropped or masked token).
   */
  expertIndices: tf.Tensor;
  /** The same routing in the layer's groups. */
  grouped: GroupedRouting;
  /** `<float32>[]`: the router's auxiliary loss for this call. */
  auxiliaryLoss: tf.Scalar;
  /** The router's metrics for this call (names in `routing-result.ts`). */
  metrics: RoutingMetrics;
  /** Frees every tensor above. */
  dispose(): void;
}

/**
 * Scatters slot values `<float32>[G, E, C]` into per-token rows `<float32>[G, S, E]`
 * (an expert holds a token at most once, so no two slots meet).
 */
export function slotsToTokens(values: tf.Tensor3D, tokenIndices: tf.Tensor3D, groupSize: number): tf.Tensor3D {
  return tf.tidy(() => {
    const [G, E, C] = tokenIndices.shape;
    const rows = slotRowIndices(tokenIndices, groupSize, 'group-major');
    const cols = tf.reshape(tf.tile(tf.reshape(tf.range(0, E, 1, 'int32'), [1, E, 1]), [G, 1, C]), [-1]);
    const scattered = tf.scatterND(tf.stack([rows, cols], 1), tf.reshape(values, [-1]), [G * groupSize + 1, E]);
    return tf.reshape(tf.slice(scattered, [0, 0], [G * groupSize, E]), [G, groupSize, E]) as tf.Tensor3D;
  });
}

/**
 * Per-token experts, largest combine weight first: `<int32>[..., E]` (-1 where none) from a
 * dispatch mask and combine weights of the same shape `[..., E]`.
 *
 * @example
 * ```ts
 * rankExperts(tf.tensor2d([[1, 0, 1]]), tf.tensor2d([[0.2, 0, 0.7]])).print(); // [[2, 0, -1]]
 * ```
 */
export function rankExperts(dispatchMask: tf.Tensor, combineWeights: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const E = dispatchMask.shape[dispatchMask.rank - 1] as number;
    // Dispatched experts score their weight (>= 0), the others -1: dispatched ones come first.
    const score = tf.where(tf.greater(dispatchMask, 0), combineWeights, tf.fill(combineWeights.shape, -1));
    const {values, indices} = tf.topk(score, E);
    return tf.where(tf.greaterEqual(values, 0), indices, tf.fill(indices.shape, -1, 'int32'));
  });
}

/**
 * Builds the per-token view of a grouped routing, ungrouping exactly as the layer ungroups its
 * output. `lead` is the input's leading shape (`[...batch]`), `tokens` its token count.
 */
export function perTokenRouting(
  grouped: GroupedRouting,
  lead: number[],
  tokens: number,
  mode: GroupingMode,
  auxiliaryLoss: tf.Scalar,
  metrics: RoutingMetrics,
): MoERouting {
  const out = tf.tidy(() => {
    const batch = lead.reduce((a, b) => a * b, 1);
    const S = grouped.groupSize;
    const ones = tf.cast(tf.greaterEqual(grouped.tokenIndices, 0), 'float32') as tf.Tensor3D;
    const back = (t: tf.Tensor3D) => {
      const E = t.shape[2];
      return tf.reshape(ungroupTokens(t, batch, tokens, mode), [...lead, tokens, E]);
    };
    const dispatchMask = back(slotsToTokens(ones, grouped.tokenIndices, S));
    const combineWeights = back(slotsToTokens(grouped.combineWeights, grouped.tokenIndices, S));
    const routerLogits = back(grouped.routerLogits);
    return {
      routerLogits,
      gates: tf.softmax(routerLogits),
      dispatchMask,
      combineWeights,
      expertIndices: rankExperts(dispatchMask, combineWeights),
    };
  });
  return {
    ...out,
    grouped,
    auxiliaryLoss,
    metrics,
    dispose() {
      tf.dispose([...Object.values(out), grouped.tokenIndices, grouped.combineWeights, grouped.routerLogits, grouped.tokenIndex, auxiliaryLoss, ...Object.values(metrics)]);
    },
  };
}

/**
 * The per-token routing of an MoE layer on `x` (what `MoE.inspect` returns): the layer's own
 * grouping and routing in inference mode, ungrouped as `call` ungroups its output.
 *
 * @param x `<float32>[...batch, tokens, d]` @param mask `<float32>[...batch, tokens]`, 1 = real token
 *
 * @example
 * ```ts
 * const routing = inspectLayer(layer, tokens, undefined);
 * routing.dispose();
 * ```
 */
export function inspectLayer(layer: RoutingLayer, x: tf.Tensor, mask: tf.Tensor | undefined): MoERouting {
  type Parts = {grouped: GroupedRouting; mask?: tf.Tensor2D; auxiliaryLoss: tf.Scalar; metrics: RoutingMetrics; lead: number[]; tokens: number};
  const parts = tf.tidy(() => {
    const r = routeGroups(layer, x, mask, false);
    const {groups, routing, batch, tokens} = r;
    const S = groups.groupSize;
    const position = tf.reshape(tf.range(0, batch * tokens, 1, 'float32'), [batch, tokens, 1]) as tf.Tensor3D;
    const real = groupTokens(position, layer.groupingMode, layer.groupSize, tf.ones([batch, tokens]) as tf.Tensor2D);
    const tokenIndex = tf.cast(tf.where(tf.greater(real.mask!, 0), tf.reshape(real.tokens, [-1, S]), tf.fill([real.tokens.shape[0], S], -1)), 'int32') as tf.Tensor2D;
    const grouped: GroupedRouting = {
      tokenIndices: routing.tokenIndices, combineWeights: routing.combineWeights, routerLogits: groupLogits(layer.router, r),
      tokenIndex, groupSize: S, capacity: r.capacity,
    };
    const result: Parts = {grouped, mask: groups.mask, auxiliaryLoss: routing.auxiliaryLoss, metrics: routing.metrics, lead: r.lead, tokens};
    return result as unknown as tf.TensorContainer;
  }) as unknown as Parts;
  const out = perTokenRouting(parts.grouped, parts.lead, parts.tokens, layer.groupingMode, parts.auxiliaryLoss, parts.metrics);
  if (parts.mask) {
    const dispose = out.dispose;
    const m = parts.mask;
    out.grouped.mask = m;
    out.dispose = () => {
      dispose();
      m.dispose();
    };
  }
  return out;
}
