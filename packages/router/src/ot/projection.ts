/**
 * Exact Euclidean projection onto the k-sparse simplex
 * `{y >= 0, sum(y) = radius, at most k nonzeros}` (Kyrillidis et al. 2013): keep the k largest
 * entries, project them onto the simplex (sparsemax of those k), zero elsewhere.
 *
 * The support is found with `tf.topk` behind a zero-gradient wall (tfjs has no TopK gradient);
 * the threshold is then computed from `x * mask` with ordinary differentiable ops, so tfjs
 * autodiff differentiates the projection with the support held fixed. On the support the
 * Jacobian is `P(v) = mask * (v - mean of v over the support)`.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, ShapeError, assertPositiveInt, assertPositiveNumber} from '../core/errors';
import {checkOptions} from '../core/options';
import {noGrad} from '../core/stop-gradient';

/** Options of {@link kSparseSimplexProjection} and {@link sparsemax}. */
export interface ProjectionOptions {
  /** Sum of every projected slice, > 0. Default 1. */
  radius?: number;
  /** Axis along which slices are projected (negative counts from the end). Default -1 (last). */
  axis?: number;
}

/** The projection of 2-D input along its last axis, with the pieces the solvers reuse. */
export interface ProjectionParts {
  /** `<float32>[rows, d]`: the projected slices. */
  y: tf.Tensor2D;
  /** `<float32>[rows, d]`: 1 on the support (the largest `rho` entries of each row), else 0. */
  support: tf.Tensor2D;
  /** `<float32>[rows, 1]`: the threshold, `y = max(x - tau, 0)` on the support. */
  tau: tf.Tensor2D;
}

/**
 * The support mask of the k-sparse simplex projection of each row of `x`: the `rho <= k`
 * largest entries, where `rho` is the sparsemax support size of the k largest (sorted) values
 * `v`: `rho = #{j : v_j - (sum_{l<=j} v_l - radius) / j > 0}` (a prefix of the sorted order).
 * Ties are broken by `tf.topk`, so at most k entries are ever selected.
 */
function supportMask(x: tf.Tensor2D, k: number, radius: number): tf.Tensor2D {
  return tf.tidy(() => {
    const d = x.shape[1];
    const {values, indices} = tf.topk(x, k, true);
    const cs = tf.cumsum(values, 1);
    const j = tf.range(1, k + 1, 1, 'float32').reshape([1, k]);
    const keep = tf.cast(tf.greater(tf.sub(values, tf.div(tf.sub(cs, radius), j)), 0), 'float32');
    return scatterRows(indices as tf.Tensor2D, keep as tf.Tensor2D, d);
  });
}

/** `<float32>[rows, d]`: `values[r, l]` at column `indices[r, l]` of row r, 0 elsewhere. */
function scatterRows(indices: tf.Tensor2D, values: tf.Tensor2D, d: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [rows, k] = indices.shape;
    const rowIdx = tf.tile(tf.range(0, rows, 1, 'int32').reshape([rows, 1]), [1, k]);
    return tf.scatterND(tf.stack([rowIdx, indices], 2), values, [rows, d]) as tf.Tensor2D;
  });
}

/**
 * `<float32>[rows, d]`: 1 at the k largest entries of each row of `x` (ties broken by
 * `tf.topk`), 0 elsewhere; a constant for autodiff. All ones when `k >= d`.
 *
 * @param x `<float32>[rows, d]`
 */
export function topkMask(x: tf.Tensor2D, k: number): tf.Tensor2D {
  const [rows, d] = x.shape;
  if (k >= d) return tf.ones([rows, d]);
  return noGrad((xi) => scatterRows(tf.topk(xi, k, false).indices as tf.Tensor2D, tf.ones([rows, k]), d))(x) as tf.Tensor2D;
}

/**
 * Projects every row of `x` onto the k-sparse simplex of the given radius and returns the
 * projection with its support and threshold. Internal building block of the solvers; the
 * caller validates `k` (1 <= k <= d) and `radius` (> 0).
 *
 * @param x `<float32>[rows, d]`
 */
export function projectRows(x: tf.Tensor2D, k: number, radius = 1): ProjectionParts {
  return tf.tidy(() => {
    // The projection ignores a shift of x: work on x - max(x) (a constant for autodiff), so that
    // the threshold's sum does not cancel catastrophically when |x| is large (1e8 and beyond).
    const shift = rowMax(x);
    const xc = tf.sub(x, shift) as tf.Tensor2D;
    const support = noGrad((xi) => supportMask(xi as tf.Tensor2D, k, radius))(xc) as tf.Tensor2D;
    const count = tf.maximum(tf.sum(support, 1, true), 1);
    const tauC = tf.div(tf.sub(tf.sum(tf.mul(xc, support), 1, true), radius), count);
    const y = tf.mul(tf.relu(tf.sub(xc, tauC)), support) as tf.Tensor2D;
    return {y, support, tau: tf.add(tauC, shift) as tf.Tensor2D};
  });
}

