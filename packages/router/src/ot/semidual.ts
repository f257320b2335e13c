/**
 * The semi-dual of k-sparse OT (column sparsity), maximized over the row potentials alpha:
 * `S(alpha) = <alpha, a> - sum_j b_j max_k(alpha - C[:, j]; b_j)` with
 * `max_k(z; b) = max {<y, z> - (gamma b / 2) ||y||^2 : y in the simplex, ||y||_0 <= k}`,
 * maximized by `y_j = P_k(z_j / (gamma b_j))`. Plan `T[:, j] = b_j y_j`, gradient
 * `grad S = a - T 1`, Hessian `-(1/gamma) sum_j P_j` on the supports (see implicit-gradients.md).
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, ShapeError, assertPositiveInt, assertPositiveNumber} from '../core/errors';
import {projectRows} from './projection';
import {whereGroups} from './solvers/convergence';

/** Everything one evaluation of the semi-dual yields, in the internal layout. */
export interface SemidualEval {
  /** `<float32>[groups, n, m]`: the plan, transposed (`planT[g, j, i] = T[g, i, j]`). */
  planT: tf.Tensor3D;
  /** `<float32>[groups, n, m]`: 1 on the support of each column's projection. */
  support: tf.Tensor3D;
  /** `<float32>[groups, n]`: each column's projection threshold (in units of `z / (gamma b_j)`). */
  tau: tf.Tensor2D;
  /** `<float32>[groups, m]`: `grad S(alpha) = a - T 1`. */
  grad: tf.Tensor2D;
  /** `<float32>[groups]`: `S(alpha)`. */
  value: tf.Tensor1D;
}

/**
 * Evaluates the semi-dual, its gradient and plan at `alpha`, batched over groups.
 *
 * @param alpha `<float32>[groups, m]`
 * @param costT `<float32>[groups, n, m]`: the cost transposed.
 * @param a `<float32>[groups, m]` @param b `<float32>[groups, n]`
 */
export function evalSemidual(
  alpha: tf.Tensor2D, costT: tf.Tensor3D, a: tf.Tensor2D, b: tf.Tensor2D, k: number, gamma: number,
): SemidualEval {
  return tf.tidy(() => {
    const [groups, n, m] = costT.shape;
    const b3 = tf.reshape(b, [groups, n, 1]);
    const bSafe = tf.where(tf.greater(b3, 0), b3, tf.onesLike(b3));
    const z = tf.sub(tf.reshape(alpha, [groups, 1, m]), costT);
    const x = tf.div(z, tf.mul(bSafe, gamma));
    const parts = projectRows(tf.reshape(x, [groups * n, m]) as tf.Tensor2D, k, 1);
    const planT = tf.mul(b3, tf.reshape(parts.y, [groups, n, m])) as tf.Tensor3D;
    const support = tf.reshape(parts.support, [groups, n, m]) as tf.Tensor3D;
    const tau = tf.reshape(parts.tau, [groups, n]) as tf.Tensor2D;
    const grad = tf.sub(a, tf.sum(planT, 1)) as tf.Tensor2D;
    const value = tf.add(
      tf.sub(tf.sum(tf.mul(alpha, a), 1), tf.sum(tf.mul(planT, z), [1, 2])),
      tf.mul(gamma / 2, tf.sum(tf.square(planT), [1, 2])),
    ) as tf.Tensor1D;
    return {planT, support, tau, grad, value};
  });
}

/**
 * Per group, the evaluation `t` where `mask` (`<bool>[groups]`) holds and `f` elsewhere (new
 * tensors; the inputs stay the caller's).
 *
 * @example
 * ```ts
 * const chosen = selectEval(tf.greater(evT.value, ev.value), evT, ev);
 * ```
 */
export function selectEval(mask: tf.Tensor, t: SemidualEval, f: SemidualEval): SemidualEval {
  return {
    planT: whereGroups(mask, t.planT, f.planT),
    support: whereGroups(mask, t.support, f.support),
    tau: whereGroups(mask, t.tau, f.tau),
    grad: whereGroups(mask, t.grad, f.grad),
    value: whereGroups(mask, t.value, f.value),
  };
}

/** Disposes every tensor of an evaluation. */
export function disposeEval(e: SemidualEval): void {
  tf.dispose([e.planT, e.support, e.tau, e.grad, e.value]);
}

/**
 * The column potentials implied by a semi-dual solution: `beta_j = -gamma b_j tau_j`, so that
 * `T[:, j] = [alpha + beta_j - C[:, j]]_+ / gamma` on column j's support (the dual's plan).
 *
 * @param tau `<float32>[groups, n]` @param b `<float32>[groups, n]`
 * @returns `<float32>[groups, n]`
 */
export function betaFromTau(tau: tf.Tensor2D, b: tf.Tensor2D, gamma: number): tf.Tensor2D {
  return tf.tidy(() => tf.mul(tf.mul(tau, b), -gamma) as tf.Tensor2D);
}

