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
 * No value is read back from the device: CG runs a fixed number of iterations and freezes each
 * group on the device once its residual is small.
 */
import * as tf from '@tensorflow/tfjs';
import {noGrad} from '../core/stop-gradient';

import {InvalidArgumentError, ShapeError, assertOneOf, assertPositiveInt, assertPositiveNumber} from '../core/errors';
import type {Formulation, SparseOTOptions, SparseOTResult, Sparsity} from './types';

/**
 * Which unknowns conjugate gradients iterates on: `'experts'` (n of them per group) or `'tokens'` (m).
 *
 * @example
 * ```ts
 * sparseOTPlanVJP(plan, dPlan, {space: 'tokens'}); // same result as the default 'experts'
 * ```
 */
export type ImplicitSolveSpace = 'experts' | 'tokens';

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

/**
 * Floor of `r^T r`, `r^T z` and `p^T A p` (for a right-hand side scaled to unit norm) below
 * which CG freezes: under autodiff the squares of smaller denominators underflow in float32
 * (tfjs differentiates `a / b` as `-a / b^2`), and `0 * inf` turns a frozen step into NaN.
 */
const CG_ABS_FLOOR = 1e-18;

/** 1 where CG should keep stepping: residual above its floor and positive curvature. */
const cgActive = noGrad((rr: tf.Tensor, stopAt: tf.Tensor, pap: tf.Tensor) =>
  tf.cast(tf.logicalAnd(tf.greater(rr, tf.maximum(stopAt, CG_ABS_FLOOR)), tf.greater(pap, CG_ABS_FLOOR)), 'float32'));


/** 1 where x > 0, as a constant. */
const positiveMask = noGrad((x: tf.Tensor) => tf.cast(tf.greater(x, 0), 'float32'));

/** Per-group inner product of `<float32>[g, d]` vectors, kept as `[g, 1]`. */
function dot(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return tf.sum(tf.mul(a, b), 1, true) as tf.Tensor2D;
}

/**
 * Options of {@link conjugateGradient}.
 *
 * @example
 * ```ts
 * const options: ConjugateGradientOptions = {iterations: 20, tolerance: 1e-6};
 * ```
 */
export interface ConjugateGradientOptions {
  /** Number of iterations, run in full (frozen groups take zero steps). */
  iterations: number;
  /** Relative residual at which a group freezes. Default 1e-6. */
  tolerance?: number;
  /**
   * Diagonal preconditioner `<float32>[g, d]`: the inverse of the operator's diagonal, with 0 on
   * the operator's null rows (which keeps the iterates off them).
   */
  preconditioner?: tf.Tensor2D;
  /**
   * Orthogonal projection onto the complement of the operator's known null space, applied to the
   * right-hand side and to every preconditioned residual. Keeps float32 round-off from feeding
   * a null direction (which CG would otherwise amplify without bound on a singular system).
   */
  project?: (v: tf.Tensor2D) => tf.Tensor2D;
  /**
   * `<float32>[g, 1]`: a group freezes once the Rayleigh quotient `p^T A p / p^T p` of its search
   * direction falls below this. On a singular operator whose null space is not fully projected
   * out (a support graph with several connected components), round-off leaves a residual in
   * the null space that CG cannot reduce; its search directions then have almost no curvature,
   * and the step `r^T z / p^T A p` would be astronomically large. Default: no floor.
   */
  minCurvature?: tf.Tensor2D;
}

/**
 * Batched, matrix-free (preconditioned) conjugate gradients for symmetric positive semi-definite
 * systems `A x = rhs` with a consistent right-hand side, started from 0. Every iteration stays
 * on the device: a group whose residual fell below `tolerance * ||rhs||` (or whose curvature
 * `p^T A p` vanished) takes zero-length steps from then on, so nothing is read back.
 *
 * @param apply the operator: maps `<float32>[g, d]` to `<float32>[g, d]`.
 * @param rhs `<float32>[g, d]`, one system per group (row).
 * @returns `<float32>[g, d]` the approximate solution (in the range of A when rhs is).
 *
 * @example
 * ```ts
 * // A = diag(2, 4): x = [1, 0.5] solves A x = [2, 2].
 * const d = tf.tensor2d([[2, 4]]);
 * const x = conjugateGradient((v) => tf.mul(d, v), tf.tensor2d([[2, 2]]), {iterations: 3});
 * ```
 */
