/**
 * No needless drops: turn the dispatch read off a transport plan into an assignment that uses
 * the capacity it has. The k-sparse relaxation can leave a token with no expert while another
 * token holds several (a constant cost with k 2 puts all of every expert's mass on the same two
 * tokens). After the plan's support dispatch, per group:
 *
 * 1. **Give back.** A token held by more experts than its mass warrants releases slots: walking a
 *    token's experts by descending plan value, every expert after the ones whose plan values
 *    already reach the token's mass (1) is excess. Only as many slots are released as the
 *    unserved tokens need beyond the free slots: excess slots first, lowest plan value first,
 *    then, if still needed, other secondary slots (never a token's best slot).
 * 2. **Fill.** Each unserved real token takes a free slot: in rounds r = 1..E, every token still
 *    waiting asks for its r-th most probable expert (by gate), and an expert with free slots
 *    accepts the waiting tokens with the highest largest gate first.
 *
 * When the group's total capacity `E * capacity` covers its real tokens, no real token is
 * dropped. Every decision is taken per group, from that group's values alone. Two paths compute
 * it: tensor ops only (no read-back: webgl, webgpu, `hostReads: false`), and, where host reads
 * are host copies (cpu, wasm, tensorflow), one pass over the host copies of the inputs
 * (rebalance-host.ts: the tensor path is ~90 tiny kernels). The plan's own dispatch, which this
 * rebalances, is plan-dispatch.ts. Both take the same decisions
 * (float32 keys, the same tie rules).
 */
import * as tf from '@tensorflow/tfjs';
import {hostPathAvailable} from '../ot/solvers/host';
import {defaultHostReads} from '../ot/validate';
import {oneHot} from './one-hot';
import {rebalanceHost} from './rebalance-host';

export {planDispatch} from './plan-dispatch';

/** Tolerance on a token's accumulated plan mass (float32 plans sum to 1 within ~1e-6). */
const MASS_TOLERANCE = 1e-4;

/**
 * `<float32>[groups, groupSize, experts]`: 1 where the expert holds the token in `tokenIndices`.
 *
 * @param tokenIndices `<int32>[groups, experts, capacity]`, -1 in empty slots
 */
export function heldPairs(tokenIndices: tf.Tensor3D, groupSize: number): tf.Tensor3D {
  return tf.tidy(() => {
    // [G, E, S, C] compared directly and reduced over its last axis: tfjs-backend-webgpu 4.22
    // miscompiles the transpose that a reduction over a middle axis of this 4-D tensor needs.
    const tokens = tf.reshape(tf.range(0, groupSize, 1, 'int32'), [1, 1, groupSize, 1]);
    const hits = tf.cast(tf.equal(tf.expandDims(tokenIndices, 2), tokens), 'float32');
    return tf.transpose(tf.sum(hits, 3), [0, 2, 1]) as tf.Tensor3D;
  });
}

/**
 * Slots from a `<float32>[groups, groupSize, experts]` 0/1 holding: each expert's tokens ordered
 * by `order` (descending; ties: lower token index), then -1.
 */
export function slotsFromHeld(held: tf.Tensor3D, order: tf.Tensor3D, capacity: number): tf.Tensor3D {
  return tf.tidy(() => {
    const key = tf.transpose(tf.mul(held, tf.add(order, 1)), [0, 2, 1]); // [G, E, S], > 0 where held
    const top = tf.topk(key, capacity);
    return tf.where(tf.greater(top.values, 0), top.indices, tf.fill(top.indices.shape, -1, 'int32')) as tf.Tensor3D;
  });
}
/**
 * Rebalances a support dispatch (see the module comment). Not differentiable (index work).
 *
 * @param tokenIndices `<int32>[groups, experts, capacity]`: the plan's dispatch, -1 in empty slots
 * @param plan `<float32>[groups, groupSize, experts]`: the transport plan (padding rows 0)
 * @param gates `<float32>[groups, groupSize, experts]`: softmax gates (orders the fill)
 * @param mask `<float32>[groups, groupSize]`: 1 = real token
 * @param hostReads whether the host path may read the inputs back (default: the backend's, see
 *   `defaultHostReads`); it runs on cpu, wasm and tensorflow only
 * @returns `<int32>[groups, experts, capacity]`: the rebalanced slots, each expert's tokens by
 *   descending plan value, then the filled tokens by descending gate, then -1
 *
 * @example
 * ```ts
 * // 1 group, 3 tokens, 2 experts of capacity 2; both experts hold token 0 only (plan 1 each).
 * const idx = tf.tensor3d([[[0, -1], [0, -1]]], [1, 2, 2], 'int32');
 * const plan = tf.tensor3d([[[1, 1], [0, 0], [0, 0]]]);
 * const gates = tf.tensor3d([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]);
 * rebalanceAssignment(idx, plan, gates, tf.ones([1, 3])).print();
 * // [[[0, 1], [0, 2]]]: free slots suffice, token 0 keeps both experts
 * ```
 */
