/**
 * Expert capacity: how many slots each expert has per group, and the token-choice assignment
 * that fills those slots in priority order (first choices before second choices; within a choice
 * rank, tokens in group order or, with batch-prioritized routing, by descending priority).
 */
import * as tf from '@tensorflow/tfjs';
import {assertPositiveInt, InvalidArgumentError} from '../core/errors';
import {oneHot} from './one-hot';
import {takeAlongAxis1} from './take';

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
): TokenChoiceAssignment {
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
