/**
 * Index-based dispatch and combine. A routing result lists, per expert, at most `capacity` token
 * indices, so dispatch is a gather of token rows into `[groups, experts, capacity, d]` and combine
 * is a weighted scatter-add back to `[groups, groupSize, d]`. Nothing of size
 * `[tokens, experts, capacity]` is formed.
 *
 * tfjs 4.22 has no gradient for gatherND / scatterND on any backend and none for `gather` on
 * wasm, so the two row primitives here carry their own gradients: the gradient of a row gather
 * is a scatter-add of the upstream rows, and the gradient of a scatter-add is a row gather.
 * `scatterND` sums duplicate indices on cpu and wasm, which is exactly the adjoint of a gather.
 */
import * as tf from '@tensorflow/tfjs';
import {ShapeError} from '../core/errors';

/**
 * Gathers rows: `out[i, :] = x[indices[i], :]`, with a gradient (a scatter-add) on every backend.
 *
 * @param x `<float32>[rows, d]`
 * @param indices `<int32>[m]`, each in `[0, rows)`
 * @returns `<float32>[m, d]`
 *
 * @example
 * ```ts
 * const x = tf.tensor2d([[1, 2], [3, 4]]);
 * gatherRows(x, tf.tensor1d([1, 1, 0], 'int32')).print(); // [[3, 4], [3, 4], [1, 2]]
 * ```
 */
export function gatherRows(x: tf.Tensor2D, indices: tf.Tensor1D): tf.Tensor2D {
  const rows = x.shape[0];
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xs, idx, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    save([idx]);
    return {
      value: tf.gather(xs, idx as tf.Tensor1D),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [i] = saved;
        const d = dy as tf.Tensor2D;
        return [tf.scatterND(tf.expandDims(i, 1), d, [rows, d.shape[1]]), tf.zeros(i.shape)];
      },
    };
  });
  return f(x, indices) as tf.Tensor2D;
}

/**
 * Scatter-adds rows: `out[indices[i], :] += updates[i, :]` into `rows` zero rows, with a gradient
 * (a row gather) on every backend. Duplicate indices add up.
 *
 * @param updates `<float32>[m, d]`
 * @param indices `<int32>[m]`, each in `[0, rows)`
 * @param rows number of output rows
 * @returns `<float32>[rows, d]`
 *
 * @example
 * ```ts
 * const u = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
 * scatterAddRows(u, tf.tensor1d([0, 0, 2], 'int32'), 3).print(); // [[4, 6], [0, 0], [5, 6]]
 * ```
 */
export function scatterAddRows(updates: tf.Tensor2D, indices: tf.Tensor1D, rows: number): tf.Tensor2D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [u, idx, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    save([idx]);
    return {
      value: tf.scatterND(tf.expandDims(idx, 1), u, [rows, u.shape[1] as number]),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [i] = saved;
        return [tf.gather(dy as tf.Tensor, i as tf.Tensor1D), tf.zeros(i.shape)];
      },
    };
  });
  return f(updates, indices) as tf.Tensor2D;
}

/** Memory layout of dispatched tokens. */
export type DispatchLayout = 'group-major' | 'expert-major';

/**
 * Flat row indices into `[groups * groupSize + 1, ...]` for every slot of `tokenIndices`
 * (`g * groupSize + token`); empty slots (-1) point at the extra last row, which holds zeros on
 * dispatch and is discarded on combine.
 *
 * @param tokenIndices `<int32>[groups, experts, capacity]`
 * @param groupSize tokens per group
 * @param layout `'group-major'` gives slots in `[groups, experts, capacity]` order,
 *   `'expert-major'` in `[experts, groups, capacity]` order.
 * @returns `<int32>[groups * experts * capacity]`
 *
 * @example
 * ```ts
 * slotRowIndices(tf.tensor3d([[[1, -1]], [[0, 1]]], [2, 1, 2], 'int32'), 2).print(); // [1, 4, 2, 3]
 * ```
 */
export function slotRowIndices(
  tokenIndices: tf.Tensor3D,
  groupSize: number,
  layout: DispatchLayout = 'group-major',
): tf.Tensor1D {
  return tf.tidy(() => {
    const [groups] = tokenIndices.shape;
    const sentinel = groups * groupSize;
    const offsets = tf.reshape(tf.mul(tf.range(0, groups, 1, 'int32'), tf.scalar(groupSize, 'int32')), [groups, 1, 1]);
    let flat = tf.where(tf.greaterEqual(tokenIndices, 0), tf.add(tokenIndices, offsets), tf.fill(tokenIndices.shape, sentinel, 'int32'));
    if (layout === 'expert-major') flat = tf.transpose(flat, [1, 0, 2]);
    return tf.reshape(flat, [-1]) as tf.Tensor1D;
  });
}