export function rebalanceAssignment(
  tokenIndices: tf.Tensor3D, plan: tf.Tensor3D, gates: tf.Tensor3D, mask: tf.Tensor2D, hostReads: boolean = defaultHostReads(),
): tf.Tensor3D {
  if (hostPathAvailable(hostReads)) return rebalanceHost(tokenIndices, plan, gates, mask);
  return tf.tidy(() => {
    const [groups, groupSize, experts] = plan.shape;
    const capacity = tokenIndices.shape[2];
    const held = heldPairs(tokenIndices, groupSize); // [G, S, E]
    const value = tf.mul(plan, held);

    // Within each token, experts by descending plan value (ties: lower expert first).
    const eIdx = tf.range(0, experts, 1, 'int32');
    const vi = tf.expandDims(value, 3); // [G, S, E(j), 1]
    const vj = tf.expandDims(value, 2); // [G, S, 1, E(j')]
    const lower = tf.less(tf.reshape(eIdx, [1, 1, 1, experts]), tf.reshape(eIdx, [1, 1, experts, 1])); // j' < j
    const ahead = tf.mul(tf.cast(tf.logicalOr(tf.greater(vj, vi), tf.logicalAnd(tf.equal(vj, vi), lower)), 'float32'), tf.expandDims(held, 2));
    const massAhead = tf.sum(tf.mul(ahead, tf.expandDims(value, 2)), 3); // [G, S, E]
    const heldAhead = tf.sum(ahead, 3);
    const secondary = tf.mul(held, tf.cast(tf.greater(heldAhead, 0), 'float32')); // not the token's best slot
    const excess = tf.mul(secondary, tf.cast(tf.greaterEqual(massAhead, tf.sub(tf.expandDims(mask, 2), MASS_TOLERANCE)), 'float32'));

    // How many slots the unserved tokens need beyond the free ones, per group.
    const served = tf.cast(tf.greater(tf.sum(held, 2), 0), 'float32'); // [G, S]
    const unserved = tf.sum(tf.mul(tf.sub(1, served), mask), 1); // [G]
    const free = tf.sub(experts * capacity, tf.sum(held, [1, 2])); // [G]
    const need = tf.maximum(tf.sub(unserved, free), 0); // [G]

    // Give back: rank secondary slots (excess first, then lowest plan value) and release `need`.
    // Keys: excess slots value, other secondary slots 1e6 + value, the rest 1e9 (never picked;
    // finite, since tfjs-wasm 4.22's isFinite is unreliable).
    const releaseKey = tf.where(tf.greater(secondary, 0), tf.add(value, tf.mul(tf.sub(1, excess), 1e6)), tf.fill(value.shape, 1e9));
    const flatKey = tf.reshape(releaseKey, [groups, groupSize * experts]);
    const sorted = tf.topk(tf.neg(flatKey), groupSize * experts); // ascending key
    const rank = tf.tile(tf.expandDims(tf.range(0, groupSize * experts, 1, 'float32'), 0), [groups, 1]);
    const order = sorted.indices;
    const pick = tf.logicalAnd(tf.less(rank, tf.expandDims(need, 1)), tf.greater(sorted.values, -1e8));
    const groupOffset = tf.mul(tf.expandDims(tf.range(0, groups, 1, 'int32'), 1), tf.scalar(groupSize * experts, 'int32'));
    const released = tf.reshape(
      tf.scatterND(tf.reshape(tf.add(order, groupOffset), [-1, 1]), tf.reshape(tf.cast(pick, 'float32'), [-1]), [groups * groupSize * experts]),
      [groups, groupSize, experts],
    );
    let kept = tf.sub(held, released);

    // Fill: waiting tokens ask for their r-th expert by gate; higher largest gate goes first.
    const prio = tf.max(gates, 2); // [G, S]
    const sIdx = tf.range(0, groupSize, 1, 'int32');
    const pa = tf.expandDims(prio, 2); // [G, S(i), 1]
    const pb = tf.expandDims(prio, 1); // [G, 1, S(i')]
    const earlierIdx = tf.less(tf.reshape(sIdx, [1, 1, groupSize]), tf.reshape(sIdx, [1, groupSize, 1])); // i' < i
    const before = tf.cast(tf.logicalOr(tf.greater(pb, pa), tf.logicalAnd(tf.equal(pb, pa), earlierIdx)), 'float32'); // [G, S, S]
    const choices = tf.topk(gates, experts).indices; // [G, S, E]
    let waiting = tf.mul(tf.cast(tf.equal(tf.sum(kept, 2), 0), 'float32'), mask); // [G, S]
    let room = tf.sub(capacity, tf.sum(kept, 1)); // [G, E]
    for (let r = 0; r < experts; r++) {
      const ask = tf.mul(oneHot(tf.squeeze(tf.slice(choices, [0, 0, r], [-1, -1, 1]), [2]), experts), tf.expandDims(waiting, 2)); // [G, S, E]
      const queue = tf.matMul(before, ask); // [G, S, E]: waiting tokens ahead asking for the same expert
      const accepted = tf.mul(ask, tf.cast(tf.less(queue, tf.expandDims(room, 1)), 'float32'));
      kept = tf.add(kept, accepted);
      room = tf.sub(room, tf.sum(accepted, 1));
      waiting = tf.sub(waiting, tf.sum(accepted, 2));
    }
    // Slot order: the plan's tokens by plan value, then filled tokens by gate.
    const slotOrder = tf.add(tf.mul(tf.cast(tf.greater(plan, 0), 'float32'), tf.add(plan, 2)), tf.mul(gates, 0.5));
    return slotsFromHeld(kept as tf.Tensor3D, slotOrder as tf.Tensor3D, capacity);
  });
}
