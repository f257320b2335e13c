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
 * threshold) are constants, computed untaped under {@link noGrad}; the projection on a
 * fixed support is `y = S * (x - tau)`, `tau = (sum_S x - 1) / |S|`, which is differentiable;
 * the Newton direction is a fixed number of conjugate-gradient iterations (differentiated through
 * as well). Tokens outside every column's support (a zero row of H) take a plain gradient step
 * `d_i = gamma g_i` instead, which raises their potential until some expert takes them.
 */
import * as tf from '@tensorflow/tfjs';

import {ShapeError, assertOneOf, assertPositiveInt, assertPositiveNumber} from '../core/errors';
import {solveSupportSystem, supportGraph} from './implicit';
import {noGrad, stopGradient} from '../core/stop-gradient';
import type {Sparsity} from './types';

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
  a?: number | tf.Tensor;
  /** Column marginal: a number, or `<float32>[n]` / `[groups, n]`. Default `m / n`. */
  b?: number | tf.Tensor;
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

/**
 * The support of the k-sparse simplex projection `P_k(x)` of every column of `x <float32>[g, m,
 * n]`: 1 where the entry is among the column's k largest and above the simplex threshold. The
 * result is a constant for autodiff.
 */
function projectionSupport(x: tf.Tensor3D, k: number): tf.Tensor3D {
  return noGrad((xs: tf.Tensor) => {
    const [g, m, n] = xs.shape as [number, number, number];
    const kk = Math.min(k, m);
    const cols = tf.transpose(xs, [0, 2, 1]); // [g, n, m]
    const {values: top, indices} = tf.topk(cols, kk, true); // [g, n, kk], sorted descending
    // Sparsemax threshold on the sorted top values: rho = max{r : 1 + r v_r > sum_{l<=r} v_l}.
    const cums = tf.cumsum(top, 2);
    const ranks = tf.reshape(tf.range(1, kk + 1, 1, 'float32'), [1, 1, kk]);
    const ok = tf.greater(tf.add(1, tf.mul(ranks, top)), cums);
    const rho = tf.max(tf.mul(tf.cast(ok, 'float32'), ranks), 2, true); // [g, n, 1], >= 1
    const cumAtRho = tf.sum(tf.mul(cums, tf.cast(tf.equal(ranks, rho), 'float32')), 2, true);
    const tau = tf.div(tf.sub(cumAtRho, 1), rho); // [g, n, 1]
    // Exactly the k entries topk chose (ties broken by the lowest index, as lax.top_k does),
    // scattered into a [g, n, m] mask; then those above the threshold.
    const gi = tf.tile(tf.reshape(tf.range(0, g, 1, 'int32'), [g, 1, 1]), [1, n, kk]);
    const ni = tf.tile(tf.reshape(tf.range(0, n, 1, 'int32'), [1, n, 1]), [g, 1, kk]);
    const coords = tf.reshape(tf.stack([gi, ni, indices], 3), [g * n * kk, 3]);
    const inTop = tf.scatterND(coords, tf.ones([g * n * kk]), [g, n, m]);
    const keep = tf.logicalAnd(tf.greater(cols, tau), tf.greater(inTop, 0));
    return tf.transpose(tf.cast(keep, 'float32'), [0, 2, 1]);
  })(x) as tf.Tensor3D;
}

/** Default Newton step sizes tried by the line search (0 is always tried as well). */
const DEFAULT_STEPS = [1, 0.5, 0.25, 0.125];

/** `[g, 1]`: 1 where two plans `[g, m, n]` have the same support. */
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

/** 1 where x > 0, as a constant. */
const positive = noGrad((x: tf.Tensor) => tf.cast(tf.greater(x, 0), 'float32'));

/** 1 where x = 0, as a constant. */
const isZero = noGrad((x: tf.Tensor) => tf.cast(tf.equal(x, 0), 'float32'));