export function conjugateGradient(
  apply: (v: tf.Tensor2D) => tf.Tensor2D,
  rhs: tf.Tensor2D,
  options: ConjugateGradientOptions,
): tf.Tensor2D {
  const iterations = assertPositiveInt('iterations', options.iterations, 'conjugateGradient', 0);
  const tol = options.tolerance ?? 1e-6;
  const precond = options.preconditioner;
  const project = options.project ?? ((v: tf.Tensor2D) => v.clone());
  const applyPrecond = (r: tf.Tensor2D): tf.Tensor2D => project((precond ? tf.mul(precond, r) : r) as tf.Tensor2D);
  return tf.tidy(() => {
    // CG's iterates are homogeneous of degree 1 in the right-hand side: solve for rhs / |rhs|
    // and scale back, so that the floors below are relative and nothing underflows.
    const norm = tf.sqrt(tf.add(tf.sum(tf.square(rhs), 1, true), 1e-30));
    const unit = tf.div(rhs, norm) as tf.Tensor2D;
    let x = tf.zerosLike(rhs) as tf.Tensor2D;
    let r = project(unit);
    let p = applyPrecond(r);
    let rz = dot(r, p);
    const stopAt = tf.mul(dot(unit, unit), tol * tol);
    for (let it = 0; it < iterations; it++) {
      const next = tf.tidy(() => {
        const ap = apply(p);
        const pap = dot(p, ap);
        // The freeze decision is a constant for autodiff (CG may run inside a taped solver), and
        // the arithmetic below avoids tf.where so that no comparison lies on a taped path.
        let active = cgActive(dot(r, r), stopAt, pap);
        if (options.minCurvature) {
          active = tf.mul(active, cgActive(pap, tf.mul(options.minCurvature, dot(p, p)), tf.onesLike(pap)));
        }
        const inactive = tf.sub(1, active);
        const step = tf.div(tf.mul(active, rz), tf.add(tf.mul(active, pap), inactive));
        const x1 = tf.add(x, tf.mul(step, p)) as tf.Tensor2D;
        const r1 = tf.sub(r, tf.mul(step, ap)) as tf.Tensor2D;
        const z1 = applyPrecond(r1);
        const rz1 = dot(r1, z1);
        const rzPos = cgActive(rz, tf.zerosLike(rz), tf.onesLike(rz)); // 1 where rz > floor
        const safeRz = tf.add(tf.mul(rzPos, rz), tf.sub(1, rzPos));
        const beta = tf.div(tf.mul(active, rz1), safeRz);
        const p1 = tf.add(z1, tf.mul(beta, p)) as tf.Tensor2D;
        return {x1, r1, p1, rz1};
      });
      tf.dispose([x, r, p, rz]);
      x = next.x1;
      r = next.r1;
      p = next.p1;
      rz = next.rz1;
    }
    return tf.mul(x, norm) as tf.Tensor2D;
  });
}

/**
 * The support operators of a plan: masks, degrees and their pseudo-inverses, all `<float32>`
 * and constants for autodiff. Internal building block of the implicit and unrolled solvers.
 *
 * @example
 * ```ts
 * const graph = supportGraph(tf.tensor3d([[[1, 0], [1, 1]]])); // deg [[1, 2]], size [[2, 1]]
 * ```
 */
export interface SupportGraph {
  /** `[g, m, n]` 0/1 support mask. */
  mask: tf.Tensor3D;
  /** `[g, m]` row degrees (experts holding each token). */
  deg: tf.Tensor2D;
  /** `[g, n]` column sizes (tokens each expert holds). */
  size: tf.Tensor2D;
  /** `[g, m]` 1 / deg, 0 where deg = 0. */
  degInv: tf.Tensor2D;
  /** `[g, n]` 1 / size, 0 where size = 0. */
  sizeInv: tf.Tensor2D;
}

/**
 * `1 / x` where `x > 0`, 0 elsewhere, as a constant for autodiff.
 *
 * @param x `<float32>[g, d]`.
 * @returns `<float32>[g, d]`.
 *
 * @example
 * ```ts
 * safeInverse(tf.tensor2d([[2, 0]])); // [[0.5, 0]]
 * ```
 */
export function safeInverse(x: tf.Tensor2D): tf.Tensor2D {
  return safeInverseNoGrad(x) as tf.Tensor2D;
}

const safeInverseNoGrad = noGrad((x: tf.Tensor) => {
  const pos = tf.greater(x, 0);
  return tf.where(pos, tf.div(1, tf.where(pos, x, tf.onesLike(x))), tf.zerosLike(x));
});

/**
 * Degrees, column sizes and their safe inverses of a 0/1 support mask.
 *
 * @param mask `<float32>[g, m, n]` 0/1.
 * @returns the {@link SupportGraph} (its tensors belong to the caller).
 *
 * @example
 * ```ts
 * const {deg, size} = supportGraph(tf.cast(tf.greater(plan, 0), 'float32') as tf.Tensor3D);
 * ```
 */
