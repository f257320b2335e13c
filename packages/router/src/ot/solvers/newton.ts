/**
 * The `newton` solver: damped Newton (Levenberg-Marquardt) ascent on the semi-dual, on the
 * supports of the k-sparse projections; the default where the objective is smooth (k >= m).
 *
 * The semi-dual is concave and piecewise quadratic: while every column's support stays fixed,
 * `S` is a quadratic with Hessian `-H`, `gamma H = D - M S^+ M^T` (the support graph's token
 * Laplacian, implicit-gradients.md). Each iteration solves `(H + mu I) d = grad S` matrix-free
 * with a few steps of the core's preconditioned conjugate gradients, tries `alpha + d`, and keeps
 * it only where the objective increased (per group, on the device; near the optimum also where
 * the value holds to float32 rounding and the gradient shrinks); the damping `mu` shrinks after a
 * success and grows after a failure. Ascent is therefore monotone; the `mu I` term also moves
 * rows that sit in no support (their row of `H` is zero) along the gradient. Every `checkEvery`
 * iterations each group whose value settled is frozen (see convergence.ts).
 *
 * On cpu / wasm / tensorflow (host reads allowed) the same algorithm runs on host arrays, group
 * by group (host-newton.ts): one iteration here is ~300 tiny kernels (10 CG steps of ~25).
 */
import * as tf from '@tensorflow/tfjs';
import {assertPositiveInt} from '../../core/errors';
import {conjugateGradient} from '../linalg/cg';
import type {SparseOTOutput} from '../output';
import type {SparseOTProblem} from '../problem';
import {disposeEval, evalSemidual, selectEval, type SemidualEval} from '../semidual';
import {safeInverse, supportGraph, tokenLaplacian} from '../support-graph';
import type {Formulation} from '../types';
import {GroupConvergence, whereGroups} from './convergence';
import {useHostPath} from './host';
import {solveNewtonHost} from './host-newton';
import {iterationConfig, readStart, semidualOutput, SolverBase, startingAlpha, type SolverInit} from './solver';

/**
 * Configuration of the {@link newton} solver.
 *
 * @example
 * ```ts
 * const config: NewtonSolverConfig = {maxIterations: 30, cgIterations: 10};
 * ```
 */
export interface NewtonSolverConfig {
  /** Newton iterations at most. Default 30. */
  maxIterations?: number;
  /** A group is done when its value changed by at most `tolerance * max(1, |value|)` since the last check. Default 1e-5. */
  tolerance?: number;
  /** Conjugate-gradient steps per Newton step. Default 10. */
  cgIterations?: number;
  /** Check convergence every this many iterations. Default 5. */
  checkEvery?: number;
  /** `'semidual'` (default) or `'dual'`: the plan and value reported at the implied dual pair. */
  formulation?: Formulation;
}

const NEWTON_KEYS = ['maxIterations', 'tolerance', 'cgIterations', 'checkEvery', 'formulation'] as const;

/**
 * `<float32>[groups, m]`: the damped Newton direction, `(H + mu I) d = grad`, by
 * `iterations` steps of Jacobi-preconditioned CG.
 *
 * @param ev the evaluation at the current potentials. @param mu `<float32>[groups, 1]`.
 */
function newtonDirection(ev: SemidualEval, mu: tf.Tensor2D, gamma: number, iterations: number): tf.Tensor2D {
  return tf.tidy(() => {
    const lap = tokenLaplacian(supportGraph(tf.transpose(ev.support, [0, 2, 1]) as tf.Tensor3D));
    const apply = (v: tf.Tensor2D): tf.Tensor2D => tf.add(tf.div(lap.apply(v), gamma), tf.mul(mu, v)) as tf.Tensor2D;
    const preconditioner = safeInverse(tf.add(tf.div(lap.diag, gamma), mu) as tf.Tensor2D);
    return conjugateGradient(apply, ev.grad, {iterations, preconditioner});
  });
}

/**
 * The Newton solver. Use {@link newton} to create one.
 *
 * @example
 * ```ts
 * const out = new NewtonSolver().solve(sparseOTProblem(cost, {k: 64})); // cost <float32>[64, 8]
 * ```
 */
