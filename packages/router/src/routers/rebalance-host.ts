/**
 * The host path of `rebalanceAssignment` (rebalance.ts): on cpu, wasm and tensorflow (host reads
 * allowed), one pass over the host copies of its inputs instead of ~90 tiny kernels, taking the
 * tensor path's decisions.
 */
import * as tf from '@tensorflow/tfjs';

const f32 = Math.fround;

/** The scratch arrays of {@link rebalanceHost} for groups of S tokens and E experts (every entry is written before it is read). */
class RebalanceScratch {
  readonly kept: Uint8Array;
  readonly releaseKey: Float32Array;
  // Token s's held experts, ascending: heldList[s * E .. s * E + heldCount[s]).
  readonly heldList: Int32Array;
  readonly heldCount: Int32Array;
  readonly keptCount: Int32Array;
  readonly used: Int32Array;
  readonly candidates: Int32Array;
  readonly extra: Int32Array; // a waiting token's accepted expert when it did not hold it, or -1
  readonly waitingList: Int32Array;
  readonly accepted: Int32Array;
  readonly prio: Float32Array;
  readonly choices: Int32Array;
  readonly ask: Int32Array;
  readonly room: Float64Array;
  readonly slotList: Int32Array;
  readonly slotCount: Int32Array;
  readonly slotKey: Float32Array;
  readonly slotIdx: Int32Array;
  constructor(readonly S: number, readonly E: number) {
    this.kept = new Uint8Array(S * E);
    this.releaseKey = new Float32Array(S * E);
    this.heldList = new Int32Array(S * E);
    this.heldCount = new Int32Array(S);
    this.keptCount = new Int32Array(S);
    this.used = new Int32Array(E);
    this.candidates = new Int32Array(S * E);
    this.extra = new Int32Array(S);
    this.waitingList = new Int32Array(S);
    this.accepted = new Int32Array(S);
    this.prio = new Float32Array(S);
    this.choices = new Int32Array(S * E);
    this.ask = new Int32Array(S);
    this.room = new Float64Array(E);
    this.slotList = new Int32Array(E * S);
    this.slotCount = new Int32Array(E);
    this.slotKey = new Float32Array(S);
    this.slotIdx = new Int32Array(S);
  }
}

let lastScratch: RebalanceScratch | null = null;

/** The scratch for (S, E), reused while the sizes stay the same (a model's layers share them). */
function rebalanceScratch(S: number, E: number): RebalanceScratch {
  if (lastScratch === null || lastScratch.S !== S || lastScratch.E !== E) lastScratch = new RebalanceScratch(S, E);
  return lastScratch;
}

/**
 * `rebalanceAssignment` on the host copies of its inputs, group by group, with the tensor
 * path's rules: the same float32 keys and orders, ties broken as `tf.topk` breaks them (lower
 * index first), sums rounded as the backend's reductions round them.
 *
 * The work per group follows the held pairs (at most `E * C`), not all `S * E` token-expert
 * pairs: each token's held experts are listed in ascending expert order, the give-back step sorts
 * only the secondary slots, and only the tokens left waiting rank their experts by gate.
 */