function checkRouting(tokens: tf.Tensor, tokenIndices: tf.Tensor, fn: string): void {
  if (tokens.rank !== 3) throw new ShapeError('tokens', 'a rank-3 tensor [groups, groupSize, d]', tokens.shape, fn);
  if (tokenIndices.rank !== 3 || tokenIndices.shape[0] !== tokens.shape[0]) {
    throw new ShapeError('tokenIndices', `a rank-3 tensor [${tokens.shape[0]}, experts, capacity]`, tokenIndices.shape, fn);
  }
  if (tokenIndices.dtype !== 'int32') throw new ShapeError('tokenIndices', "dtype 'int32'", tokenIndices.dtype, fn);
}

/**
 * Dispatch: gathers each expert's tokens into capacity slots; empty slots get zero rows.
 *
 * @param tokens `<float32>[groups, groupSize, d]`
 * @param tokenIndices `<int32>[groups, experts, capacity]` (from a {@link RoutingResult})
 * @param layout `'group-major'` (default) returns `<float32>[groups, experts, capacity, d]`;
 *   `'expert-major'` returns `<float32>[experts, groups * capacity, d]`, ready for a batched
 *   per-expert matMul.
 *
 * @example
 * ```ts
 * const x = tf.randomNormal([2, 8, 16]) as tf.Tensor3D;
 * const r = topKRouter({numExperts: 4}).route(x, {training: false, capacity: 2});
 * dispatch(x, r.tokenIndices).shape; // [2, 4, 2, 16]
 * ```
 */
export function dispatch(tokens: tf.Tensor3D, tokenIndices: tf.Tensor3D, layout: DispatchLayout = 'group-major'): tf.Tensor {
  checkRouting(tokens, tokenIndices, 'dispatch');
  return tf.tidy(() => {
    const [groups, groupSize, d] = tokens.shape;
    const [, experts, capacity] = tokenIndices.shape;
    const rows = tf.concat([tf.reshape(tokens, [groups * groupSize, d]), tf.zeros([1, d])], 0) as tf.Tensor2D;
    const gathered = gatherRows(rows, slotRowIndices(tokenIndices, groupSize, layout));
    return layout === 'group-major'
      ? tf.reshape(gathered, [groups, experts, capacity, d])
      : tf.reshape(gathered, [experts, groups * capacity, d]);
  });
}

/**
 * Combine: `y[g, t] = sum over slots (e, c) holding token t of combineWeights[g, e, c] *
 * expertOutputs[g, e, c]`. Tokens in no slot (dropped) get 0.
 *
 * @param expertOutputs `<float32>[groups, experts, capacity, d]` (`'group-major'`) or
 *   `<float32>[experts, groups * capacity, d]` (`'expert-major'`)
 * @param tokenIndices `<int32>[groups, experts, capacity]`
 * @param combineWeights `<float32>[groups, experts, capacity]`
 * @param groupSize tokens per group
 * @returns `<float32>[groups, groupSize, d]`
 *
 * @example
 * ```ts
 * const y = combine(dispatch(x, r.tokenIndices), r.tokenIndices, r.combineWeights, 8);
 * y.shape; // [2, 8, 16]
 * ```
 */
export function combine(
  expertOutputs: tf.Tensor,
  tokenIndices: tf.Tensor3D,
  combineWeights: tf.Tensor3D,
  groupSize: number,
  layout: DispatchLayout = 'group-major',
): tf.Tensor3D {
  return tf.tidy(() => {
    const [groups, experts, capacity] = tokenIndices.shape;
    const d = expertOutputs.shape[expertOutputs.rank - 1] as number;
    const w = layout === 'group-major' ? combineWeights : tf.transpose(combineWeights, [1, 0, 2]);
    const updates = tf.mul(tf.reshape(expertOutputs, [groups * experts * capacity, d]), tf.reshape(w, [-1, 1])) as tf.Tensor2D;
    const summed = scatterAddRows(updates, slotRowIndices(tokenIndices, groupSize, layout), groups * groupSize + 1);
    return tf.reshape(tf.slice(summed, [0, 0], [groups * groupSize, d]), [groups, groupSize, d]) as tf.Tensor3D;
  });
}