export class NewtonSolver extends SolverBase<Required<NewtonSolverConfig>> {
  readonly name = 'newton' as const;

  constructor(config: NewtonSolverConfig = {}) {
    const shared = iterationConfig(config, NEWTON_KEYS, {maxIterations: 30, tolerance: 1e-5, checkEvery: 5}, 'newton');
    super({...shared, cgIterations: assertPositiveInt('cgIterations', config.cgIterations ?? 10, 'newton')});
  }

  solve(problem: SparseOTProblem, init?: SolverInit): SparseOTOutput {
    const {costT, a, b, k, gamma, groups} = problem;
    const {maxIterations, tolerance, cgIterations, checkEvery} = this.config;
    if (useHostPath(problem)) return solveNewtonHost(problem, init, this.config);
    const start = readStart(problem, init);
    let alpha = startingAlpha(problem, start);
    tf.dispose([start.alpha, start.beta].filter((t): t is tf.Tensor2D => t !== undefined));
    let ev = evalSemidual(alpha, costT, a, b, k, gamma);
    // Initial damping: a tenth of the mean diagonal of H (about (supports per row) / gamma).
    let mu = tf.tidy(() => tf.reshape(tf.maximum(tf.mul(tf.div(tf.mean(tf.sum(ev.support, 1), 1), gamma), 0.1), 1e-6 / gamma), [groups, 1])) as tf.Tensor2D;
    const conv = new GroupConvergence(ev.value, tolerance, problem.hostReads);
    let iterations = 0;
    for (let it = 1; it <= maxIterations; it++) {
      iterations = it;
      const d = newtonDirection(ev, mu, gamma, cgIterations);
      const trial = tf.add(alpha, d) as tf.Tensor2D;
      d.dispose();
      const evT = evalSemidual(trial, costT, a, b, k, gamma);
      // Accept an increase of the value; near the optimum, where float32 cannot resolve the value's
      // change any more, also accept a step that keeps the value (to rounding) and shrinks the
      // gradient. Groups that are done keep everything.
      const acc = tf.tidy(() => {
        const slack = tf.mul(tf.maximum(tf.abs(ev.value), 1), 5e-7);
        const flat = tf.greaterEqual(evT.value, tf.sub(ev.value, slack));
        const shrinks = tf.less(tf.sum(tf.square(evT.grad), 1), tf.sum(tf.square(ev.grad), 1));
        const better = tf.logicalOr(tf.greater(evT.value, ev.value), tf.logicalAnd(flat, shrinks));
        return tf.logicalAnd(better, tf.logicalNot(conv.done));
      });
      const next = selectEval(acc, evT, ev);
      const alphaN = whereGroups(acc, trial, alpha);
      const muN = tf.tidy(() => {
        const stepped = tf.where(tf.reshape(acc, [groups, 1]), tf.maximum(tf.mul(mu, 0.3), 1e-8 / gamma), tf.minimum(tf.mul(mu, 5), 1e8 / gamma));
        return conv.freeze(stepped as tf.Tensor2D, mu);
      });
      disposeEval(evT);
      disposeEval(ev);
      tf.dispose([trial, alpha, mu, acc]);
      ev = next;
      alpha = alphaN;
      mu = muN;
      if (it % checkEvery === 0) {
        conv.check(ev.value);
        if (conv.allDone()) break;
      }
    }
    const converged = conv.allDone();
    tf.dispose([mu]);
    conv.dispose();
    return semidualOutput(problem, alpha, ev, iterations, converged, this.config.formulation);
  }
}

/**
 * Creates a {@link NewtonSolver}: damped Newton steps on the support, fast where the objective
 * is smooth (k >= m).
 *
 * @example
 * ```ts
 * const out = newton({maxIterations: 50}).solve(sparseOTProblem(cost, {k: 64}));
 * ```
 */
export function newton(config: NewtonSolverConfig = {}): NewtonSolver {
  return new NewtonSolver(config);
}
