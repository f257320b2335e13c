/**
 * The host path's results (see host.ts): per-group solutions in host arrays, and the
 * `SparseOTOutput` built from them once at the end (plan in the caller's layout, potentials,
 * value and the marginal statistics), as the tensor path's `semidualOutput` / `makeOutput` do.
 */
import * as tf from '@tensorflow/tfjs';
import {SparseOTOutput} from '../output';
import type {SparseOTProblem} from '../problem';
import type {Formulation} from '../types';
import type {HostProblem} from './host';
import {hostDualPlan, type HostSemidualEval} from './host-evaluate';
import {ProjectionScratch} from './host-projection';

const f32 = Math.fround;

/**
 * Host results of a solve, all groups, internal layout: `planT [groups, ni, mi]`, `alpha [groups,
 * mi]`, `beta [groups, ni]`, `value [groups]` (float32 values; `planT` and `alpha` may be views of
 * the WebAssembly solver's output, read before its next solve).
 */
export interface HostSolution {
  planT: Float64Array | Float32Array;
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
