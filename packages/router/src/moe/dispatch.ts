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
import {hostIndexReads} from '../routers/input-checks';

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
    const rows = tf.concat([tf.reshape(values, [sentinel, 1]), tf.zeros([1, 1])], 0) as tf.Tensor2D;
    return tf.reshape(gatherRows(rows, tokenExpertIndices(tokenIndices, groupSize)), [groups, experts, capacity]) as tf.Tensor3D;
  });
}

/**
 * The row of every slot's `(token, expert)` pair in `values` flattened to `[G * groupSize * E]`:
 * `(g * groupSize + token) * E + e`, or the sentinel `G * groupSize * E` in empty slots.
 * With `host` (default on cpu and wasm, unless the router promised no read: `hostIndexReads`) computed on the host from one synchronous read of
 * `tokenIndices` (one upload instead of a dozen small kernels, among them a broadcasting add
 * that tfjs-wasm runs element by element); else as tensor ops (no read: webgl, webgpu).
 *
 * @param tokenIndices `<int32>[groups, experts, capacity]`
 * @returns `<int32>[groups * experts * capacity]`
 *
 * @example
 * ```ts
 * tokenExpertIndices(tf.tensor3d([[[1, -1], [0, 1]]], [1, 2, 2], 'int32'), 2).print(); // [2, 4, 1, 3]
 * ```
 */
export function tokenExpertIndices(tokenIndices: tf.Tensor3D, groupSize: number, host = hostIndexReads()): tf.Tensor1D {
  return host ? hostValueIndices(tokenIndices, groupSize) : valueIndices(tokenIndices, groupSize);
}

function hostValueIndices(tokenIndices: tf.Tensor3D, groupSize: number): tf.Tensor1D {
  const [groups, experts, capacity] = tokenIndices.shape;
  const ti = tokenIndices.dataSync() as Int32Array;
  const sentinel = groups * groupSize * experts;
  const flat = new Int32Array(ti.length);
  for (let g = 0, i = 0; g < groups; g++) {
    for (let e = 0; e < experts; e++) {
      for (let c = 0; c < capacity; c++, i++) flat[i] = ti[i] >= 0 ? (g * groupSize + ti[i]) * experts + e : sentinel;
    }
  }
  return tf.tensor1d(flat, 'int32');
}

function valueIndices(tokenIndices: tf.Tensor3D, groupSize: number): tf.Tensor1D {
  return tf.tidy(() => {
    const [groups, experts] = tokenIndices.shape;
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
    return tf.reshape(flat, [-1]) as tf.Tensor1D;
  });
}

/**
 * The filled slots of a routing, packed per expert (see {@link compactSlots}): expert `e`'s rows
 * are entries `e * rowsPerExpert ...` of both index lists; rows past the expert's filled slots
 * are padding (the zero token row on dispatch, a zero weight on combine).
 */
export interface CompactSlots {
  /**
   * Rows per expert `n`: the most filled slots of any expert over all groups (at least 1; plus 16
   * padding rows when that is a multiple of 128, at least 256, where the wasm transposes are slow).
   */
  rowsPerExpert: number;
  /**
   * `<int32>[E * n]`: the token row `g * groupSize + t` of each packed slot in
   * `[groups * groupSize + 1, d]`; padding points at the last (zero) row.
   */
  tokenRows: tf.Tensor1D;
  /**
   * `<int32>[E * n]`: each packed slot's position `(g * E + e) * capacity + c` in the
   * group-major combine weights `[groups * E * capacity + 1]`; padding points at the last entry (a zero weight).
   */
  slots: tf.Tensor1D;
  /** Filled slots per expert, summed over groups (`<E>` numbers). */
  filled: number[];
}

/**
 * Rows per expert for `n` filled rows: `n`, or `n + 16` when `n` is a multiple of 128 (at least
 * 256). tfjs-backend-wasm's `Transpose` (inside `Sum` over a leading axis and the fast `BatchMatMul`'s
 * transposed operands) is 5-20x slower per element when a row holds a multiple of 128 floats
 * (measured on the 2-core machine: `[4, 768, 128]` -> `[4, 128, 768]` 6.8 ns/element,
 * `[4, 784, 128]` 0.5 ns/element): the expert FFN's forward+backward on `[4, 784, 64]` took
 * 20.3 ms against 23.6 ms on `[4, 768, 64]` (h 128, gelu). Sparse-OT fills every slot, so its
 * rows are `groups * capacity` (768 at batch 128, 384 at batch 64 in the default V-MoE).
 */
function paddedRows(n: number): number {
  return n >= 256 && n % 128 === 0 ? n + 16 : n;
}

