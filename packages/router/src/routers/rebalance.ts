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
 * ({@link rebalanceHost}: the tensor path is ~90 tiny kernels). Both take the same decisions
 * (float32 keys, the same tie rules).
 */
import * as tf from '@tensorflow/tfjs';
import {gatherTokenExpertValues} from '../moe/dispatch';
import {hostPathAvailable} from '../ot/solvers/host';
import {defaultHostReads} from '../ot/validate';
import {oneHot} from './one-hot';
import {EMPTY_SLOT} from './routing-result';

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
 * The plan's own dispatch, before rebalancing: each expert takes the top `capacity` tokens of
 * its plan column (ties: the lower token index, as `tf.topk`), keeping real tokens only and, with
 * `dispatch: 'support'`, only tokens with a positive plan value; other slots are -1. On cpu, wasm
 * and tensorflow (host reads allowed) one pass over the host copy of the plan; elsewhere tensor
 * ops (a top-k and two gathers). Not differentiable (index work).
 *
 * @param plan `<float32>[groups, groupSize, experts]` @param real `<float32>[groups, groupSize]`, 1 = real token
 * @param dispatch `'support'` or `'top-capacity'`
 * @returns `<int32>[groups, experts, capacity]`
 *
 * @example
 * ```ts
 * const plan = tf.tensor3d([[[0.9, 0], [0.1, 0.6], [0, 0.4]]]); // 3 tokens, 2 experts
 * planDispatch(plan, tf.ones([1, 3]), 2, 'support').print(); // [[[0, 1], [1, 2]]]
 * ```
 */
