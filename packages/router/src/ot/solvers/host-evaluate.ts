/**
 * The host path's objective evaluations (see host.ts), one group at a time in the tensor path's
 * float32 steps and summation order: the semi-dual's plan, value and gradient at row potentials
 * (semidual.ts), and the dual's plan and value at a pair of potentials (dual.ts).
 */
import {accumulate, type HostProblem} from './host';
import {insertRanked, ProjectionScratch, projectSlice, topKPositions} from './host-projection';

const f32 = Math.fround;

/** One semi-dual evaluation of one group (see semidual.ts): the plan in float32 steps, value and gradient summed in float64. */
export class HostSemidualEval {
  /** `[ni, mi]`: the plan, transposed. */
  readonly planT: Float64Array;
  /** `[ni, mi]`: 1 on each column's support. */
  readonly support: Uint8Array;
  /** `[ni]`: projection thresholds. */
  readonly tau: Float64Array;
  /** `[mi]`: `a - T 1`. */
  readonly grad: Float64Array;
  /** `[ni]`: the size of each column's support. */
  readonly supportSize: Int32Array;
  /** `[ni]`: each column's smallest positive plan entry (Infinity when none). */
  readonly minPositive: Float64Array;
  value = 0;
  private readonly x: Float64Array;
  private readonly scratch: ProjectionScratch;
  /** The support's positions of the column being evaluated, ascending. */
  private readonly positions: Int32Array;
  /** The ranked values of the column being evaluated. */
  private readonly ranked: Float64Array;

  constructor(readonly mi: number, readonly ni: number) {
    this.planT = new Float64Array(ni * mi);
    this.support = new Uint8Array(ni * mi);
    this.tau = new Float64Array(ni);
    this.grad = new Float64Array(mi);
    this.supportSize = new Int32Array(ni);
    this.minPositive = new Float64Array(ni);
    this.x = new Float64Array(mi);
    this.scratch = new ProjectionScratch(mi);
    this.positions = new Int32Array(mi);
    this.ranked = new Float64Array(mi);
  }

  /** Copies another evaluation (of the same sizes) into this one. */
  copyFrom(other: HostSemidualEval): this {
    this.planT.set(other.planT);
    this.support.set(other.support);
    this.tau.set(other.tau);
    this.grad.set(other.grad);
    this.supportSize.set(other.supportSize);
    this.minPositive.set(other.minPositive);
    this.value = other.value;
    return this;
  }

  /**
   * Evaluates the semi-dual of group `g` of `hp` at `alpha` (`[mi]`, float32 values):
   * `y_j = P_k((alpha - C[:, j]) / (gamma b_j))`, `T[:, j] = b_j y_j`, `grad = a - T 1`,
   * `S = <alpha, a> - <T, alpha - C> + (gamma / 2) ||T||^2` (a column with `b_j = 0` is
   * projected as if `b_j = 1` and contributes nothing).
   */
  evaluate(hp: HostProblem, g: number, alpha: Float32Array): this {
    const {mi, ni, gamma, a, b} = hp;
    const {grad} = this;
    const aOff = g * mi;
    // The sums in the tensor path's order and rounding: <alpha, a>, <T, z>, ||T||^2, T 1.
    let sAlpha = 0;
    for (let i = 0; i < mi; i++) {
      sAlpha = accumulate(hp, sAlpha, f32(alpha[i] * a[aOff + i]));
      grad[i] = 0;
    }
    const sums = {planZ: 0, square: 0};
    for (let j = 0; j < ni; j++) {
      const bj = b[g * ni + j];
      if (!this.columnFast(hp, g, j, bj, alpha, sums)) this.columnGeneral(hp, g, j, bj, alpha, sums);
    }
    for (let i = 0; i < mi; i++) grad[i] = f32(a[aOff + i] - f32(grad[i]));
    this.value = f32(f32(f32(sAlpha) - f32(sums.planZ)) + f32(f32(gamma / 2) * f32(sums.square)));
    return this;
  }