/**
 * Packs each expert's filled slots (over all groups) into the first rows of its block, so that
 * the experts run on `rowsPerExpert` rows each instead of `groups * capacity`: empty slots (the
 * capacity left over in every group, 29% of the slots of a group of 17 tokens at capacity factor
 * 1.25 with 4 experts) cost no expert FLOPs. Within an expert, slots keep the expert-major
 * order of {@link dispatch} (group, then capacity slot), so that combine sums each token's
 * contributions in the same order. Reads `tokenIndices` synchronously: for the backends whose
 * kernels run synchronously (cpu, wasm), where the read copies values already computed.
 *
 * @param tokenIndices `<int32>[groups, experts, capacity]` (from a {@link RoutingResult})
 * @param groupSize tokens per group S
 * @returns the packed index lists (the caller disposes `tokenRows` and `slots`)
 * @throws {ShapeError} for `tokenIndices` that is not an int32 rank-3 tensor
 *
 * @example
 * ```ts
 * // Expert 0 holds tokens 1 and 0 of group 0, expert 1 token 2; capacity 2, groupSize 3.
 * const c = compactSlots(tf.tensor3d([[[1, 0], [2, -1]]], [1, 2, 2], 'int32'), 3);
 * c.rowsPerExpert;       // 2
 * c.tokenRows.print();   // [1, 0, 2, 3]  (3: the zero row)
 * c.slots.print();       // [0, 1, 2, 4]  (4: the zero weight)
 * ```
 */
export function compactSlots(tokenIndices: tf.Tensor3D, groupSize: number): CompactSlots {
  if (!(tokenIndices instanceof tf.Tensor) || tokenIndices.rank !== 3 || tokenIndices.dtype !== 'int32') {
    throw new ShapeError('tokenIndices', 'an int32 rank-3 tensor [groups, experts, capacity]', tokenIndices instanceof tf.Tensor ? `${tokenIndices.dtype} [${tokenIndices.shape.join(', ')}]` : tokenIndices, 'compactSlots');
  }
  const [groups, experts, capacity] = tokenIndices.shape;
  const ti = tokenIndices.dataSync() as Int32Array;
  const filled = new Array<number>(experts).fill(0);
  for (let g = 0; g < groups; g++) {
    for (let e = 0; e < experts; e++) {
      const at = (g * experts + e) * capacity;
      for (let c = 0; c < capacity; c++) if (ti[at + c] >= 0) filled[e]++;
    }
  }
  const n = paddedRows(Math.max(1, ...filled));
  const tokenRows = new Int32Array(experts * n).fill(groups * groupSize);
  const slots = new Int32Array(experts * n).fill(groups * experts * capacity);
  for (let e = 0; e < experts; e++) {
    let j = e * n;
    for (let g = 0; g < groups; g++) {
      const at = (g * experts + e) * capacity;
      for (let c = 0; c < capacity; c++) {
        const t = ti[at + c];
        if (t < 0) continue;
        tokenRows[j] = g * groupSize + t;
        slots[j++] = at + c;
      }
    }
  }
  return {rowsPerExpert: n, tokenRows: tf.tensor1d(tokenRows, 'int32'), slots: tf.tensor1d(slots, 'int32'), filled};
}

/**
 * Dispatch onto packed slots: `<float32>[groups, groupSize, d]` -> `<float32>[E, n, d]`, row `j`
 * of expert `e` holding the token of its `j`-th filled slot (zero rows as padding). Differentiable
 * with respect to `tokens`.
 *
 * @param tokens `<float32>[groups, groupSize, d]`
 * @param slots from {@link compactSlots} on the same routing
 *
 * @example
 * ```ts
 * const c = compactSlots(r.tokenIndices, 8);
 * dispatchCompact(x, c).shape; // [4, c.rowsPerExpert, 16]
 * ```
 */
export function dispatchCompact(tokens: tf.Tensor3D, slots: CompactSlots): tf.Tensor3D {
  return tf.tidy(() => {
    const [groups, groupSize, d] = tokens.shape;
    const n = slots.rowsPerExpert;
    const rows = tf.concat([tf.reshape(tokens, [groups * groupSize, d]), tf.zeros([1, d])], 0) as tf.Tensor2D;
    return tf.reshape(gatherRows(rows, slots.tokenRows), [slots.tokenRows.shape[0] / n, n, d]) as tf.Tensor3D;
  });
}

/**
 * Combine from packed slots: `y[g, t] = sum over the packed rows holding token t of their combine
 * weight * expertOutputs row`, the same sum as {@link combine} (padding adds nothing).
 * Differentiable with respect to `expertOutputs` and `combineWeights`.
 *
 * @param expertOutputs `<float32>[E, n, d]` (the experts run on {@link dispatchCompact}'s rows)
 * @param slots from {@link compactSlots}
 * @param combineWeights `<float32>[groups, experts, capacity]`
 * @param groupSize tokens per group
 * @returns `<float32>[groups, groupSize, d]`
 *
 * @example
 * ```ts
 * const y = combineCompact(experts(dispatchCompact(x, c)), c, r.combineWeights, 8); // [2, 8, 16]
 * ```
 */
export function combineCompact(expertOutputs: tf.Tensor3D, slots: CompactSlots, combineWeights: tf.Tensor3D, groupSize: number): tf.Tensor3D {
  return tf.tidy(() => {
    const [groups] = combineWeights.shape;
    const d = expertOutputs.shape[2];
    const rows = slots.tokenRows.shape[0];
    const weightRows = tf.concat([tf.reshape(combineWeights, [-1, 1]), tf.zeros([1, 1])], 0) as tf.Tensor2D;
    const w = gatherRows(weightRows, slots.slots);
    const updates = tf.mul(tf.reshape(expertOutputs, [rows, d]), w) as tf.Tensor2D;
    const summed = scatterAddRows(updates, slots.tokenRows, groups * groupSize + 1);
    return tf.reshape(tf.slice(summed, [0, 0], [groups * groupSize, d]), [groups, groupSize, d]) as tf.Tensor3D;
  });
}
