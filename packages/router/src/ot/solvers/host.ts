/**
 * The host path of the OT solvers: on backends whose tensors live in host memory (`cpu`, `wasm`,
 * `tensorflow`, where `dataSync` is a copy), a solver reads the problem once and runs its
 * iterations on `Float64Array`s, one group at a time, instead of as hundreds of tiny kernels
 * (one semi-dual evaluation is ~40 kernels on `[groups, n, m]` tensors of a few hundred entries).
 * It runs the same algorithm as the tensor path, step for step (same starts, same per-group
 * decisions, same best-iterate rule): results agree to float32 rounding (the host computes in
 * float64) and every group is solved from its own values alone.
 *
 * This file holds what the host solvers share: the switch ({@link setHostSolvers}), the problem
 * read back ({@link readHostProblem}), the semi-dual evaluation, the k-sparse simplex projection,
 * the dual's plan, and the output built from host arrays. webgl and webgpu (and `hostReads:
 * false`) keep the tensor path.
 */
import * as tf from '@tensorflow/tfjs';
import {SparseOTOutput} from '../output';
import type {SparseOTProblem} from '../problem';
import type {Formulation} from '../types';

/** Backends whose synchronous reads are host copies (no device round trip). */
const HOST_BACKENDS: ReadonlySet<string> = new Set(['cpu', 'wasm', 'tensorflow']);

let hostSolversEnabled = true;

/**
 * Turns the host path of the OT solvers on (the default) or off (every solver then runs its
 * tensor path, as on webgl / webgpu). For tests and benchmarks that compare both paths.
 *
 * @returns the previous setting.
 *
 * @example
 * ```ts
 * const before = setHostSolvers(false); // the tensor path, on any backend
 * try { out = alternating().solve(problem); } finally { setHostSolvers(before); }
 * ```
 */
export function setHostSolvers(enabled: boolean): boolean {
  if (typeof enabled !== 'boolean') throw new TypeError(`setHostSolvers: enabled must be a boolean, got ${String(enabled)}`);
  const before = hostSolversEnabled;
  hostSolversEnabled = enabled;
  return before;
}

/**
 * Whether a solve of `problem` runs on the host: host solvers enabled, host reads allowed, and
 * a backend whose reads are host copies (`cpu`, `wasm`, `tensorflow`).
 *
 * @example
 * ```ts
 * if (useHostPath(problem)) return solveAlternatingHost(problem, init, config);
 * ```
 */
export function useHostPath(problem: SparseOTProblem): boolean {
  return hostPathAvailable(problem.hostReads);
}

/**
 * Whether host-path code may run now: host solvers enabled, `hostReads` allowed, and a backend
 * whose reads are host copies (`cpu`, `wasm`, `tensorflow`).
 *
 * @example
 * ```ts
 * if (hostPathAvailable(defaultHostReads())) return rebalanceHost(...);
 * ```
 */
export function hostPathAvailable(hostReads: boolean): boolean {
  return hostSolversEnabled && hostReads && HOST_BACKENDS.has(tf.getBackend());
}

/** A problem's internal arrays on the host (all `[groups, ...]`, internal layout). */
export interface HostProblem {
  groups: number;
  /** Internal rows (the bounded side) and columns. */
  mi: number;
  ni: number;
  k: number;
  gamma: number;
  /** `[groups, ni, mi]`: one internal column per row. */
  costT: Float32Array;
  /** `[groups, mi, ni]`: token-major. */
  costRows: Float32Array;
  /** `[groups, mi]` and `[groups, ni]`. */
  a: Float32Array;
  b: Float32Array;
  /**
   * How the backend's reductions (`Sum`) accumulate: in float32 step by step (wasm) or in float64
   * rounded once at the end (cpu). The host path sums the same way, so that near-ties (two starts
   * of equal value, a token at a column's k-th place) are decided as the tensor path decides them.
   */
  f32Sums: boolean;
}

/** `s + x`, rounded to float32 when the problem's reductions accumulate in float32. */
export function accumulate(hp: HostProblem, s: number, x: number): number {
  return hp.f32Sums ? Math.fround(s + x) : s + x;
}

/**
 * Reads the problem's tensors back (four copies).
 *
 * @example
 * ```ts
 * const hp = readHostProblem(problem);
 * ```
 */
export function readHostProblem(problem: SparseOTProblem): HostProblem {
  const {groups, mi, ni, k, gamma} = problem;
  return {
    groups, mi, ni, k, gamma,
    costT: problem.costT.dataSync() as Float32Array,
    costRows: problem.costRows.dataSync() as Float32Array,
    a: problem.a.dataSync() as Float32Array,
    b: problem.b.dataSync() as Float32Array,
    f32Sums: tf.getBackend() === 'wasm',
  };
}

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

const f32 = Math.fround;

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

/** Host results of a solve, all groups, internal layout: `planT [groups, ni, mi]`, `alpha [groups, mi]`, `beta [groups, ni]`, `value [groups]`. */
export interface HostSolution {
  planT: Float64Array;
  alpha: Float32Array;
  beta: Float32Array;
  value: Float64Array;
}

