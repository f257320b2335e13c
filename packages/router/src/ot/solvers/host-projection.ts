/**
 * The host path's k-sparse simplex projection (see host.ts): the positions of a slice's k largest
 * entries in `tf.topk`'s order, and the projection itself in the tensor path's float32 steps, so
 * that the host decides supports and ties as the tensor path does.
 */
import {accumulate, type HostProblem} from './host';

const f32 = Math.fround;

/**
 * Writes into `order[0..k)` the positions of the k largest of `x[off .. off + len)`, in
 * descending order of value, ties by the lower position (`tf.topk`'s order). `k <= len`.
 */
export function topKPositions(x: ArrayLike<number>, off: number, len: number, k: number, order: Int32Array): void {
  if (k > 64) {
    for (let i = 0; i < len; i++) order[i] = i;
    const idx = order.subarray(0, len);
    idx.sort((p, q) => {
      const d = x[off + q] - x[off + p];
      return d === 0 ? p - q : d;
    });
    return;
  }
  // Insertion into the running top k: strictly larger values move ahead, so equal values keep
  // their positions' order.
  let filled = 0;
  for (let i = 0; i < len; i++) {
    const v = x[off + i];
    if (filled === k && !(v > x[off + order[k - 1]])) continue;
    let r = filled === k ? k - 1 : filled++;
    while (r > 0 && v > x[off + order[r - 1]]) {
      order[r] = order[r - 1];
      r--;
    }
    order[r] = i;
  }
}

/**
 * Places `(v, idx)` in the descending list `ranked[0..r]` / `order[0..r]` (values and their
 * positions), starting from free rank `r` and moving strictly smaller values down one rank, so
 * that an equal value stays behind the earlier ones ({@link topKPositions}'s tie order).
 */
export function insertRanked(ranked: Float64Array, order: Int32Array, r: number, v: number, idx: number): void {
  while (r > 0 && v > ranked[r - 1]) {
    ranked[r] = ranked[r - 1];
    order[r] = order[r - 1];
    r--;
  }
  ranked[r] = v;
  order[r] = idx;
}

/** Scratch buffers of the projection (sized for slices of up to `len` entries). */
export class ProjectionScratch {
  readonly order: Int32Array;
  readonly xc: Float64Array;
  readonly keep: Uint8Array;
  constructor(len: number) {
    this.order = new Int32Array(len);
    this.xc = new Float64Array(len);
    this.keep = new Uint8Array(len);
  }
}

/**
 * The k-sparse simplex projection (radius 1) of `x[0..len)` (float32 values), as the tensor
 * path's `projectRows` computes it, with float32 rounding after every elementwise step (so that
 * the support, which decides ties, is the tensor path's): shift by the maximum, support = the
 * entries among the k largest whose sparsemax condition `v_r - (sum_{l <= r} v_l - 1) / r > 0`
 * holds, threshold `tau = (sum over the support - 1) / max(|support|, 1)`. Writes `y[yOff..)`
 * (the projection, 0 off the support) and `support[yOff..)` (1/0) when given; returns tau in the
 * units of `x`.
 */
export function projectSlice(
  hp: HostProblem, x: ArrayLike<number>, len: number, k: number, s: ProjectionScratch, y: Float64Array | null, yOff: number, support: Uint8Array | null,
): number {
  let shift = -Infinity;
  for (let i = 0; i < len; i++) if (x[i] > shift) shift = x[i];
  const xc = s.xc;
  for (let i = 0; i < len; i++) xc[i] = f32(x[i] - shift);
  topKPositions(xc, 0, len, k, s.order);
  const sup = support ?? s.keep;
  const so = support ? yOff : 0;
  sup.fill(0, so, so + len);
  let cs = 0;
  let count = 0;
  for (let r = 0; r < k; r++) {
    const p = s.order[r];
    const v = xc[p];
    cs = f32(cs + v);
    if (f32(v - f32(f32(cs - 1) / (r + 1))) > 0) {
      count++;
      sup[so + p] = 1;
    }
  }
  let sum = 0;
  for (let i = 0; i < len; i++) if (sup[so + i]) sum = accumulate(hp, sum, xc[i]);
  const tauC = f32(f32(f32(sum) - 1) / Math.max(count, 1));
  if (y) for (let i = 0; i < len; i++) y[yOff + i] = sup[so + i] ? Math.max(f32(xc[i] - tauC), 0) : 0;
  return f32(tauC + shift);
}
