/**
 * Gradients through the k-sparse transport plan by implicit differentiation of the optimality
 * conditions on the plan's support (see `shared/docs/implicit-gradients.md`).
 *
 * Semi-dual, column sparsity. With `x_j = alpha - C[:, j]`, `y_j = P_k(x_j / (gamma b_j))` and
 * the plan `T[:, j] = b_j y_j`, the optimality condition is `F(alpha, C) = a - sum_j T[:, j] = 0`.
 * On the support `S_j` of column j the projection is affine, with Jacobian
 * `P_j(v) = mask_j * (v - mean of v over S_j)`. For an upstream gradient `G = dL/dT`:
 *
 * 1. `u = (1/gamma) sum_j P_j(G[:, j])`
 * 2. solve `H w = u`, `H v = (1/gamma) sum_j P_j(v)`, on the range of H;
 * 3. `dL/dC[:, j] = (1/gamma) P_j(w - G[:, j])` (the column marginal `b_j` cancels).
 *
 * In matrix form, with the support mask `M <0/1>[m, n]`, the row degrees `D = diag(M 1)` and the
 * column sizes `S = diag(M^T 1)`: `gamma H = D - M S^+ M^T`. The system is solved matrix-free by
 * preconditioned conjugate gradients (CG), either on the tokens (`space: 'tokens'`, the m x m
 * operator above) or, by default, on the experts (`space: 'experts'`): eliminating `w` from the
 * block system `[[D, -M], [-M^T, S]] [w; z] = [gamma u; 0]` gives the n x n Schur complement
 * `Q = S - M^T D^+ M`, and `w = D^+ (gamma u + M z)`. Routing has few experts (n = 8..64) and
 * many tokens, so CG on Q finishes in at most n steps in exact arithmetic, whatever the number
 * of tokens. Neither form ever builds an m x m matrix; each operator application costs O(m n).
 *
 * Dual formulation (potentials alpha and beta, plan `T_ij = [alpha_i + beta_j - C_ij]_+ / gamma`
 * on the column's top-k): the conditions `T 1 = a`, `T^T 1 = b` give, on the support, the
 * signless Laplacian `K = [[D, M], [M^T, S]]` of the bipartite support graph. With
 * `g_r = (M * G) 1`, `g_c = (M * G)^T 1` and `K [w_a; w_b] = [g_r; g_c]`:
 * `dL/dC_ij = (1/gamma) M_ij (w_a_i + w_b_j - G_ij)`. The same Schur complement Q appears.
 *
 * Where the result is a true gradient: in the smooth regime (k >= m, or any optimum that meets
 * the row marginals) it is the exact derivative of the plan. In the routing regime (k < m, the
 * optimum on a kink of the semi-dual) it is the derivative with the support held fixed, a
 * generalized Jacobian. When the plan is integral (a 0/1 assignment, e.g. capacity factor 1 with
 * m / n an integer) every column's support is a block on which the plan is constant, and the
 * result is exactly zero.
 *
 * No value is read back from the device: CG (linalg/cg.ts) runs a fixed number of iterations and freezes each
 * group on the device once its residual is small.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, ShapeError, assertOneOf, assertPositiveInt, assertPositiveNumber} from '../../core/errors';
import {checkOptions} from '../../core/options';
import {positiveMask} from '../../core/stop-gradient';
import {mulMask, solveSupportSystem, supportGraph, type ImplicitSolveSpace} from '../support-graph';
import type {Formulation, Sparsity} from '../types';

/**
 * Options of {@link sparseOTPlanVJP}.
 *
 * @example
 * ```ts
 * const options: ImplicitGradientOptions = {gamma: 2, formulation: 'semidual', maxIterations: 40};
 * ```
 */
export interface ImplicitGradientOptions {
  /** Regularization strength gamma the plan was solved with. Default 1. */
  gamma?: number;
  /** The formulation the plan came from. Default `'semidual'`. */
  formulation?: Formulation;
  /** Which side k bounds. `'row'` differentiates the transposed problem. Default `'column'`. */
  sparsity?: Sparsity;
  /**
   * Unknowns of the linear solve: `'experts'` (default; the n x n Schur complement, converges in
   * at most n steps) or `'tokens'` (the m x m operator H of the derivation). With
   * `sparsity: 'row'` the roles of rows and columns swap.
   */
  space?: ImplicitSolveSpace;
  /** CG iterations (a fixed count; converged groups are frozen on device). Default `2 * size + 10`. */
  maxIterations?: number;
  /** CG stops improving a group once `||r|| <= tolerance * ||r_0||`. Default 1e-6. */
  tolerance?: number;
  /**
   * Support of the plan `<float32|bool>[m, n]` or `[groups, m, n]`, 1 where the plan is held
   * nonzero. Default: `plan > 0`.
   */
  support?: tf.Tensor;
}

const CONTEXT = 'sparseOTPlanVJP';

/** Every key of {@link ImplicitGradientOptions} (the compiler keeps the list complete). */
const VJP_OPTION_KEYS: readonly string[] = Object.keys({
  gamma: true, formulation: true, sparsity: true, space: true, maxIterations: true, tolerance: true, support: true,
} satisfies Record<keyof ImplicitGradientOptions, true>);

