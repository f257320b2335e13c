/**
 * Expert capacity: how many slots each expert has per group, and the token-choice assignment
 * that fills those slots in priority order (first choices before second choices; within a choice
 * rank, tokens in group order or, with batch-prioritized routing, by descending priority).
 */
import * as tf from '@tensorflow/tfjs';
import {assertPositiveInt, InvalidArgumentError} from '../core/errors';
import {oneHot} from './one-hot';
import {takeAlongAxis1} from './take';
import {hostIndexReads} from './input-checks';

/**
 * Slots per expert and group:
 * `min(groupSize, max(1, roundUp(ceil(groupSize * capacityFactor * expertsPerToken / numExperts), multipleOf)))`.
 *
 * @param groupSize tokens per group S
 * @param capacityFactor > 0 (1.0 means exactly the balanced share)
 * @param numExperts E
 * @param expertsPerToken k of top-k routing (1 for expert choice and OT routing)
 * @param multipleOf round the capacity up to a multiple of this (1 = no rounding; the released
 *   V-MoE OT router uses 4)
 *
 * @example
 * ```ts
 * computeCapacity(64, 1.25, 8); // ceil(64 * 1.25 / 8) = 10
 * computeCapacity(64, 1.0, 8, 2); // ceil(64 * 2 / 8) = 16
 * computeCapacity(10, 1.0, 4, 1, 4); // ceil(2.5) = 3, rounded up to 4
 * ```
 */
export function computeCapacity(
  groupSize: number,
  capacityFactor: number,
  numExperts: number,
  expertsPerToken = 1,
  multipleOf = 1,
): number {
  const ctx = 'computeCapacity';
  assertPositiveInt('groupSize', groupSize, ctx);
  if (typeof capacityFactor !== 'number' || !Number.isFinite(capacityFactor) || capacityFactor <= 0) {
    throw new InvalidArgumentError('capacityFactor', 'a finite number > 0', capacityFactor, ctx);
  }
  assertPositiveInt('numExperts', numExperts, ctx);
  assertPositiveInt('expertsPerToken', expertsPerToken, ctx);
  assertPositiveInt('multipleOf', multipleOf, ctx);
  // Guard against 64 * 1.1 / 8 = 8.800000000000001-style float noise before the ceil.
  const raw = Math.ceil((groupSize * capacityFactor * expertsPerToken) / numExperts - 1e-9);
  const rounded = Math.ceil(Math.max(1, raw) / multipleOf) * multipleOf;
  return Math.min(groupSize, rounded);
}

/** Output of {@link assignTokenChoice}. */
export interface TokenChoiceAssignment {
  /** `<int32>[groups, experts, capacity]`: token index per slot, -1 when empty. */
  tokenIndices: tf.Tensor3D;
  /** `<float32>[groups, experts]`: tokens that asked for each expert (before capacity). */
  demand: tf.Tensor2D;
}

/**
 * Fills expert slots from token choices. Each token's j-th choice is considered after every
 * token's (j-1)-th choice (GShard/Switch order); within one choice rank, tokens go in group order
 * or, when `priority` is given, by descending priority (batch-prioritized routing, Riquelme et al.
 * 2021). A choice is kept when its expert still has a free slot, so demand above capacity shows
 * up as dropped choices. Masked tokens ask for nothing.
 *
 * @param choices `<int32>[groups, groupSize, k]`: chosen experts per token, distinct per token
 * @param numExperts E
 * @param capacity slots per expert
 * @param mask `<float32>[groups, groupSize]`, 1 = real token (optional)
 * @param priority `<float32>[groups, groupSize]`: higher goes first (optional)
 * @param host run on the host (default: on cpu and wasm unless the router promised no read, see below)
 *
 * On the backends whose kernels run synchronously (cpu, wasm) the assignment runs on the host
 * from one read of its inputs (a loop over the `groups * k * groupSize` choices; one upload of
 * the result), in place of ~30 kernels whose one-hot, cumulative sum and scatter run over
 * `[groups, k * groupSize, E]`; elsewhere as tensor ops. Both give the same slots.
 *
 * @example
 * ```ts
 * // One group of 3 tokens that all choose expert 0, capacity 2: token 2 is dropped.
 * const a = assignTokenChoice(tf.tensor3d([[[0], [0], [0]]], [1, 3, 1], 'int32'), 2, 2);
 * a.tokenIndices.print(); // [[[0, 1], [-1, -1]]]
 * ```
 */