export function rebalanceHost(tokenIndices: tf.Tensor3D, plan: tf.Tensor3D, gates: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor3D {
  const [groups, S, E] = plan.shape;
  const C = tokenIndices.shape[2];
  const idx = tokenIndices.dataSync();
  const P = plan.dataSync();
  const Gt = gates.dataSync();
  const M = mask.dataSync();
  const f32Sums = tf.getBackend() === 'wasm';
  const out = new Int32Array(groups * E * C);
  const {kept, releaseKey, heldList, heldCount, keptCount, used, candidates, extra, waitingList, accepted, prio, choices, ask, room, slotList, slotCount, slotKey, slotIdx} =
    rebalanceScratch(S, E);
  const tol = f32(1e-4);
  const byKey = (p: number, q: number): number => (releaseKey[p] - releaseKey[q]) || (p - q);
  for (let g = 0; g < groups; g++) {
    kept.fill(0);
    releaseKey.fill(1e9);
    heldCount.fill(0);
    used.fill(0);
    for (let e = 0; e < E; e++) {
      for (let c = 0; c < C; c++) {
        const t = idx[(g * E + e) * C + c];
        if (t >= 0 && t < S && !kept[t * E + e]) {
          kept[t * E + e] = 1;
          heldList[t * E + heldCount[t]++] = e;
          used[e]++;
        }
      }
    }
    let held = 0;
    let unserved = 0;
    for (let s = 0; s < S; s++) {
      held += heldCount[s];
      keptCount[s] = heldCount[s];
      if (heldCount[s] === 0) unserved += M[g * S + s];
    }
    // Secondary and excess slots: within a token, experts ahead by plan value (ties: lower expert).
    let nCandidates = 0;
    let nanKey = false;
    for (let s = 0; s < S; s++) {
      const h0 = s * E;
      const hn = heldCount[s];
      if (hn < 2) continue; // a token's only slot is its best one
      const threshold = f32(M[g * S + s] - tol);
      const p0 = (g * S + s) * E;
      for (let h = 0; h < hn; h++) {
        const e = heldList[h0 + h];
        const v = P[p0 + e];
        let massAhead = 0;
        let heldAhead = 0;
        for (let h2 = 0; h2 < hn; h2++) {
          const e2 = heldList[h0 + h2];
          const v2 = P[p0 + e2];
          if (v2 > v || (v2 === v && e2 < e)) {
            massAhead = f32Sums ? f32(massAhead + v2) : massAhead + v2;
            heldAhead++;
          }
        }
        if (heldAhead === 0) continue;
        const key = f32(massAhead) >= threshold ? v : f32(v + 1e6);
        const o = h0 + e;
        releaseKey[o] = key;
        if (key !== key) nanKey = true;
        if (key < 1e8) candidates[nCandidates++] = o;
      }
    }
    const need = Math.max(unserved - (E * C - held), 0);
    if (need > 0 && nCandidates > 0) {
      // Release the `need` secondary slots of lowest key (ties: lower flat index). The keys below
      // 1e8 sort ahead of the others (1e9), so the first `need` of all slots in key order are the
      // first of the candidates; with a NaN key the order is the sort's, over all slots as before.
      let sorted: Int32Array;
      if (nanKey) {
        for (let o = 0; o < S * E; o++) candidates[o] = o;
        sorted = candidates.sort(byKey);
      } else {
        sorted = candidates.subarray(0, nCandidates).sort(byKey);
      }
      for (let r = 0; r < need && r < sorted.length; r++) {
        const o = sorted[r];
        if (!(releaseKey[o] < 1e8)) continue;
        kept[o] = 0;
        keptCount[(o / E) | 0]--;
        used[o % E]--;
      }
    }
    // Fill: waiting tokens ask for their r-th expert by gate; higher largest gate goes first.
    let nWaiting = 0;
    for (let s = 0; s < S; s++) {
      extra[s] = -1;
      if (keptCount[s] !== 0 || !(M[g * S + s] > 0)) continue;
      waitingList[nWaiting++] = s;
      const g0 = (g * S + s) * E;
      let best = -Infinity;
      for (let e = 0; e < E; e++) best = Math.max(best, Gt[g0 + e]);
      prio[s] = best;
      // Experts by descending gate, ties: lower expert (insertion sort of E entries).
      for (let e = 0; e < E; e++) {
        const v = Gt[g0 + e];
        let r = e;
        while (r > 0 && v > Gt[g0 + choices[s * E + r - 1]]) {
          choices[s * E + r] = choices[s * E + r - 1];
          r--;
        }
        choices[s * E + r] = e;
      }
    }
    for (let e = 0; e < E; e++) room[e] = C - used[e];
    for (let r = 0; r < E && nWaiting > 0; r++) {
      for (let w = 0; w < nWaiting; w++) ask[waitingList[w]] = choices[waitingList[w] * E + r];
      let nAccepted = 0;
      for (let w = 0; w < nWaiting; w++) {
        const s = waitingList[w];
        const e = ask[s];
        // Waiting tokens ahead of s (higher priority, ties: lower index) asking for the same expert.
        let queue = 0;
        for (let w2 = 0; w2 < nWaiting; w2++) {
          const s2 = waitingList[w2];
          if (ask[s2] === e && (prio[s2] > prio[s] || (prio[s2] === prio[s] && s2 < s))) queue++;
        }
        if (queue < room[e]) accepted[nAccepted++] = s;
      }
      for (let q = 0; q < nAccepted; q++) {
        const s = accepted[q];
        const e = ask[s];
        if (!kept[s * E + e]) {
          kept[s * E + e] = 1;
          // Not among its held experts when it was never held there (a released slot is).
          let wasHeld = false;
          for (let h = 0; h < heldCount[s]; h++) if (heldList[s * E + h] === e) wasHeld = true;
          if (!wasHeld) extra[s] = e;
        }
        room[e]--;
      }
      if (nAccepted > 0) {
        // The accepted tokens leave the waiting list (both lists ascend).
        let n = 0;
        let q = 0;
        for (let w = 0; w < nWaiting; w++) {
          const s = waitingList[w];
          if (q < nAccepted && accepted[q] === s) q++;
          else waitingList[n++] = s;
        }
        nWaiting = n;
      }
    }
    // Slots: each expert's tokens by the key plan + 2 (on the plan) + gate / 2, ties: lower token.
    slotCount.fill(0);
    for (let s = 0; s < S; s++) {
      for (let h = 0; h < heldCount[s]; h++) {
        const e = heldList[s * E + h];
        if (kept[s * E + e]) slotList[e * S + slotCount[e]++] = s;
      }
      if (extra[s] >= 0) slotList[extra[s] * S + slotCount[extra[s]]++] = s;
    }
    for (let e = 0; e < E; e++) {
      let n = 0;
      for (let q = 0; q < slotCount[e]; q++) {
        const s = slotList[e * S + q];
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