export function supportGraph(mask: tf.Tensor3D): SupportGraph {
  const deg = tf.sum(mask, 2) as tf.Tensor2D;
  const size = tf.sum(mask, 1) as tf.Tensor2D;
  return {mask, deg, size, degInv: safeInverse(deg), sizeInv: safeInverse(size)};
}

/**
 * Removes from `v` its mean over the entries where `on` is 1 (and zeroes the rest): the
 * projection onto the complement of the constant vector of those entries, which spans the null
 * space of the support Laplacians (Q on experts, H on tokens) when the support graph is
 * connected. On a disconnected support the other per-component constants stay in the null space;
 * CG does not reach them from a consistent right-hand side except through round-off.
 */
function centerOn(on: tf.Tensor2D): (v: tf.Tensor2D) => tf.Tensor2D {
  const count = tf.maximum(tf.sum(on, 1, true), 1);
  return (v) => tf.tidy(() => tf.mul(on, tf.sub(v, tf.div(tf.sum(tf.mul(on, v), 1, true), count))) as tf.Tensor2D);
}

/**
 * Curvature floor of CG on a support Laplacian: 1e-6 of its largest diagonal entry, as a
 * constant. Directions of smaller Rayleigh quotient are round-off in the null space: the
 * preconditioned operator's nonzero eigenvalues on these bipartite supports are not below it.
 */
const curvatureFloor = noGrad((diag: tf.Tensor) => tf.mul(tf.max(diag, 1, true), 1e-6));

/** `M v`: `[g, m, n] x [g, n] -> [g, m]`. */
function mulMask(mask: tf.Tensor3D, v: tf.Tensor2D): tf.Tensor2D {
  return tf.squeeze(tf.matMul(mask, tf.expandDims(v, 2)), [2]) as tf.Tensor2D;
}

/** `M^T v`: `[g, m, n] x [g, m] -> [g, n]`. */
function mulMaskT(mask: tf.Tensor3D, v: tf.Tensor2D): tf.Tensor2D {
  return tf.squeeze(tf.matMul(mask, tf.expandDims(v, 2), true, false), [2]) as tf.Tensor2D;
}

/**
 * Solves `[[D, sign M], [sign M^T, S]] [w_r; w_c] = [r_r; r_c]` on the range of the operator,
 * with `sign = -1` (the semi-dual's Laplacian) or `+1` (the dual's signless Laplacian). Returns
 * `[w_r <float32>[g, m], w_c <float32>[g, n]]`. Uses CG on the Schur complement of the chosen
 * side. Internal building block of {@link sparseOTPlanVJP} and the unrolled Newton steps.
 *
 * @example
 * ```ts
 * // Newton direction of the semi-dual: (D - M S^+ M^T) d = gamma * grad.
 * const [d] = solveSupportSystem(graph, -1, tf.mul(grad, gamma), tf.zerosLike(graph.size), 'experts', undefined, 1e-7);
 * ```
 */
export function solveSupportSystem(
  graph: SupportGraph,
  sign: 1 | -1,
  rRow: tf.Tensor2D,
  rCol: tf.Tensor2D,
  space: ImplicitSolveSpace,
  iterations: number | undefined,
  tolerance: number,
): [tf.Tensor2D, tf.Tensor2D] {
  const {mask, deg, size, degInv, sizeInv} = graph;
  const [, m, n] = mask.shape;
  if (space === 'experts') {
    // Q = S - M^T D^+ M;  Q w_c = r_c - sign M^T D^+ r_r;  w_r = D^+ (r_r - sign M w_c).
    const applyQ = (v: tf.Tensor2D): tf.Tensor2D =>
      tf.sub(tf.mul(size, v), mulMaskT(mask, tf.mul(degInv, mulMask(mask, v)) as tf.Tensor2D)) as tf.Tensor2D;
    const diagQ = tf.sub(size, mulMaskT(mask, degInv));
    const rhs = tf.sub(rCol, tf.mul(sign, mulMaskT(mask, tf.mul(degInv, rRow) as tf.Tensor2D))) as tf.Tensor2D;
    const wCol = conjugateGradient(applyQ, rhs, {
      iterations: iterations ?? 2 * n + 10,
      tolerance,
      preconditioner: safeInverse(diagQ as tf.Tensor2D),
      project: centerOn(positiveMask(size) as tf.Tensor2D),
      minCurvature: curvatureFloor(diagQ) as tf.Tensor2D,
    });
    const wRow = tf.mul(degInv, tf.sub(rRow, tf.mul(sign, mulMask(mask, wCol)))) as tf.Tensor2D;
    return [wRow, wCol];
  }
  // H' = D - M S^+ M^T;  H' w_r = r_r - sign M S^+ r_c;  w_c = S^+ (r_c - sign M^T w_r).
  const applyH = (v: tf.Tensor2D): tf.Tensor2D =>
    tf.sub(tf.mul(deg, v), mulMask(mask, tf.mul(sizeInv, mulMaskT(mask, v)) as tf.Tensor2D)) as tf.Tensor2D;
  const diagH = tf.sub(deg, mulMask(mask, sizeInv));
  const rhs = tf.sub(rRow, tf.mul(sign, mulMask(mask, tf.mul(sizeInv, rCol) as tf.Tensor2D))) as tf.Tensor2D;
  const wRow = conjugateGradient(applyH, rhs, {
    iterations: iterations ?? 2 * m + 10,
    tolerance,
    preconditioner: safeInverse(diagH as tf.Tensor2D),
    project: centerOn(positiveMask(deg) as tf.Tensor2D),
    minCurvature: curvatureFloor(diagH) as tf.Tensor2D,
  });
  const wCol = tf.mul(sizeInv, tf.sub(rCol, tf.mul(sign, mulMaskT(mask, wRow)))) as tf.Tensor2D;
  return [wRow, wCol];
}

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