function checkPublicArgs(alpha: tf.Tensor, cost: tf.Tensor, b: tf.Tensor, k: number, gamma: number, context: string): void {
  if (!(cost instanceof tf.Tensor) || (cost.rank !== 2 && cost.rank !== 3)) {
    throw new ShapeError('cost', 'of shape [m, n] or [groups, m, n]', cost instanceof tf.Tensor ? cost.shape : cost, context);
  }
  const lead = cost.shape.slice(0, -1);
  const n = cost.shape[cost.rank - 1];
  if (!(alpha instanceof tf.Tensor) || alpha.shape.join(',') !== lead.join(',')) {
    throw new ShapeError('alpha', `of shape [${lead.join(', ')}]`, alpha instanceof tf.Tensor ? alpha.shape : alpha, context);
  }
  const bOk = b instanceof tf.Tensor &&
    ((b.rank === 1 && b.shape[0] === n) || (cost.rank === 3 && b.rank === 2 && b.shape[0] === cost.shape[0] && b.shape[1] === n));
  if (!bOk) throw new ShapeError('b', `of shape [${n}]${cost.rank === 3 ? ` or [${cost.shape[0]}, ${n}]` : ''}`, b instanceof tf.Tensor ? b.shape : b, context);
  assertPositiveInt('k', k, context);
  if (k > lead[lead.length - 1]) throw new InvalidArgumentError('k', `at most the number of rows m = ${lead[lead.length - 1]}`, k, context);
  assertPositiveNumber('gamma', gamma, context);
}

function toInternal(alpha: tf.Tensor, cost: tf.Tensor, b: tf.Tensor): [tf.Tensor2D, tf.Tensor3D, tf.Tensor2D] {
  const groups = cost.rank === 3 ? cost.shape[0] : 1;
  const [m, n] = cost.shape.slice(-2);
  return [
    tf.reshape(alpha, [groups, m]) as tf.Tensor2D,
    tf.transpose(tf.reshape(cost, [groups, m, n]), [0, 2, 1]) as tf.Tensor3D,
    tf.broadcastTo(tf.reshape(b, [-1, n]), [groups, n]) as tf.Tensor2D,
  ];
}

/**
 * The k-sparse plan of given row potentials: `T[:, j] = b_j P_k((alpha - C[:, j]) / (gamma b_j))`
 * (column sparsity; at most k nonzeros per column, columns sum exactly to `b`). Differentiable
 * by tfjs autodiff with respect to `alpha` and `cost`, with each column's support held fixed.
 *
 * @param alpha `<float32>[m]` or `[groups, m]`: row potentials (e.g. `solveSparseOT(...).alpha`).
 * @param cost `<float32>[m, n]` or `[groups, m, n]`.
 * @param b `<float32>[n]` or `[groups, n]`: column marginal.
 * @param k Nonzeros per column, in [1, m]. @param gamma Regularization, > 0 (default 1).
 * @returns `<float32>[m, n]` or `[groups, m, n]`.
 *
 * @example
 * ```ts
 * const cost = tf.neg(tf.softmax(logits)); // <float32>[tokens, experts]
 * const {alpha} = solveSparseOT(cost, {k: 8});
 * const plan = semidualPlan(alpha, cost, tf.fill([experts], tokens / experts), 8);
 * ```
 */
export function semidualPlan(alpha: tf.Tensor, cost: tf.Tensor, b: tf.Tensor, k: number, gamma = 1): tf.Tensor {
  checkPublicArgs(alpha, cost, b, k, gamma, 'semidualPlan');
  return tf.tidy(() => {
    const [al, costT, bb] = toInternal(alpha, cost, b);
    const ev = evalSemidual(al, costT, tf.zerosLike(al), bb, k, gamma);
    const plan = tf.transpose(ev.planT, [0, 2, 1]);
    return cost.rank === 2 ? tf.squeeze(plan, [0]) : plan;
  });
}

/**
 * The semi-dual objective `S(alpha) = <alpha, a> - sum_j b_j max_k(alpha - C[:, j]; b_j)`
 * (column sparsity). Concave in alpha; its maximum is the optimal value of the relaxed k-sparse
 * problem, and its gradient with respect to `cost` is the plan (Danskin).
 *
 * @param alpha `<float32>[m]` or `[groups, m]`. @param cost `<float32>[m, n]` or `[groups, m, n]`.
 * @param a `<float32>[m]` or `[groups, m]`. @param b `<float32>[n]` or `[groups, n]`.
 * @returns `<float32>[]` or `[groups]`.
 *
 * @example
 * ```ts
 * const v = semidualValue(result.alpha, cost, tf.ones([m]), tf.fill([n], m / n), k);
 * ```
 */
export function semidualValue(alpha: tf.Tensor, cost: tf.Tensor, a: tf.Tensor, b: tf.Tensor, k: number, gamma = 1): tf.Tensor {
  checkPublicArgs(alpha, cost, b, k, gamma, 'semidualValue');
  if (!(a instanceof tf.Tensor) || a.size * (cost.rank === 3 && a.rank === 1 ? cost.shape[0] : 1) !== alpha.size) {
    throw new ShapeError('a', `of the shape of alpha [${alpha.shape.join(', ')}]`, a instanceof tf.Tensor ? a.shape : a, 'semidualValue');
  }
  return tf.tidy(() => {
    const [al, costT, bb] = toInternal(alpha, cost, b);
    const aa = tf.broadcastTo(tf.reshape(a, [-1, costT.shape[2]]), al.shape) as tf.Tensor2D;
    const ev = evalSemidual(al, costT, aa, bb, k, gamma);
    return cost.rank === 2 ? tf.reshape(ev.value, []) : ev.value;
  });
}