  /**
   * Column j of {@link evaluate}, step for step as {@link projectSlice} and the general loop
   * compute it, on finite values only: one pass for `x` and its maximum, one for the shifted
   * entries and their top k, and the support's few entries for the threshold, plan and sums (in
   * ascending position, the general loop's order; off the support the plan is `b_j * 0 = 0`).
   * Returns false, having written nothing but scratch, when an entry is not finite or `b_j` is
   * not a finite `+0` or positive number (the general loop then runs).
   */
  private columnFast(hp: HostProblem, g: number, j: number, bj: number, alpha: Float32Array, sums: {planZ: number; square: number}): boolean {
    if (!(Number.isFinite(bj) && (bj > 0 || Object.is(bj, 0)))) return false;
    const {mi, k, gamma, costT} = hp;
    const {x, planT, support, grad, positions} = this;
    const {xc, order} = this.scratch;
    const den = f32((bj > 0 ? bj : 1) * gamma);
    const c0 = (g * hp.ni + j) * mi;
    let shift = -Infinity;
    for (let i = 0; i < mi; i++) {
      const xi = f32(f32(alpha[i] - costT[c0 + i]) / den);
      if (!(xi - xi === 0)) return false; // NaN or infinite
      x[i] = xi;
      if (xi > shift) shift = xi;
    }
    shiftAndRank(x, shift, mi, k, xc, order, this.ranked);
    const jm = j * mi;
    // (Loops, not fill(): for a routing group's few rows the builtin call costs more than the stores.)
    for (let i = jm, end = jm + mi; i < end; i++) {
      support[i] = 0;
      planT[i] = 0;
    }
    let cs = 0;
    let count = 0;
    for (let r = 0; r < k; r++) {
      const p = order[r];
      const v = xc[p];
      cs = f32(cs + v);
      if (f32(v - f32(f32(cs - 1) / (r + 1))) > 0) {
        support[jm + p] = 1;
        positions[count++] = p;
      }
    }
    // The support in ascending position: a short list is sorted, a long one read off the marks.
    if (count <= 16) {
      for (let q = 1; q < count; q++) {
        const p = positions[q];
        let r = q;
        while (r > 0 && positions[r - 1] > p) {
          positions[r] = positions[r - 1];
          r--;
        }
        positions[r] = p;
      }
    } else {
      let n = 0;
      for (let i = 0; i < mi; i++) if (support[jm + i]) positions[n++] = i;
    }
    let sum = 0;
    for (let q = 0; q < count; q++) sum = accumulate(hp, sum, xc[positions[q]]);
    const tauC = f32(f32(f32(sum) - 1) / Math.max(count, 1));
    this.tau[j] = f32(tauC + shift);
    let minPositive = Infinity;
    let planZ = sums.planZ;
    let square = sums.square;
    for (let q = 0; q < count; q++) {
      const i = positions[q];
      const p = f32(bj * Math.max(f32(xc[i] - tauC), 0));
      planT[jm + i] = p;
      if (p !== 0) {
        planZ = accumulate(hp, planZ, f32(p * f32(alpha[i] - costT[c0 + i])));
        square = accumulate(hp, square, f32(p * p));
        grad[i] = accumulate(hp, grad[i], p);
        if (p > 0 && p < minPositive) minPositive = p;
      }
    }
    sums.planZ = planZ;
    sums.square = square;
    this.supportSize[j] = count;
    this.minPositive[j] = minPositive;
    return true;
  }

  /** Column j of {@link evaluate} for any values (see {@link columnFast}). */
  private columnGeneral(hp: HostProblem, g: number, j: number, bj: number, alpha: Float32Array, sums: {planZ: number; square: number}): void {
    const {mi, k, gamma, costT} = hp;
    const {x, planT, support, grad} = this;
    const den = f32((bj > 0 ? bj : 1) * gamma);
    const c0 = (g * hp.ni + j) * mi;
    for (let i = 0; i < mi; i++) x[i] = f32(f32(alpha[i] - costT[c0 + i]) / den);
    this.tau[j] = projectSlice(hp, x, mi, k, this.scratch, planT, j * mi, support);
    let count = 0;
    let minPositive = Infinity;
    for (let i = 0; i < mi; i++) {
      const p = f32(bj * planT[j * mi + i]);
      planT[j * mi + i] = p;
      count += support[j * mi + i];
      if (p > 0 && p < minPositive) minPositive = p;
      if (p !== 0) {
        sums.planZ = accumulate(hp, sums.planZ, f32(p * f32(alpha[i] - costT[c0 + i])));
        sums.square = accumulate(hp, sums.square, f32(p * p));
        grad[i] = accumulate(hp, grad[i], p);
      }
    }
    this.supportSize[j] = count;
    this.minPositive[j] = minPositive;
  }
}