/**
 * Sums each token's combine weights: `<float32>[groups, groupSize]` (0 for dropped tokens).
 * Differentiable. Used to normalize combine weights per token and by metrics.
 *
 * @param tokenIndices `<int32>[groups, experts, capacity]`
 * @param combineWeights `<float32>[groups, experts, capacity]`
 *
 * @example
 * ```ts
 * tokenWeightSums(r.tokenIndices, r.combineWeights, 8).shape; // [2, 8]
 * ```
 */
export function tokenWeightSums(tokenIndices: tf.Tensor3D, combineWeights: tf.Tensor3D, groupSize: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [groups] = tokenIndices.shape;
    const sums = scatterAddRows(tf.reshape(combineWeights, [-1, 1]) as tf.Tensor2D, slotRowIndices(tokenIndices, groupSize), groups * groupSize + 1);
    return tf.reshape(tf.slice(sums, [0, 0], [groups * groupSize, 1]), [groups, groupSize]) as tf.Tensor2D;
  });
}

/**
 * Rescales combine weights so that every kept token's weights sum to 1 (dropped tokens stay at
 * 0). Differentiable.
 *
 * @param tokenIndices `<int32>[groups, experts, capacity]`
 * @param combineWeights `<float32>[groups, experts, capacity]`
 * @returns `<float32>[groups, experts, capacity]`
 *
 * @example
 * ```ts
 * const w = normalizeCombineWeights(r.tokenIndices, r.combineWeights, 8);
 * ```
 */
export function normalizeCombineWeights(tokenIndices: tf.Tensor3D, combineWeights: tf.Tensor3D, groupSize: number): tf.Tensor3D {
  return tf.tidy(() => {
    const sums = tokenWeightSums(tokenIndices, combineWeights, groupSize);
    // Per-slot denominators: the owning token's sum (1 for empty slots, whose weight is 0).
    const rows = tf.concat([tf.reshape(sums, [-1, 1]), tf.ones([1, 1])], 0) as tf.Tensor2D;
    const denom = tf.reshape(gatherRows(rows, slotRowIndices(tokenIndices, groupSize)), tokenIndices.shape);
    // maximum (not divNoNan, whose Equal node has no gradient): a kept token's sum is > 0.
    return tf.div(combineWeights, tf.maximum(denom, 1e-12)) as tf.Tensor3D;
  });
}

/**
 * Reads a per-(token, expert) value for every slot: `out[g, e, c] = values[g, tokenIndices[g, e, c], e]`,
 * 0 in empty slots. Differentiable with respect to `values` on every backend (routers use it to
 * turn gate probabilities into combine weights).
 *
 * @param values `<float32>[groups, groupSize, experts]`
 * @param tokenIndices `<int32>[groups, experts, capacity]`
 * @returns `<float32>[groups, experts, capacity]`
 *
 * @example
 * ```ts
 * const gates = tf.softmax(logits); // [groups, groupSize, experts]
 * const w = gatherTokenExpertValues(gates, tokenIndices);
 * ```
 */
export function gatherTokenExpertValues(values: tf.Tensor3D, tokenIndices: tf.Tensor3D): tf.Tensor3D {
  return tf.tidy(() => {
    const [groups, groupSize, experts] = values.shape;
    const capacity = tokenIndices.shape[2];
    const sentinel = groups * groupSize * experts;
    const base = tf.add(
      tf.reshape(tf.mul(tf.range(0, groups, 1, 'int32'), tf.scalar(groupSize * experts, 'int32')), [groups, 1, 1]),
      tf.reshape(tf.range(0, experts, 1, 'int32'), [1, experts, 1]),
    );
    const flat = tf.where(
      tf.greaterEqual(tokenIndices, 0),
      tf.add(tf.mul(tokenIndices, tf.scalar(experts, 'int32')), base),
      tf.fill(tokenIndices.shape, sentinel, 'int32'),
    );
    const rows = tf.concat([tf.reshape(values, [sentinel, 1]), tf.zeros([1, 1])], 0) as tf.Tensor2D;
    return tf.reshape(gatherRows(rows, tf.reshape(flat, [-1]) as tf.Tensor1D), [groups, experts, capacity]) as tf.Tensor3D;
  });
}
