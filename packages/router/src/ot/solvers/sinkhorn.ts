/**
 * The `sinkhorn` solver: entropic optimal transport by log-domain Sinkhorn iterations (Cuturi
 * 2013; stabilized as in Schmitzer 2019 / ott-jax) on the same problem without its bound k:
 * potentials `f`, `g` with plan `P = exp((f_i + g_j - C_ij) / eps)`, updated by
 * `f = eps log a - eps LSE_j((g_j - C_ij) / eps)` then `g = eps log b - eps LSE_i((f_i - C_ij) / eps)`.
 * Every log-sum-exp subtracts its maximum, so small epsilon neither overflows nor underflows.
 * Each group whose largest row violation fell below the tolerance at a check is frozen there.
 */
import * as tf from '@tensorflow/tfjs';
import {assertPositiveNumber} from '../../core/errors';
import {makeOutput, type SparseOTOutput} from '../output';
import type {SparseOTProblem} from '../problem';
import {GroupConvergence} from './convergence';
import {iterationConfig, readStart, SolverBase, type SolverInit} from './solver';

/**
 * Configuration of the {@link sinkhornSolver}.
 *
 * @example
 * ```ts
 * const config: SinkhornSolverConfig = {epsilon: 0.1, maxIterations: 50};
 * ```
 */
export interface SinkhornSolverConfig {
  /** Entropic regularization strength, > 0. Default 0.05. Log-domain updates stay stable for small values. */
  epsilon?: number;
  /** Iteration budget (one iteration updates f, then g). Default 500. */
  maxIterations?: number;
  /**
   * A group is done when its largest row-sum violation relative to `a` (the columns are exact
   * after every g update) is at most this. Default 1e-4.
   */
  tolerance?: number;
  /** Check every this many iterations. Default 10. */
  checkEvery?: number;
}

const SINKHORN_KEYS = ['epsilon', 'maxIterations', 'tolerance', 'checkEvery'] as const;

/**
 * The Sinkhorn solver. Use {@link sinkhornSolver} to create one. Its output's potentials are
 * `f` (as `alpha`) and `g` (as `beta`), its value the entropic dual objective
 * `<f, a> + <g, b> - eps * sum(P) + eps * sum(a)`.
 *
 * @example
 * ```ts
 * const out = new SinkhornSolver({epsilon: 0.1}).solve(sparseOTProblem(tf.neg(logits)));
 * ```
 */
export class SinkhornSolver extends SolverBase<Required<SinkhornSolverConfig>> {
  readonly name = 'sinkhorn' as const;

  constructor(config: SinkhornSolverConfig = {}) {
    const {maxIterations, tolerance, checkEvery} = iterationConfig(config, SINKHORN_KEYS, {maxIterations: 500, tolerance: 1e-4, checkEvery: 10}, 'sinkhorn');
    super({epsilon: assertPositiveNumber('epsilon', config.epsilon ?? 0.05, 'sinkhorn'), maxIterations, tolerance, checkEvery});
  }

  solve(problem: SparseOTProblem, init?: SolverInit): SparseOTOutput {
    const {groups, m, n, hostReads} = problem;
    const {epsilon: eps, maxIterations, tolerance, checkEvery} = this.config;
    const c = problem.cost;
    const a = problem.rowMarginal;
    const b = problem.columnMarginal;
    const start = readStart(problem, init);
    // Internal starts are column-sparse-oriented; Sinkhorn works in the caller's orientation.
    const f0 = problem.columnSparse ? start.alpha : start.beta;
    const g0 = problem.columnSparse ? start.beta : start.alpha;
    // log of a zero marginal is -Infinity: that row or column gets potential -Infinity and no mass;
    // clamp so that the arithmetic stays finite (exp underflows to exactly 0).
    const logA = tf.tidy(() => tf.maximum(tf.log(a), -1e30));
    const logB = tf.tidy(() => tf.maximum(tf.log(b), -1e30));
    let f = f0 ?? (tf.zeros([groups, m]) as tf.Tensor2D);
    let g = g0 ?? (tf.zeros([groups, n]) as tf.Tensor2D);
    const updateF = (gg: tf.Tensor2D): tf.Tensor2D => tf.tidy(() =>
      tf.mul(tf.sub(logA, tf.logSumExp(tf.div(tf.sub(tf.reshape(gg, [groups, 1, n]), c), eps), 2)), eps) as tf.Tensor2D);
    const updateG = (ff: tf.Tensor2D): tf.Tensor2D => tf.tidy(() =>
      tf.mul(tf.sub(logB, tf.logSumExp(tf.div(tf.sub(tf.reshape(ff, [groups, m, 1]), c), eps), 1)), eps) as tf.Tensor2D);
    const planOf = (ff: tf.Tensor2D, gg: tf.Tensor2D): tf.Tensor3D => tf.tidy(() =>
      tf.exp(tf.div(tf.sub(tf.add(tf.reshape(ff, [groups, m, 1]), tf.reshape(gg, [groups, 1, n])), c), eps)) as tf.Tensor3D);
    // A group is done once its largest relative row violation is at most the tolerance.
    const rowViolation = (): tf.Tensor1D => tf.tidy(() => {
      const rows = tf.sum(planOf(f, g), 2);
      return tf.max(tf.div(tf.abs(tf.sub(rows, a)), tf.where(tf.greater(a, 0), a, tf.onesLike(a))), 1) as tf.Tensor1D;
    });
    const zero = tf.zeros([groups]) as tf.Tensor1D;
    const conv = new GroupConvergence(zero, tolerance, hostReads);
    zero.dispose();
    let iterations = 0;
    for (let it = 1; it <= maxIterations; it++) {
      iterations = it;
      const fN = tf.tidy(() => conv.freeze(updateF(g), f));
      const gN = tf.tidy(() => conv.freeze(updateG(fN), g));
      tf.dispose([f, g]);
      f = fN;
      g = gN;
      if (it % checkEvery === 0 || it === maxIterations) {
        const small = tf.tidy(() => tf.lessEqual(rowViolation(), tolerance));
        conv.markDone(small);
        small.dispose();
        if (conv.allDone()) break;
      }
    }
    const converged = conv.allDone();
    conv.dispose();
    const plan3 = planOf(f, g);
    const value = tf.tidy(() => tf.add(
      tf.sub(tf.add(tf.sum(tf.mul(f, a), 1), tf.sum(tf.mul(g, b), 1)), tf.mul(eps, tf.sum(plan3, [1, 2]))),
      tf.mul(eps, tf.sum(a, 1)),
    ) as tf.Tensor1D);
    tf.dispose([logA, logB]);
    // makeOutput takes the internal layout: transpose back for a column-sparse problem.
    const planInt = problem.columnSparse ? tf.transpose(plan3, [0, 2, 1]) as tf.Tensor3D : plan3;
    if (planInt !== plan3) plan3.dispose();
    const [alphaInt, betaInt] = problem.columnSparse ? [f, g] : [g, f];
    return makeOutput(problem, planInt, alphaInt, betaInt, value, iterations, converged);
  }
}

/**
 * Creates a {@link SinkhornSolver} (entropic OT; the problem's k and gamma are not used).
 *
 * @example
 * ```ts
 * const out = sinkhornSolver({epsilon: 0.1, maxIterations: 50}).solve(sparseOTProblem(tf.neg(logits)));
 * const assignment = tf.argMax(out.plan, 1); // balanced token -> expert assignment
 * ```
 */
export function sinkhornSolver(config: SinkhornSolverConfig = {}): SinkhornSolver {
  return new SinkhornSolver(config);
}
