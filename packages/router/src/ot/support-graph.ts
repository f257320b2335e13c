/**
 * The bipartite support graph of a plan (tokens x experts, an edge where the plan is nonzero) and
 * the linear algebra on it: degrees, the semi-dual's Laplacian `D - M S^+ M^T` on the tokens,
 * its Schur complement `S - M^T D^+ M` on the experts, and the dual's signless Laplacian. Used by
 * the Newton solver, the implicit gradient and the unrolled solver (see implicit-gradients.md).
 */
import * as tf from '@tensorflow/tfjs';
import {noGrad, positiveMask} from '../core/stop-gradient';
import {conjugateGradient} from './linalg/cg';

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
export function mulMask(mask: tf.Tensor3D, v: tf.Tensor2D): tf.Tensor2D {
  return tf.squeeze(tf.matMul(mask, tf.expandDims(v, 2)), [2]) as tf.Tensor2D;
}

/** `M^T v`: `[g, m, n] x [g, m] -> [g, n]`. */
export function mulMaskT(mask: tf.Tensor3D, v: tf.Tensor2D): tf.Tensor2D {
  return tf.squeeze(tf.matMul(mask, tf.expandDims(v, 2), true, false), [2]) as tf.Tensor2D;
}

/** A symmetric positive semi-definite operator on `<float32>[g, d]` and its diagonal. */
export interface SupportOperator {
  apply: (v: tf.Tensor2D) => tf.Tensor2D;
  /** `<float32>[g, d]`. */
  diag: tf.Tensor2D;
}

/**
 * The semi-dual's support Laplacian on the tokens, `D - M S^+ M^T` (`gamma` times the Hessian
 * `H` of implicit-gradients.md): `v -> deg * v - M (S^+ (M^T v))`, with its diagonal
 * `deg - M S^+ 1`. Rows in no support are zero rows.
 *
 * @example
 * ```ts
 * const {apply, diag} = tokenLaplacian(supportGraph(mask)); // mask <float32>[g, m, n]
 * ```
 */
export function tokenLaplacian(graph: SupportGraph): SupportOperator {
  const {mask, deg, sizeInv} = graph;
  return {
    apply: (v) => tf.sub(tf.mul(deg, v), mulMask(mask, tf.mul(sizeInv, mulMaskT(mask, v)) as tf.Tensor2D)) as tf.Tensor2D,
    diag: tf.sub(deg, mulMask(mask, sizeInv)) as tf.Tensor2D,
  };
}

/**
 * The Schur complement of the support Laplacian on the experts, `S - M^T D^+ M`:
 * `v -> size * v - M^T (D^+ (M v))`, with its diagonal `size - M^T D^+ 1`.
 *
 * @example
 * ```ts
 * const {apply, diag} = expertLaplacian(supportGraph(mask)); // mask <float32>[g, m, n]
 * ```
 */
export function expertLaplacian(graph: SupportGraph): SupportOperator {
  const {mask, size, degInv} = graph;
  return {
    apply: (v) => tf.sub(tf.mul(size, v), mulMaskT(mask, tf.mul(degInv, mulMask(mask, v)) as tf.Tensor2D)) as tf.Tensor2D,
    diag: tf.sub(size, mulMaskT(mask, degInv)) as tf.Tensor2D,
  };
}

/**
 * Solves `[[D, sign M], [sign M^T, S]] [w_r; w_c] = [r_r; r_c]` on the range of the operator,
 * with `sign = -1` (the semi-dual's Laplacian) or `+1` (the dual's signless Laplacian). Returns
 * `[w_r <float32>[g, m], w_c <float32>[g, n]]`. Uses CG on the Schur complement of the chosen
 * side. Internal building block of the implicit gradient and the unrolled Newton steps.
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
  const experts = space === 'experts';
  // experts: Q w_c = r_c - sign M^T D^+ r_r, w_r = D^+ (r_r - sign M w_c);
  // tokens:  H' w_r = r_r - sign M S^+ r_c, w_c = S^+ (r_c - sign M^T w_r).
  const op = experts ? expertLaplacian(graph) : tokenLaplacian(graph);
  const rhs = experts
    ? tf.sub(rCol, tf.mul(sign, mulMaskT(mask, tf.mul(degInv, rRow) as tf.Tensor2D))) as tf.Tensor2D
    : tf.sub(rRow, tf.mul(sign, mulMask(mask, tf.mul(sizeInv, rCol) as tf.Tensor2D))) as tf.Tensor2D;
  const w = conjugateGradient(op.apply, rhs, {
    iterations: iterations ?? 2 * (experts ? n : m) + 10,
    tolerance,
    preconditioner: safeInverse(op.diag),
    project: centerOn(positiveMask(experts ? size : deg) as tf.Tensor2D),
    minCurvature: curvatureFloor(op.diag) as tf.Tensor2D,
  });
  if (experts) return [tf.mul(degInv, tf.sub(rRow, tf.mul(sign, mulMask(mask, w)))) as tf.Tensor2D, w];
  return [w, tf.mul(sizeInv, tf.sub(rCol, tf.mul(sign, mulMaskT(mask, w)))) as tf.Tensor2D];
}
