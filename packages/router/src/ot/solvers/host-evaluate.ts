/**
 * The host path's objective evaluations (see host.ts), one group at a time in the tensor path's
 * float32 steps and summation order: the semi-dual's plan, value and gradient at row potentials
 * (semidual.ts), and the dual's plan and value at a pair of potentials (dual.ts).
 */
import {accumulate, type HostProblem} from './host';
import {ProjectionScratch, projectSlice, topKPositions} from './host-projection';

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
  value = 0;
  private readonly x: Float64Array;
  private readonly scratch: ProjectionScratch;

  constructor(readonly mi: number, readonly ni: number) {
    this.planT = new Float64Array(ni * mi);
    this.support = new Uint8Array(ni * mi);
    this.tau = new Float64Array(ni);
    this.grad = new Float64Array(mi);
    this.x = new Float64Array(mi);
    this.scratch = new ProjectionScratch(mi);
  }

  /** Copies another evaluation (of the same sizes) into this one. */
  copyFrom(other: HostSemidualEval): this {
    this.planT.set(other.planT);
    this.support.set(other.support);
    this.tau.set(other.tau);
    this.grad.set(other.grad);
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
    const {mi, ni, k, gamma} = hp;
    const {planT, support, tau, grad, x} = this;
    // The sums in the tensor path's order and rounding: <alpha, a>, <T, z>, ||T||^2, T 1.
    let sAlpha = 0;
    for (let i = 0; i < mi; i++) {
      sAlpha = accumulate(hp, sAlpha, f32(alpha[i] * hp.a[g * mi + i]));
      grad[i] = 0;
    }
    let sPlanZ = 0;
    let sSquare = 0;
    for (let j = 0; j < ni; j++) {
      const bj = hp.b[g * ni + j];
      const den = f32((bj > 0 ? bj : 1) * gamma);
      const c0 = (g * ni + j) * mi;
      for (let i = 0; i < mi; i++) x[i] = f32(f32(alpha[i] - hp.costT[c0 + i]) / den);
      tau[j] = projectSlice(hp, x, mi, k, this.scratch, planT, j * mi, support);
      for (let i = 0; i < mi; i++) {
        const p = f32(bj * planT[j * mi + i]);
        planT[j * mi + i] = p;
        if (p !== 0) {
          sPlanZ = accumulate(hp, sPlanZ, f32(p * f32(alpha[i] - hp.costT[c0 + i])));
          sSquare = accumulate(hp, sSquare, f32(p * p));
          grad[i] = accumulate(hp, grad[i], p);
        }
      }
    }
    for (let i = 0; i < mi; i++) grad[i] = f32(hp.a[g * mi + i] - f32(grad[i]));
    this.value = f32(f32(f32(sAlpha) - f32(sPlanZ)) + f32(f32(gamma / 2) * f32(sSquare)));
    return this;
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