/** `<float32>[rows, 1]`: the largest entry of each row, as a constant for autodiff. */
const rowMax = noGrad((x: tf.Tensor) => tf.max(x, 1, true));

/**
 * The k-sparse simplex projection (radius 1) of each column of `x`, differentiable with its
 * support held fixed: `y = S * (x - tau)`, `tau = (sum_S x - 1) / |S|`. Its Jacobian is `P_j`
 * of implicit-gradients.md. The same projection as {@link projectRows}, along axis 1.
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
  return applyAlongAxis(x, 1, (x2) => projectRows(x2, Math.min(k, x.shape[1]), 1).y) as tf.Tensor3D;
}

function normalizeAxis(axis: number, rank: number, context: string): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new InvalidArgumentError('axis', `an integer in [${-rank}, ${rank - 1}]`, axis, context);
  }
  return axis < 0 ? axis + rank : axis;
}

function applyAlongAxis(x: tf.Tensor, axis: number, f: (x2: tf.Tensor2D) => tf.Tensor2D): tf.Tensor {
  return tf.tidy(() => {
    const rank = x.rank;
    const perm = [...Array(rank).keys()].filter((i) => i !== axis).concat([axis]);
    const moved = axis === rank - 1 ? x : tf.transpose(x, perm);
    const d = moved.shape[rank - 1];
    const out = f(tf.reshape(moved, [-1, d]) as tf.Tensor2D).reshape(moved.shape);
    if (axis === rank - 1) return out;
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return tf.transpose(out, inverse);
  });
}

/**
 * Exact Euclidean projection of each slice of `x` onto
 * `{y >= 0, sum(y) = radius, at most k nonzeros}` (Kyrillidis et al. 2013). Slices run along
 * `options.axis` (default the last); every other axis is a batch axis.
 *
 * Differentiable by tfjs autodiff with respect to `x`, with the support held fixed (the support
 * changes only on a set of measure zero).
 *
 * @param x `<float32>[..., d, ...]`: any rank >= 1.
 * @param k Largest number of nonzeros per slice: an integer in [1, d].
 * @param options `radius` (default 1) and `axis` (default -1).
 * @returns `<float32>` of the shape of `x`.
 *
 * @example
 * ```ts
 * const y = kSparseSimplexProjection(tf.tensor1d([0.5, 0.4, -1]), 2);
 * // keep 0.5 and 0.4, threshold tau = (0.9 - 1) / 2 = -0.05: y = [0.55, 0.45, 0]
 * ```
 */
export function kSparseSimplexProjection(x: tf.Tensor, k: number, options: ProjectionOptions = {}): tf.Tensor {
  const context = 'kSparseSimplexProjection';
  checkOptions(options, ['radius', 'axis'], context);
  if (!(x instanceof tf.Tensor)) throw new InvalidArgumentError('x', 'a tf.Tensor', x, context);
  if (x.rank < 1 || x.size === 0) throw new ShapeError('x', 'a non-empty tensor of rank >= 1', x.shape, context);
  const axis = normalizeAxis(options.axis ?? -1, x.rank, context);
  const d = x.shape[axis];
  assertPositiveInt('k', k, context);
  if (k > d) throw new InvalidArgumentError('k', `at most the slice size ${d}`, k, context);
  const radius = assertPositiveNumber('radius', options.radius ?? 1, context);
  const xf = x.dtype === 'float32' ? x : tf.cast(x, 'float32');
  const out = applyAlongAxis(xf, axis, (x2) => {
    const parts = projectRows(x2, k, radius);
    tf.dispose([parts.support, parts.tau]);
    return parts.y;
  });
  if (xf !== x) xf.dispose();
  return out;
}

/**
 * Sparsemax (Martins & Astudillo 2016): the Euclidean projection of each slice onto the
 * simplex, i.e. {@link kSparseSimplexProjection} with k equal to the slice size.
 *
 * @param x `<float32>[..., d, ...]`
 * @param options `radius` (default 1) and `axis` (default -1).
 * @returns `<float32>` of the shape of `x`.
 *
 * @example
 * ```ts
 * sparsemax(tf.tensor1d([1, 0.2, 0.1])); // tau = (1 + 0.2 - 1) / 2 = 0.1: [0.9, 0.1, 0]
 * ```
 */
export function sparsemax(x: tf.Tensor, options: ProjectionOptions = {}): tf.Tensor {
  const context = 'sparsemax';
  checkOptions(options, ['radius', 'axis'], context);
  if (!(x instanceof tf.Tensor)) throw new InvalidArgumentError('x', 'a tf.Tensor', x, context);
  if (x.rank < 1 || x.size === 0) throw new ShapeError('x', 'a non-empty tensor of rank >= 1', x.shape, context);
  const axis = normalizeAxis(options.axis ?? -1, x.rank, context);
  return kSparseSimplexProjection(x, x.shape[axis], options);
}
