/**
 * The host path of `rebalanceAssignment` (rebalance.ts): on cpu, wasm and tensorflow (host reads
 * allowed), one pass over the host copies of its inputs instead of ~90 tiny kernels, taking the
 * tensor path's decisions.
 */
import * as tf from '@tensorflow/tfjs';

const f32 = Math.fround;

/**
 * `rebalanceAssignment` on the host copies of its inputs, group by group, with the tensor
 * path's rules: the same float32 keys and orders, ties broken as `tf.topk` breaks them (lower
 * index first), sums rounded as the backend's reductions round them.
 */
export function rebalanceHost(tokenIndices: tf.Tensor3D, plan: tf.Tensor3D, gates: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor3D {
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
