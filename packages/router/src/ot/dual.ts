/**
 * The dual of k-sparse OT (column sparsity), maximized over `(alpha, beta)`:
 * `D(alpha, beta) = <alpha, a> + <beta, b> - sum_j f_k(alpha + beta_j - C[:, j])` with
 * `f_k(s) = (1 / (2 gamma)) * sum of [s_i]_+^2 over the k largest entries of s`.
 * Plan `T[:, j] = [s_j]_+ / gamma` on the top-k entries of `s_j`, gradients `a - T 1`, `b - T^T 1`.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, ShapeError, assertPositiveInt, assertPositiveNumber} from '../core/errors';
import {topkMask} from './projection';

/** One evaluation of the dual in the internal layout. */
export interface DualEval {
  /** `<float32>[groups, n, m]`: the plan, transposed. */
  planT: tf.Tensor3D;
  /** `<float32>[groups, m]`: `a - T 1`. */
  gradAlpha: tf.Tensor2D;
  /** `<float32>[groups, n]`: `b - T^T 1`. */
  gradBeta: tf.Tensor2D;
  /** `<float32>[groups]`: `D(alpha, beta)`. */
  value: tf.Tensor1D;
}

/**
 * Evaluates the dual, its gradients and plan, batched over groups.
 *
 * @param alpha `<float32>[groups, m]` @param beta `<float32>[groups, n]`
 * @param costT `<float32>[groups, n, m]` @param a `<float32>[groups, m]` @param b `<float32>[groups, n]`
 */
export function evalDual(
  alpha: tf.Tensor2D, beta: tf.Tensor2D, costT: tf.Tensor3D, a: tf.Tensor2D, b: tf.Tensor2D, k: number, gamma: number,
): DualEval {
  return tf.tidy(() => {
    const [groups, n, m] = costT.shape;
    const s = tf.sub(tf.add(tf.reshape(alpha, [groups, 1, m]), tf.reshape(beta, [groups, n, 1])), costT);
    const mask = tf.reshape(topkMask(tf.reshape(s, [groups * n, m]) as tf.Tensor2D, k), [groups, n, m]);
    const planT = tf.div(tf.mul(tf.relu(s), mask), gamma) as tf.Tensor3D;
    const gradAlpha = tf.sub(a, tf.sum(planT, 1)) as tf.Tensor2D;
    const gradBeta = tf.sub(b, tf.sum(planT, 2)) as tf.Tensor2D;
    const value = tf.sub(
      tf.add(tf.sum(tf.mul(alpha, a), 1), tf.sum(tf.mul(beta, b), 1)),
      tf.mul(gamma / 2, tf.sum(tf.square(planT), [1, 2])),
    ) as tf.Tensor1D;
    return {planT, gradAlpha, gradBeta, value};
  });
}

/**
 * The k-sparse plan of dual potentials: `T[:, j] = [alpha + beta_j - C[:, j]]_+ / gamma` on the
 * k largest entries of that vector, 0 elsewhere (column sparsity). Differentiable by tfjs
 * autodiff with respect to `alpha`, `beta` and `cost`, with the top-k sets held fixed.
 *
 * @param alpha `<float32>[m]` or `[groups, m]`. @param beta `<float32>[n]` or `[groups, n]`.
 * @param cost `<float32>[m, n]` or `[groups, m, n]`.
 * @param k Nonzeros per column, in [1, m]. @param gamma Regularization, > 0 (default 1).
 * @returns `<float32>[m, n]` or `[groups, m, n]`.
 *
 * @example
 * ```ts
 * const r = solveSparseOT(cost, {k: 8, formulation: 'dual'});
 * const plan = dualPlan(r.alpha, r.beta!, cost, 8); // equals r.plan
 * ```
 */
export function dualPlan(alpha: tf.Tensor, beta: tf.Tensor, cost: tf.Tensor, k: number, gamma = 1): tf.Tensor {
  const context = 'dualPlan';
  if (!(cost instanceof tf.Tensor) || (cost.rank !== 2 && cost.rank !== 3)) {
    throw new ShapeError('cost', 'of shape [m, n] or [groups, m, n]', cost instanceof tf.Tensor ? cost.shape : cost, context);
  }
  const lead = cost.shape.slice(0, -2);
  const [m, n] = cost.shape.slice(-2);
  if (!(alpha instanceof tf.Tensor) || alpha.shape.join(',') !== [...lead, m].join(',')) {
    throw new ShapeError('alpha', `of shape [${[...lead, m].join(', ')}]`, alpha instanceof tf.Tensor ? alpha.shape : alpha, context);
  }
  if (!(beta instanceof tf.Tensor) || beta.shape.join(',') !== [...lead, n].join(',')) {
    throw new ShapeError('beta', `of shape [${[...lead, n].join(', ')}]`, beta instanceof tf.Tensor ? beta.shape : beta, context);
  }
  assertPositiveInt('k', k, context);
  if (k > m) throw new InvalidArgumentError('k', `at most the number of rows m = ${m}`, k, context);
  assertPositiveNumber('gamma', gamma, context);
  return tf.tidy(() => {
    const groups = cost.rank === 3 ? cost.shape[0] : 1;
    const costT = tf.transpose(tf.reshape(tf.cast(cost, 'float32'), [groups, m, n]), [0, 2, 1]) as tf.Tensor3D;
    const al = tf.reshape(alpha, [groups, m]) as tf.Tensor2D;
    const be = tf.reshape(beta, [groups, n]) as tf.Tensor2D;
    const ev = evalDual(al, be, costT, tf.zerosLike(al), tf.zerosLike(be), k, gamma);
    const plan = tf.transpose(ev.planT, [0, 2, 1]);
    return cost.rank === 2 ? tf.squeeze(plan, [0]) : plan;
  });
}