export function planDispatch(
  plan: tf.Tensor3D, real: tf.Tensor2D, capacity: number, dispatch: 'support' | 'top-capacity', hostReads: boolean = defaultHostReads(),
): tf.Tensor3D {
  const [groups, S, E] = plan.shape;
  if (hostPathAvailable(hostReads)) {
    const P = plan.dataSync();
    const M = real.dataSync();
    const out = new Int32Array(groups * E * capacity).fill(EMPTY_SLOT);
    const order = new Int32Array(S);
    const cap = Math.min(capacity, S);
    for (let g = 0; g < groups; g++) {
      for (let e = 0; e < E; e++) {
        // Top `cap` tokens by plan value, ties: lower token (insertion into the running top).
        let filled = 0;
        for (let s = 0; s < S; s++) {
          const v = P[(g * S + s) * E + e];
          if (filled === cap && !(v > P[(g * S + order[cap - 1]) * E + e])) continue;
          let r = filled === cap ? cap - 1 : filled++;
          while (r > 0 && v > P[(g * S + order[r - 1]) * E + e]) {
            order[r] = order[r - 1];
            r--;
          }
          order[r] = s;
        }
        for (let c = 0; c < filled; c++) {
          const s = order[c];
          const keep = M[g * S + s] > 0 && (dispatch !== 'support' || P[(g * S + s) * E + e] > 0);
          if (keep) out[(g * E + e) * capacity + c] = s;
        }
      }
    }
    return tf.tensor3d(out, [groups, E, capacity], 'int32');
  }
  return tf.tidy(() => {
    const top = tf.topk(tf.transpose(plan, [0, 2, 1]), capacity, true).indices as tf.Tensor3D; // [G, E, cap]
    let keep = gatherTokenExpertValues(tf.tile(tf.expandDims(real, 2), [1, 1, E]) as tf.Tensor3D, top);
    if (dispatch === 'support') keep = tf.mul(keep, tf.cast(tf.greater(gatherTokenExpertValues(plan, top), 0), 'float32')) as tf.Tensor3D;
    return tf.where(tf.greater(keep, 0), top, tf.fill(top.shape, EMPTY_SLOT, 'int32')) as tf.Tensor3D;
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

const f32 = Math.fround;

/**
 * {@link rebalanceAssignment} on the host copies of its inputs, group by group, with the tensor
 * path's rules: the same float32 keys and orders, ties broken as `tf.topk` breaks them (lower
 * index first), sums rounded as the backend's reductions round them.
 */
function rebalanceHost(tokenIndices: tf.Tensor3D, plan: tf.Tensor3D, gates: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor3D {
  const [groups, S, E] = plan.shape;
  const C = tokenIndices.shape[2];
  const idx = tokenIndices.dataSync();
  const P = plan.dataSync();
  const Gt = gates.dataSync();
  const M = mask.dataSync();
  const f32Sums = tf.getBackend() === 'wasm';
  const add = (s: number, x: number): number => (f32Sums ? f32(s + x) : s + x);
  const out = new Int32Array(groups * E * C);
  const held = new Uint8Array(S * E);
  const kept = new Uint8Array(S * E);
  const value = new Float32Array(S * E);
  const secondary = new Uint8Array(S * E);
  const keyOrder = new Int32Array(S * E);
  const releaseKey = new Float32Array(S * E);
  const prio = new Float32Array(S);
  const choices = new Int32Array(S * E);
  const waiting = new Uint8Array(S);
  const room = new Float64Array(E);
  const ask = new Int32Array(S); // the expert each waiting token asks for in this round, or -1
  const slotKey = new Float32Array(S);
  const slotIdx = new Int32Array(S);
  const tol = f32(1e-4);
  for (let g = 0; g < groups; g++) {
    held.fill(0);
    for (let e = 0; e < E; e++) {
      for (let c = 0; c < C; c++) {
        const t = idx[(g * E + e) * C + c];
        if (t >= 0 && t < S) held[t * E + e] = 1;
      }
    }
    let heldCount = 0;
    let unserved = 0;
    for (let s = 0; s < S; s++) {
      let served = false;
      for (let e = 0; e < E; e++) {
        const h = held[s * E + e];
        value[s * E + e] = h ? P[(g * S + s) * E + e] : 0;
        heldCount += h;
        served ||= h > 0;
      }
      if (!served) unserved += M[g * S + s];
    }
    // Secondary and excess slots: within a token, experts ahead by plan value (ties: lower expert).
    for (let s = 0; s < S; s++) {
      const threshold = f32(M[g * S + s] - tol);
      for (let e = 0; e < E; e++) {
        const o = s * E + e;
        secondary[o] = 0;
        releaseKey[o] = 1e9;
        if (!held[o]) continue;
        let massAhead = 0;
        let heldAhead = 0;
        for (let e2 = 0; e2 < E; e2++) {
          const o2 = s * E + e2;
          if (held[o2] && (value[o2] > value[o] || (value[o2] === value[o] && e2 < e))) {
            massAhead = add(massAhead, value[o2]);
            heldAhead++;
          }
        }
        if (heldAhead === 0) continue;
        secondary[o] = 1;
        const excess = f32(massAhead) >= threshold;
        releaseKey[o] = excess ? value[o] : f32(value[o] + 1e6);
      }
    }
    const need = Math.max(unserved - (E * C - heldCount), 0);
    kept.set(held);
    if (need > 0) {
      // Release the `need` secondary slots of lowest key (ties: lower flat index).
      for (let o = 0; o < S * E; o++) keyOrder[o] = o;
      keyOrder.sort((p, q) => (releaseKey[p] - releaseKey[q]) || (p - q));
      for (let r = 0; r < need && r < S * E; r++) {
        const o = keyOrder[r];
        if (releaseKey[o] < 1e8) kept[o] = 0;
      }
    }
    // Fill: waiting tokens ask for their r-th expert by gate; higher largest gate goes first.
    for (let s = 0; s < S; s++) {
      let best = -Infinity;
      for (let e = 0; e < E; e++) best = Math.max(best, Gt[(g * S + s) * E + e]);
      prio[s] = best;
      // Experts by descending gate, ties: lower expert (insertion sort of E entries).
      for (let e = 0; e < E; e++) {
        const v = Gt[(g * S + s) * E + e];
        let r = e;
        while (r > 0 && v > Gt[(g * S + s) * E + choices[s * E + r - 1]]) {
          choices[s * E + r] = choices[s * E + r - 1];
          r--;
        }
        choices[s * E + r] = e;
      }
      let any = 0;
      for (let e = 0; e < E; e++) any += kept[s * E + e];
      waiting[s] = any === 0 && M[g * S + s] > 0 ? 1 : 0;
    }
    for (let e = 0; e < E; e++) {
      let used = 0;
      for (let s = 0; s < S; s++) used += kept[s * E + e];
      room[e] = C - used;
    }
    for (let r = 0; r < E; r++) {
      for (let s = 0; s < S; s++) ask[s] = waiting[s] ? choices[s * E + r] : -1;
      const accepted: number[] = [];
      for (let s = 0; s < S; s++) {
        const e = ask[s];
        if (e < 0) continue;
        // Waiting tokens ahead of s (higher priority, ties: lower index) asking for the same expert.
        let queue = 0;
        for (let s2 = 0; s2 < S; s2++) {
          if (ask[s2] === e && (prio[s2] > prio[s] || (prio[s2] === prio[s] && s2 < s))) queue++;
        }
        if (queue < room[e]) accepted.push(s);
      }
      for (const s of accepted) {
        kept[s * E + ask[s]] = 1;
        room[ask[s]]--;
        waiting[s] = 0;
      }
    }
    // Slots: each expert's tokens by the key plan + 2 (on the plan) + gate / 2, ties: lower token.
    for (let e = 0; e < E; e++) {
      let n = 0;
      for (let s = 0; s < S; s++) {
        if (!kept[s * E + e]) continue;
        const p = P[(g * S + s) * E + e];
        const order = f32((p > 0 ? f32(p + 2) : 0) + f32(Gt[(g * S + s) * E + e] * 0.5));
        const key = f32(order + 1);
        if (!(key > 0)) continue;
        // Insert by descending key; equal keys keep the lower token first.
        let r = n++;
        while (r > 0 && key > slotKey[r - 1]) {
          slotKey[r] = slotKey[r - 1];
          slotIdx[r] = slotIdx[r - 1];
          r--;
        }
        slotKey[r] = key;
        slotIdx[r] = s;
      }
      for (let c = 0; c < C; c++) out[(g * E + e) * C + c] = c < n ? slotIdx[c] : -1;
    }
  }
  return tf.tensor3d(out, [groups, E, C], 'int32');
}