/**
 * Writes `xc_i = f32(x_i - shift)` and ranks `xc` as {@link topKPositions} does (the k largest,
 * descending, ties by the lower position) into `order[0..k)`, in one pass: k = 1 and 2 in
 * registers, k up to 64 by insertion against the current k-th value (`ranked` holds the ranked
 * values), larger k by {@link topKPositions} itself. No NaN in `x`, `k <= len`.
 */
function shiftAndRank(x: Float64Array, shift: number, len: number, k: number, xc: Float64Array, order: Int32Array, ranked: Float64Array): void {
  if (k === 1) {
    let v0 = (xc[0] = f32(x[0] - shift));
    let i0 = 0;
    for (let i = 1; i < len; i++) {
      const v = (xc[i] = f32(x[i] - shift));
      if (v > v0) {
        v0 = v;
        i0 = i;
      }
    }
    order[0] = i0;
  } else if (k === 2) {
    let v0 = (xc[0] = f32(x[0] - shift));
    let v1 = (xc[1] = f32(x[1] - shift));
    let i0 = 0;
    let i1 = 1;
    if (v1 > v0) {
      v0 = v1;
      v1 = xc[0];
      i0 = 1;
      i1 = 0;
    }
    for (let i = 2; i < len; i++) {
      const v = (xc[i] = f32(x[i] - shift));
      if (!(v > v1)) continue;
      if (v > v0) {
        v1 = v0;
        i1 = i0;
        v0 = v;
        i0 = i;
      } else {
        v1 = v;
        i1 = i;
      }
    }
    order[0] = i0;
    order[1] = i1;
  } else if (k <= 64) {
    let filled = 0;
    let last = -Infinity;
    for (let i = 0; i < len; i++) {
      const v = (xc[i] = f32(x[i] - shift));
      if (filled === k && !(v > last)) continue;
      insertRanked(ranked, order, filled === k ? k - 1 : filled++, v, i);
      last = ranked[k - 1];
    }
  } else {
    for (let i = 0; i < len; i++) xc[i] = f32(x[i] - shift);
    topKPositions(xc, 0, len, k, order);
  }
}

/**
 * The dual's plan and value at `(alpha, beta)` for group `g` (see dual.ts): `s = alpha + beta_j -
 * C[:, j]`, `T[:, j] = [s]_+ / gamma` on the k largest entries of `s` (ties: lower row), and
 * `D = <alpha, a> + <beta, b> - (gamma / 2) ||T||^2`. Writes `planT` (`[ni, mi]`); returns D.
 */
export function hostDualPlan(hp: HostProblem, g: number, alpha: ArrayLike<number>, beta: ArrayLike<number>, planT: Float64Array, scratch: ProjectionScratch): number {
  const {mi, ni, k, gamma} = hp;
  const s = scratch.xc;
  let sAlpha = 0;
  for (let i = 0; i < mi; i++) sAlpha = accumulate(hp, sAlpha, f32(alpha[i] * hp.a[g * mi + i]));
  let sBeta = 0;
  let sSquare = 0;
  for (let j = 0; j < ni; j++) {
    sBeta = accumulate(hp, sBeta, f32(beta[j] * hp.b[g * ni + j]));
    const c0 = (g * ni + j) * mi;
    for (let i = 0; i < mi; i++) s[i] = f32(f32(alpha[i] + beta[j]) - hp.costT[c0 + i]);
    planT.fill(0, j * mi, (j + 1) * mi);
    if (k >= mi) {
      for (let i = 0; i < mi; i++) planT[j * mi + i] = f32(Math.max(s[i], 0) / gamma);
    } else {
      topKPositions(s, 0, mi, k, scratch.order);
      for (let r = 0; r < k; r++) {
        const p = scratch.order[r];
        planT[j * mi + p] = f32(Math.max(s[p], 0) / gamma);
      }
    }
    for (let i = 0; i < mi; i++) if (planT[j * mi + i] !== 0) sSquare = accumulate(hp, sSquare, f32(planT[j * mi + i] * planT[j * mi + i]));
  }
  return f32(f32(f32(sAlpha) + f32(sBeta)) - f32(f32(gamma / 2) * f32(sSquare)));
}