/**
 * The k-sparse simplex projection of each column of `x`, differentiable with its support held
 * fixed: `y = S * (x - tau)`, `tau = (sum_S x - 1) / |S|`. Its Jacobian is `P_j` of the notes.
 *
 * @param x `<float32>[groups, m, n]`.
 * @param k keep at most k entries per column.
 * @returns `<float32>[groups, m, n]`: every column is in the simplex with at most k nonzeros.
 *
 * @example
 * ```ts
 * // Column [0.5, 0.3, -1]: with k = 2, tau = (0.5 + 0.3 - 1) / 2 = -0.1, y = [0.6, 0.4, 0].
 * const y = kSparseProjectionFixedSupport(tf.tensor3d([[[0.5], [0.3], [-1]]]), 2);
 * ```
 */
export function kSparseProjectionFixedSupport(x: tf.Tensor3D, k: number): tf.Tensor3D {
  assertPositiveInt('k', k, 'kSparseProjectionFixedSupport');
  return tf.tidy(() => {
    const support = projectionSupport(x, k);
    const size = tf.maximum(tf.sum(support, 1, true), 1);
    const tau = tf.div(tf.sub(tf.sum(tf.mul(support, x), 1, true), 1), size);
    return tf.mul(support, tf.sub(x, tau)) as tf.Tensor3D;
  });
}

function marginal(value: number | tf.Tensor | undefined, fallback: number, g: number, len: number, name: string): tf.Tensor2D {
  if (value === undefined) return tf.fill([g, len], fallback) as tf.Tensor2D;
  if (typeof value === 'number') {
    assertPositiveNumber(name, value, CONTEXT);
    return tf.fill([g, len], value) as tf.Tensor2D;
  }
  if (value.rank === 1 && value.shape[0] === len) return tf.tile(tf.reshape(value, [1, len]), [g, 1]).toFloat() as tf.Tensor2D;
  if (value.rank === 2 && value.shape[0] === g && value.shape[1] === len) return value.toFloat() as tf.Tensor2D;
  throw new ShapeError(name, `a number or a tensor of shape [${len}] or [${g}, ${len}]`, value.shape, CONTEXT);
}

