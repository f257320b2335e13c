/**
 * A differentiable k-sparse OT solver: semi-dual Newton iterations on the plan's support, written
 * in ordinary differentiable tfjs ops so that autodiff goes through every iteration ("unrolling").
 *
 * Semi-dual, column sparsity (rows = tokens, columns = experts). At the row potentials alpha:
 * `x_j = (alpha - C[:, j]) / (gamma b_j)`, `y_j = P_k(x_j)` (keep the k largest entries, project
 * them onto the simplex), plan `T[:, j] = b_j y_j`, gradient of the semi-dual `g = a - T 1`.
 * A Newton step solves `H d = g` with `gamma H = D - M S^+ M^T` on the current support M and sets
 * `alpha <- alpha + t d`. The semi-dual is piecewise quadratic, so once the support is right one
 * full step lands on the optimum, and the unrolled derivative of the last iterate is the implicit
 * one (the Newton map's Jacobian in alpha vanishes on the range of H).
 *
 * Step size t: a line search on the device over `stepSizes` (default 1, 1/2, 1/4, 1/8, then 0)
 * takes the largest step that raises the semi-dual value, or keeps it within float32 rounding on
 * an unchanged support. So the iterates converge to a point (the value never decreases, and at
 * a kink where no step helps they stop), which is what unrolling needs.
 *
 * In the routing regime (k < m) Newton from zero can stop at a kink below the optimum: there,
 * start it from another solver's potentials (`init`, as `SparseOTRouter` does). Unrolled and
 * implicit derivatives agree in the smooth regime only; at a kink where every step is rejected,
 * the unrolled derivative is that of the plan with the potentials held fixed.
 *
 * What autodiff sees: the support masks (which entries are in the top k and above the simplex
 * threshold) are constants, computed untaped under `noGrad`; the projection on a fixed support
 * is `y = S * (x - tau)`, `tau = (sum_S x - 1) / |S|` (the core's `projectRows`, through the one
 * semi-dual evaluation `evalSemidual`), which is differentiable;
 * the Newton direction is a fixed number of conjugate-gradient iterations (differentiated through
 * as well). Tokens outside every column's support (a zero row of H) take a plain gradient step
 * `d_i = gamma g_i` instead, which raises their potential until some expert takes them.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, ShapeError, assertPositiveInt} from '../../core/errors';
import {checkOptions} from '../../core/options';
import {noGrad, positiveMask, stopGradient} from '../../core/stop-gradient';
import {sparseOTProblem} from '../problem';
import {evalSemidual, type SemidualEval} from '../semidual';
import {solveSupportSystem, supportGraph} from '../support-graph';
import type {MarginalLike, Sparsity} from '../types';

/**
 * Options of {@link unrolledSparseOT}.
 *
 * @example
 * ```ts
 * const options: UnrolledSparseOTOptions = {k: 8, gamma: 1, iterations: 10};
 * ```
 */
export interface UnrolledSparseOTOptions {
  /** At most k nonzeros per column (or per row with `sparsity: 'row'`). */
  k: number;
  /** Regularization strength gamma > 0. Default 1. */
  gamma?: number;
  /** Row marginal: a number, or `<float32>[m]` / `[groups, m]`. Default 1. */
  a?: MarginalLike;
  /** Column marginal: a number, or `<float32>[n]` / `[groups, n]`. Default `m / n`. */
  b?: MarginalLike;
  /** Default `'column'`; `'row'` solves the transposed problem (potentials per column). */
  sparsity?: Sparsity;
  /** Newton iterations, all of them differentiated through. Default 10. */
  iterations?: number;
  /**
   * Newton step sizes tried by the monotone line search (the largest semi-dual value wins; 0 is
   * always a candidate). Default `[1, 0.5, 0.25, 0.125]`. `[1]` gives pure Newton steps where
   * they increase the value.
   */
  stepSizes?: number[];
  /** CG iterations per Newton step. Default `2 * n + 10` (n = number of columns). */
  cgIterations?: number;
  /**
   * Starting potentials `<float32>[m]` or `[groups, m]` (per column with `sparsity: 'row'`),
   * e.g. another solver's `alpha`. Treated as a constant. Default 0.
   */
  init?: tf.Tensor;
}

/**
 * The output of {@link unrolledSparseOT}; the caller owns (and disposes) both tensors.
 *
 * @example
 * ```ts
 * const {plan, alpha} = unrolledSparseOT(cost, {k: 4});
 * tf.dispose([plan, alpha]);
 * ```
 */
export interface UnrolledSparseOTResult {
  /** `<float32>` plan of the cost's shape, differentiable in the cost by autodiff. */
  plan: tf.Tensor;
  /** `<float32>[m]` or `[groups, m]` (per column with row sparsity): the last potentials. */
  alpha: tf.Tensor;
}

const CONTEXT = 'unrolledSparseOT';

/** Every key of {@link UnrolledSparseOTOptions} (the compiler keeps the list complete). */
const UNROLLED_OPTION_KEYS: readonly string[] = Object.keys({
  k: true, gamma: true, a: true, b: true, sparsity: true, iterations: true, stepSizes: true, cgIterations: true, init: true,
} satisfies Record<keyof UnrolledSparseOTOptions, true>);

/** Default Newton step sizes tried by the line search (0 is always tried as well). */
const DEFAULT_STEPS = [1, 0.5, 0.25, 0.125];

/** `[g, 1]`: 1 where two plans `[g, ...]` have the same support. */
const sameSupport = noGrad((p: tf.Tensor, q: tf.Tensor) =>
  tf.cast(tf.all(tf.equal(tf.greater(p, 0), tf.greater(q, 0)), [1, 2], true), 'float32').reshape([-1, 1]));