export function assignTokenChoice(
  choices: tf.Tensor3D,
  numExperts: number,
  capacity: number,
  mask?: tf.Tensor2D,
  priority?: tf.Tensor2D,
  host = hostIndexReads(),
): TokenChoiceAssignment {
  if (host) return assignTokenChoiceOnHost(choices, numExperts, capacity, mask, priority);
  return tf.tidy(() => {
    const [groups, groupSize, k] = choices.shape;
    let order: tf.Tensor2D;
    let ch: tf.Tensor = choices;
    let m: tf.Tensor = mask ?? tf.ones([groups, groupSize]);
    if (priority) {
      // Masked tokens last; then descending priority. topk is stable for ties (lower index first).
      const p = mask ? tf.where(tf.greater(mask, 0), priority, tf.fill(priority.shape, -Infinity)) : priority;
      order = tf.topk(p, groupSize).indices as tf.Tensor2D;
      ch = takeAlongAxis1(choices, order);
      m = takeAlongAxis1(m, order);
    } else {
      order = tf.tile(tf.expandDims(tf.range(0, groupSize, 1, 'int32'), 0), [groups, 1]) as tf.Tensor2D;
    }
    // Choice-major sequence of (token, choice) pairs: [groups, k * groupSize].
    const pairExpert = tf.reshape(tf.transpose(ch, [0, 2, 1]), [groups, k * groupSize]);
    const pairToken = tf.tile(order, [1, k]);
    const pairValid = tf.tile(m, [1, k]);
    const asks = tf.mul(oneHot(pairExpert, numExperts), tf.expandDims(pairValid, 2)); // [G, kS, E]
    const before = tf.cumsum(asks, 1, true); // exclusive: earlier pairs asking for the same expert
    const position = tf.sum(tf.mul(before, asks), 2); // [G, kS]
    const kept = tf.logicalAnd(tf.greater(pairValid, 0), tf.less(position, capacity));
    // Scatter token+1 into [G, E, capacity + 1]; pairs that are not kept go to the spare slot.
    const slot = tf.where(kept, tf.cast(position, 'int32'), tf.fill(position.shape, capacity, 'int32'));
    const g = tf.tile(tf.expandDims(tf.range(0, groups, 1, 'int32'), 1), [1, k * groupSize]);
    const idx = tf.stack([g, tf.cast(pairExpert, 'int32'), slot], 2); // [G, kS, 3]
    const vals = tf.add(pairToken, 1);
    const table = tf.scatterND(tf.reshape(idx, [-1, 3]), tf.reshape(vals, [-1]), [groups, numExperts, capacity + 1]);
    const tokenIndices = tf.sub(tf.slice(table, [0, 0, 0], [groups, numExperts, capacity]), 1) as tf.Tensor3D;
    const demand = tf.sum(asks, 1) as tf.Tensor2D;
    return {tokenIndices: tf.cast(tokenIndices, 'int32') as tf.Tensor3D, demand};
  });
}

/**
 * {@link assignTokenChoice} on the host (one synchronous read of the inputs): per group, the
 * tokens in order (group order, or descending priority with masked tokens last, ties by lower
 * index), choice rank by choice rank; each real token's ask takes its expert's next slot while
 * one is free. Demand counts every real token's asks.
 */
function assignTokenChoiceOnHost(
  choices: tf.Tensor3D, numExperts: number, capacity: number, mask?: tf.Tensor2D, priority?: tf.Tensor2D,
): TokenChoiceAssignment {
  const [groups, groupSize, k] = choices.shape;
  const ch = choices.dataSync();
  const m = mask?.dataSync();
  const p = priority?.dataSync();
  const table = new Int32Array(groups * numExperts * capacity).fill(-1);
  const demand = new Float32Array(groups * numExperts);
  const filled = new Int32Array(numExperts);
  const order = Array.from({length: groupSize}, (_, t) => t);
  for (let g = 0; g < groups; g++) {
    const at = g * groupSize;
    for (let t = 0; t < groupSize; t++) order[t] = t;
    if (p) {
      const key = (t: number) => (m && !(m[at + t] > 0) ? -Infinity : p[at + t]);
      order.sort((a, b) => {
        const ka = key(a);
        const kb = key(b);
        return ka > kb ? -1 : ka < kb ? 1 : a - b;
      });
    }
    filled.fill(0);
    for (let j = 0; j < k; j++) {
      for (const t of order) {
        if (m && !(m[at + t] > 0)) continue;
        const e = ch[(at + t) * k + j];
        if (!(e >= 0 && e < numExperts)) continue;
        demand[g * numExperts + e]++;
        if (filled[e] < capacity) table[(g * numExperts + e) * capacity + filled[e]++] = t;
      }
    }
  }
  return {tokenIndices: tf.tensor3d(table, [groups, numExperts, capacity], 'int32'), demand: tf.tensor2d(demand, [groups, numExperts])};
}