/**
 * Solves the k-sparse semi-dual by Newton iterations on the support, differentiably: the
 * returned plan carries autodiff gradients through all `iterations` steps. Use it for the
 * `'unrolled'` gradient mode, or as a check of the implicit gradient (the two agree in the
 * smooth regime once the iterations have converged).
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
  const k = assertPositiveInt('k', options.k, CONTEXT);
  const gamma = assertPositiveNumber('gamma', options.gamma ?? 1, CONTEXT);
  const sparsity = assertOneOf('sparsity', options.sparsity ?? 'column', ['column', 'row'] as const, CONTEXT);
  const iterations = assertPositiveInt('iterations', options.iterations ?? 10, CONTEXT, 0);
  if (cost.rank !== 2 && cost.rank !== 3) {
    throw new ShapeError('cost', 'a tensor of rank 2 [m, n] or rank 3 [groups, m, n]', cost.shape, CONTEXT);
  }
  if (options.cgIterations !== undefined) assertPositiveInt('cgIterations', options.cgIterations, CONTEXT, 0);
  const out = tf.tidy(() => {
    let c3 = (cost.rank === 2 ? tf.expandDims(cost, 0) : cost).toFloat() as tf.Tensor3D;
    let aIn = options.a;
    let bIn = options.b;
    if (sparsity === 'row') {
      c3 = tf.transpose(c3, [0, 2, 1]);
      [aIn, bIn] = [bIn, aIn];
    }
    const [g, m, n] = c3.shape;
    // With row sparsity the defaults stay "1 per token, m / n per expert" of the original problem.
    const a = marginal(aIn, sparsity === 'row' ? n / m : 1, g, m, sparsity === 'row' ? 'b' : 'a');
    const b = marginal(bIn, sparsity === 'row' ? 1 : m / n, g, n, sparsity === 'row' ? 'a' : 'b');
    let alpha: tf.Tensor2D;
    if (options.init) {
      const init = options.init;
      const ok = (init.rank === 1 && init.shape[0] === m) || (init.rank === 2 && init.shape[0] === g && init.shape[1] === m);
      if (!ok) throw new ShapeError('init', `a tensor of shape [${m}] or [${g}, ${m}]`, init.shape, CONTEXT);
      alpha = stopGradient(tf.reshape(init.toFloat(), [init.rank === 1 ? 1 : g, m]).tile([init.rank === 1 ? g : 1, 1]) as tf.Tensor2D);
    } else {
      alpha = tf.zeros([g, m]);
    }
    const scale = tf.expandDims(tf.mul(b, gamma), 1); // [g, 1, n]
    const planAt = (al: tf.Tensor2D): tf.Tensor3D => {
      const x = tf.div(tf.sub(tf.expandDims(al, 2), c3), scale) as tf.Tensor3D;
      return tf.mul(tf.expandDims(b, 1), kSparseProjectionFixedSupport(x, k)) as tf.Tensor3D;
    };
    // Semi-dual value from a plan at alpha: <alpha, a> - <T, alpha 1^T - C> + (gamma / 2) ||T||^2.
    const valueAt = (al: tf.Tensor2D, plan: tf.Tensor3D): tf.Tensor2D =>
      tf.add(tf.sub(tf.sum(tf.mul(al, a), 1, true), tf.sum(tf.mul(plan, tf.sub(tf.expandDims(al, 2), c3)), [1, 2])
        .reshape([g, 1])), tf.mul(gamma / 2, tf.sum(tf.square(plan), [1, 2]).reshape([g, 1]))) as tf.Tensor2D;
    const steps = options.stepSizes ?? DEFAULT_STEPS;
    for (let it = 0; it < iterations; it++) {
      const plan = planAt(alpha);
      const grad = tf.sub(a, tf.sum(plan, 2)) as tf.Tensor2D;
      const mask = positive(plan) as tf.Tensor3D;
      const graph = supportGraph(mask);
      const [newton] = solveSupportSystem(graph, -1, tf.mul(grad, gamma) as tf.Tensor2D,
        tf.zerosLike(graph.size) as tf.Tensor2D, 'experts', options.cgIterations, 1e-7);
      const isolated = isZero(graph.deg);
      const step = tf.add(tf.mul(isolated, tf.mul(grad, gamma)), tf.mul(tf.sub(1, isolated), newton)) as tf.Tensor2D;
      // Line search, decided on the device: the step size (a constant for autodiff) is the
      // largest candidate that either raises the semi-dual value, or keeps it (up to float32
      // rounding) without changing the support; 0 is the last candidate, so the iterates stop at
      // a kink instead of wandering along it. Accepting the full step at ties on an unchanged
      // support keeps Newton's derivative once the iterates have converged.
      const candidates = [...steps, 0];
      const current = valueAt(alpha, plan);
      const values: tf.Tensor2D[] = [];
      const same: tf.Tensor2D[] = [];
      for (const t of candidates) {
        if (t === 0) {
          values.push(current);
          same.push(tf.ones([g, 1]));
          continue;
        }
        const al = tf.add(alpha, tf.mul(t, step)) as tf.Tensor2D;
        const p = planAt(al);
        values.push(valueAt(al, p));
        same.push(sameSupport(p, plan) as tf.Tensor2D);
      }
      const chosen = pickStep(tf.concat(values, 1), current, tf.concat(same, 1), tf.tensor1d(candidates)) as tf.Tensor2D;
      alpha = tf.add(alpha, tf.mul(chosen, step)) as tf.Tensor2D;
    }
    let plan: tf.Tensor = planAt(alpha);
    if (sparsity === 'row') plan = tf.transpose(plan, [0, 2, 1]);
    if (cost.rank === 2) {
      plan = tf.squeeze(plan, [0]);
      alpha = tf.squeeze(alpha, [0]) as unknown as tf.Tensor2D;
    }
    return {plan, alpha};
  });
  return out;
}