/**
 * A solver with the signature of `solveSparseOT`.
 *
 * @example
 * ```ts
 * const solver: SparseOTSolver = solveSparseOT;
 * ```
 */
export type SparseOTSolver = (cost: tf.Tensor, options: SparseOTOptions) => SparseOTResult;

/**
 * Options of {@link sparseOTPlanImplicit}: those of the solve plus the CG settings.
 *
 * @example
 * ```ts
 * const options: ImplicitPlanOptions = {k: 8, gamma: 1, implicit: {space: 'experts'}};
 * ```
 */
export interface ImplicitPlanOptions extends SparseOTOptions {
  /** CG settings of the backward pass (gamma, formulation and sparsity come from the solve). */
  implicit?: Pick<ImplicitGradientOptions, 'space' | 'maxIterations' | 'tolerance'>;
}

/**
 * Solves the k-sparse OT problem and returns its plan as a differentiable function of the cost:
 * the forward pass runs `solver` (no gradient is taped through its iterations), the backward
 * pass is {@link sparseOTPlanVJP}. `onResult` receives the solve's result (potentials, metrics)
 * before the call returns; it owns those tensors except `plan`, which is returned (a copy of it
 * is kept for the backward pass when a gradient is being recorded).
 *
 * @param cost `<float32>[m, n]` or `<float32>[groups, m, n]`.
 * @returns `<float32>` plan of the cost's shape, with the implicit gradient attached.
 *
 * @example
 * ```ts
 * const grad = tf.grad((c: tf.Tensor) =>
 *   tf.sum(tf.mul(sparseOTPlanImplicit(c, {k: 4}, solveSparseOT), weights)));
 * const dCost = grad(cost); // <float32>[m, n]
 * ```
 */
export function sparseOTPlanImplicit(
  cost: tf.Tensor,
  options: ImplicitPlanOptions,
  solver: SparseOTSolver,
  onResult?: (result: SparseOTResult) => void,
): tf.Tensor {
  const {implicit, ...solveOptions} = options;
  const vjpOptions: ImplicitGradientOptions = {
    gamma: solveOptions.gamma ?? 1,
    formulation: solveOptions.formulation ?? 'semidual',
    sparsity: solveOptions.sparsity ?? 'column',
    ...implicit,
  };
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [c, save] = args as [tf.Tensor, tf.GradSaveFunc];
    const result = solver(c, solveOptions);
    const plan = result.plan;
    save([plan]);
    if (onResult) {
      // Keep the caller's tensors alive past customGrad's internal tidy.
      for (const t of [result.alpha, result.beta, result.value]) if (t) tf.keep(t);
      // Copy the properties without invoking the lazy statistics' getters (a spread would read
      // them back synchronously); customGrad's tidy frees their unread tensor.
      const kept = Object.defineProperties({}, Object.getOwnPropertyDescriptors(result)) as SparseOTResult;
      kept.dispose = () => tf.dispose([result.alpha, result.beta, result.value].filter(Boolean) as tf.Tensor[]);
      onResult(kept);
    } else {
      tf.dispose([result.alpha, result.beta, result.value].filter(Boolean) as tf.Tensor[]);
    }
    return {
      value: plan,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [sparseOTPlanVJP(saved[0], dy, vjpOptions)],
    };
  });
  return f(cost);
}