/** Zeroed {@link HostSolution} arrays for `hp`. */
export function newHostSolution(hp: HostProblem): HostSolution {
  const {groups, mi, ni} = hp;
  return {planT: new Float64Array(groups * ni * mi), alpha: new Float32Array(groups * mi), beta: new Float32Array(groups * ni), value: new Float64Array(groups)};
}

/**
 * Stores group g's result at row potentials `alpha` with their evaluation `ev` (solver.ts
 * `semidualOutput`): the semi-dual's plan and value, and `beta_j = -gamma b_j tau_j`.
 */
export function storeSolution(hp: HostProblem, g: number, alpha: Float32Array, ev: HostSemidualEval, sol: HostSolution): void {
  const {mi, ni} = hp;
  sol.planT.set(ev.planT, g * ni * mi);
  sol.alpha.set(alpha, g * mi);
  for (let j = 0; j < ni; j++) sol.beta[g * ni + j] = f32(f32(ev.tau[j] * hp.b[g * ni + j]) * -hp.gamma);
  sol.value[g] = ev.value;
}

/**
 * Builds the output of a solve from host arrays, as `semidualOutput` + `makeOutput` do from
 * tensors: for `formulation: 'dual'` the plan and value are the dual's at `(alpha, beta)`;
 * the plan is brought to the caller's layout, the marginal statistics computed, and every
 * tensor created once.
 *
 * @example
 * ```ts
 * return hostOutput(problem, hp, solution, maxIterations, converged, 'semidual');
 * ```
 */
export function hostOutput(
  problem: SparseOTProblem, hp: HostProblem, sol: HostSolution, iterations: number, converged: boolean, formulation: Formulation,
): SparseOTOutput {
  const {groups, mi, ni} = hp;
  const {m, n, batched} = problem;
  const column = problem.columnSparse;
  if (formulation === 'dual') {
    const scratch = new ProjectionScratch(mi);
    const planG = new Float64Array(ni * mi);
    for (let g = 0; g < groups; g++) {
      sol.value[g] = hostDualPlan(hp, g, sol.alpha.subarray(g * mi, (g + 1) * mi), sol.beta.subarray(g * ni, (g + 1) * ni), planG, scratch);
      sol.planT.set(planG, g * ni * mi);
    }
  }
  // The plan in the caller's layout [groups, m, n]: column sparsity transposes (m = mi, n = ni).
  const plan = new Float32Array(groups * m * n);
  if (column) {
    for (let g = 0; g < groups; g++) {
      const o = g * mi * ni;
      for (let j = 0; j < ni; j++) for (let i = 0; i < mi; i++) plan[o + i * ni + j] = sol.planT[o + j * mi + i];
    }
  } else {
    plan.set(sol.planT);
  }
  const rowMarginal = column ? hp.a : hp.b;
  const colMarginal = column ? hp.b : hp.a;
  const stats = marginalStatsHost(plan, rowMarginal, colMarginal, groups, m, n);
  const alphaC = column ? sol.alpha : sol.beta;
  const betaC = column ? sol.beta : sol.alpha;
  const lead = batched ? [groups] : [];
  return new SparseOTOutput(
    tf.tensor(plan, [...lead, m, n], 'float32'),
    {alpha: tf.tensor(alphaC, [...lead, m], 'float32'), beta: tf.tensor(betaC, [...lead, n], 'float32')},
    tf.tensor(Float32Array.from(sol.value), lead, 'float32'),
    iterations, converged, problem.feasible, tf.tensor1d(stats, 'float32'),
  );
}

/**
 * The marginal statistics of `marginalStatsTensor` on host arrays: the largest relative
 * violation of a row or column sum, the mean relative row violation, and the fraction of rows
 * with a positive marginal that receive no mass.
 *
 * @param plan `[groups, m, n]` @param a `[groups, m]` @param b `[groups, n]`
 */
export function marginalStatsHost(plan: Float32Array, a: Float32Array, b: Float32Array, groups: number, m: number, n: number): number[] {
  let worst = 0;
  let rowErrSum = 0;
  let dropped = 0;
  const cols = new Float64Array(n);
  for (let g = 0; g < groups; g++) {
    cols.fill(0);
    for (let i = 0; i < m; i++) {
      let row = 0;
      for (let j = 0; j < n; j++) {
        const p = plan[(g * m + i) * n + j];
        row += p;
        cols[j] += p;
      }
      const target = a[g * m + i];
      const err = Math.abs(row - target) / (target > 0 ? target : 1);
      rowErrSum += err;
      if (err > worst) worst = err;
      if (row <= 0 && target > 0) dropped++;
    }
    for (let j = 0; j < n; j++) {
      const target = b[g * n + j];
      const err = Math.abs(cols[j] - target) / (target > 0 ? target : 1);
      if (err > worst) worst = err;
    }
  }
  return [worst, rowErrSum / (groups * m), dropped / (groups * m)];
}