function toRank3(t: tf.Tensor, name: string): tf.Tensor3D {
  if (t.rank === 2) return tf.expandDims(t, 0) as tf.Tensor3D;
  if (t.rank === 3) return t as tf.Tensor3D;
  throw new ShapeError(name, 'a tensor of rank 2 [m, n] or rank 3 [groups, m, n]', t.shape, CONTEXT);
}

/**
 * Vector-Jacobian product of the k-sparse transport plan with respect to the cost: given the
 * plan `T` returned by a (semi-)dual solve and an upstream gradient `G = dL/dT`, returns `dL/dC`.
 * Exact in the smooth regime; with the support held fixed in the routing regime (see the module
 * docs). It is zero when the plan is integral.
 *
 * @param plan `<float32>[m, n]` or `<float32>[groups, m, n]`, the solved plan.
 * @param upstream `<float32>` of the plan's shape: `dL/dT`.
 * @returns `<float32>` of the plan's shape: `dL/dC`.
 *
 * @example
 * ```ts
 * const res = solveSparseOT(cost, {k: 4, gamma: 1});          // cost <float32>[16, 4]
 * const dCost = sparseOTPlanVJP(res.plan, tf.onesLike(res.plan), {gamma: 1});
 * ```
 */
export function sparseOTPlanVJP(plan: tf.Tensor, upstream: tf.Tensor, options: ImplicitGradientOptions = {}): tf.Tensor {
  checkOptions(options, VJP_OPTION_KEYS, CONTEXT);
  const gamma = assertPositiveNumber('gamma', options.gamma ?? 1, CONTEXT);
  const formulation = assertOneOf('formulation', options.formulation ?? 'semidual', ['semidual', 'dual'] as const, CONTEXT);
  const sparsity = assertOneOf('sparsity', options.sparsity ?? 'column', ['column', 'row'] as const, CONTEXT);
  const space = assertOneOf('space', options.space ?? 'experts', ['experts', 'tokens'] as const, CONTEXT);
  if (options.maxIterations !== undefined) assertPositiveInt('maxIterations', options.maxIterations, CONTEXT, 0);
  const tolerance = options.tolerance ?? 1e-6;
  if (typeof tolerance !== 'number' || !(tolerance >= 0)) {
    throw new InvalidArgumentError('tolerance', 'a number >= 0', tolerance, CONTEXT);
  }
  if (!tf.util.arraysEqual(plan.shape, upstream.shape)) {
    throw new ShapeError('upstream', `a tensor of the plan's shape [${plan.shape}]`, upstream.shape, CONTEXT);
  }
  if (options.support && !tf.util.arraysEqual(plan.shape, options.support.shape)) {
    throw new ShapeError('support', `a tensor of the plan's shape [${plan.shape}]`, options.support.shape, CONTEXT);
  }
  return tf.tidy(() => {
    let t3 = toRank3(plan, 'plan');
    let g3 = toRank3(upstream, 'upstream').toFloat();
    let m3 = options.support ? toRank3(options.support, 'support').toFloat() : positiveMask(t3);
    if (sparsity === 'row') {
      // Row sparsity is the column-sparse problem on the transpose.
      t3 = tf.transpose(t3, [0, 2, 1]);
      g3 = tf.transpose(g3, [0, 2, 1]);
      m3 = tf.transpose(m3, [0, 2, 1]);
    }
    const graph = supportGraph(m3 as tf.Tensor3D);
    const mask = graph.mask;
    const mg = tf.mul(mask, g3) as tf.Tensor3D;
    let dC: tf.Tensor3D;
    if (formulation === 'semidual') {
      // gamma u = sum_j P_j(G_j) = rowsum(M G) - M (S^+ colsum(M G)).
      const rowMG = tf.sum(mg, 2) as tf.Tensor2D;
      const colMean = tf.mul(graph.sizeInv, tf.sum(mg, 1)) as tf.Tensor2D;
      const gammaU = tf.sub(rowMG, mulMask(mask, colMean)) as tf.Tensor2D;
      // (D - M S^+ M^T) w = gamma u, i.e. [[D, -M], [-M^T, S]] [w; z] = [gamma u; 0].
      const [w] = solveSupportSystem(graph, -1, gammaU, tf.zerosLike(graph.size) as tf.Tensor2D, space,
        options.maxIterations, tolerance);
      // dL/dC_j = (1/gamma) P_j(w - G_j).
      const v = tf.sub(tf.expandDims(w, 2), g3);
      const mv = tf.mul(mask, v);
      const mean = tf.mul(graph.sizeInv, tf.sum(mv, 1));
      dC = tf.div(tf.mul(mask, tf.sub(v, tf.expandDims(mean, 1))), gamma) as tf.Tensor3D;
    } else {
      const [wa, wb] = solveSupportSystem(graph, 1, tf.sum(mg, 2) as tf.Tensor2D, tf.sum(mg, 1) as tf.Tensor2D,
        space, options.maxIterations, tolerance);
      const v = tf.sub(tf.add(tf.expandDims(wa, 2), tf.expandDims(wb, 1)), g3);
      dC = tf.div(tf.mul(mask, v), gamma) as tf.Tensor3D;
    }
    if (sparsity === 'row') dC = tf.transpose(dC, [0, 2, 1]);
    return plan.rank === 2 ? tf.squeeze(dC, [0]) : dC;
  });
}