/**
 * Per group, the first candidate step that raises the value by more than rounding, or keeps it
 * within rounding on an unchanged support.
 */
const pickStep = noGrad((values: tf.Tensor, current: tf.Tensor, same: tf.Tensor, candidates: tf.Tensor) => {
  const slack = tf.mul(1e-6, tf.add(1, tf.abs(current)));
  const better = tf.logicalAnd(tf.greater(values, tf.add(current, slack)), tf.isFinite(values));
  const tie = tf.logicalAnd(tf.greaterEqual(values, tf.sub(current, slack)), tf.greater(same, 0));
  const acceptable = tf.cast(tf.logicalOr(better, tie), 'float32');
  const first = tf.argMax(acceptable, 1); // argMax returns the first maximum
  return tf.reshape(tf.gather(candidates, first), [-1, 1]);
});

/**
 * Solves the k-sparse semi-dual by Newton iterations on the support, differentiably: the
 * returned plan carries autodiff gradients through all `iterations` steps. Use it for the
 * `'unrolled'` gradient mode, or as a check of the implicit gradient (the two agree in the
 * smooth regime once the iterations have converged). The problem is built (and validated) by
 * `sparseOTProblem` with the ordinary, differentiable ops.
 *
 * @param cost `<float32>[m, n]` or `<float32>[groups, m, n]`.
 * @returns the plan `<float32>` of the cost's shape and the potentials.
 *
 * @example
 * ```ts
 * const loss = (c: tf.Tensor) => tf.tidy(() => {
 *   const {plan, alpha} = unrolledSparseOT(c, {k: 8, gamma: 1, iterations: 8});
 *   alpha.dispose();
 *   return tf.sum(tf.mul(plan, weights));
 * });
 * const dCost = tf.grad(loss)(cost); // <float32>[m, n]
 * ```
 */
export function unrolledSparseOT(cost: tf.Tensor, options: UnrolledSparseOTOptions): UnrolledSparseOTResult {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidArgumentError('options', 'an object with at least k', options, CONTEXT);
  }
  checkOptions(options, UNROLLED_OPTION_KEYS, CONTEXT);
  const k = assertPositiveInt('k', options.k, CONTEXT);
  const iterations = assertPositiveInt('iterations', options.iterations ?? 10, CONTEXT, 0);
  if (options.cgIterations !== undefined) assertPositiveInt('cgIterations', options.cgIterations, CONTEXT, 0);
  return tf.tidy(() => {
    const problem = sparseOTProblem(cost, {k, gamma: options.gamma, a: options.a, b: options.b, sparsity: options.sparsity}, CONTEXT);
    const {costT, a, b, gamma, groups: g, mi: m} = problem;
    let alpha: tf.Tensor2D;
    if (options.init) {
      const init = options.init;
      const ok = (init.rank === 1 && init.shape[0] === m) || (init.rank === 2 && init.shape[0] === g && init.shape[1] === m);
      if (!ok) throw new ShapeError('init', `a tensor of shape [${m}] or [${g}, ${m}]`, init.shape, CONTEXT);
      alpha = stopGradient(tf.broadcastTo(tf.reshape(tf.cast(init, 'float32'), [-1, m]), [g, m]) as tf.Tensor2D);
    } else {
      alpha = tf.zeros([g, m]);
    }
    const evalAt = (al: tf.Tensor2D): SemidualEval => evalSemidual(al, costT, a, b, k, gamma);
    const candidates = [...(options.stepSizes ?? DEFAULT_STEPS), 0];
    for (let it = 0; it < iterations; it++) {
      const ev = evalAt(alpha);
      const graph = supportGraph(tf.transpose(ev.support, [0, 2, 1]) as tf.Tensor3D);
      const [newton] = solveSupportSystem(graph, -1, tf.mul(ev.grad, gamma) as tf.Tensor2D,
        tf.zerosLike(graph.size) as tf.Tensor2D, 'experts', options.cgIterations, 1e-7);
      // Tokens in no support (a zero row of H) take a plain gradient step.
      const held = positiveMask(graph.deg);
      const step = tf.add(tf.mul(tf.sub(1, held), tf.mul(ev.grad, gamma)), tf.mul(held, newton)) as tf.Tensor2D;
      // Line search, decided on the device: the step size (a constant for autodiff) is the
      // largest candidate that either raises the semi-dual value, or keeps it (up to float32
      // rounding) without changing the support; 0 is the last candidate, so the iterates stop at
      // a kink instead of wandering along it. Accepting the full step at ties on an unchanged
      // support keeps Newton's derivative once the iterates have converged.
      const current = tf.reshape(ev.value, [g, 1]);
      const values: tf.Tensor[] = [];
      const same: tf.Tensor[] = [];
      for (const t of candidates) {
        if (t === 0) {
          values.push(current);
          same.push(tf.ones([g, 1]));
          continue;
        }
        const evT = evalAt(tf.add(alpha, tf.mul(t, step)) as tf.Tensor2D);
        values.push(tf.reshape(evT.value, [g, 1]));
        same.push(sameSupport(evT.planT, ev.planT));
      }
      const chosen = pickStep(tf.concat(values, 1), current, tf.concat(same, 1), tf.tensor1d(candidates));
      alpha = tf.add(alpha, tf.mul(chosen, step)) as tf.Tensor2D;
    }
    const planT = evalAt(alpha).planT;
    const plan3 = problem.columnSparse ? tf.transpose(planT, [0, 2, 1]) : planT;
    const batched = problem.batched;
    return {plan: batched ? plan3 : tf.squeeze(plan3, [0]), alpha: batched ? alpha : tf.squeeze(alpha, [0])};
  });
}
