/**
 * The two exact blocks of a lifted dual of k-sparse OT, in which the row potentials have a
 * closed-form best response (the `alternating` solver ascends them in turn).
 *
 * The lift. For any vector v, the sum of its k largest entries is
 * `min_lambda (k lambda + sum_i [v_i - lambda]_+)`. Applied to `v_i = [s_i]_+^2 / (2 gamma)`
 * this turns the dual `D(alpha, beta) = <alpha, a> + <beta, b> - sum_j f_k(alpha + beta_j - C[:, j])`
 * into a maximization over `(alpha, beta, lambda)` of
 *
 *   `L = <alpha, a> + <beta, b> - k sum_j lambda_j - sum_ij [[s_ij]_+^2 / (2 gamma) - lambda_j]_+`,
 *   `s_ij = alpha_i + beta_j - C_ij`,
 *
 * which is jointly concave and, for fixed column variables `(beta, lambda)`, SEPARABLE over rows.
 * Writing `ell_j = sqrt(2 gamma lambda_j)` (the smallest `s` column j admits), row i solves a
 * one-dimensional concave problem whose derivative `a_i - sum_{j : s_ij > ell_j} s_ij / gamma`
 * is piecewise linear and decreasing with downward jumps `ell_j / gamma` at the entry points
 * `e_ij = ell_j - beta_j + C_ij`. Sorting a row's n entry points gives its maximizer exactly:
 * with `R` the number of entry points at which the left derivative is still positive,
 * `alpha_i = max(e_(R), (gamma a_i - sum_{r <= R} (beta - C_i)_(r)) / R)`. See {@link rowBestResponseLifted}.
 *
 * For fixed alpha the best `(beta, lambda)` is what one semi-dual evaluation already yields:
 * `beta_j = -gamma b_j tau_j` (the projection threshold) and `lambda_j` between the (k+1)-th
 * and the k-th largest `[s_ij]_+^2 / (2 gamma)` when column j is full (k entries in its
 * support), 0 otherwise. See {@link columnBlock}.
 *
 */
import * as tf from '@tensorflow/tfjs';
import {betaFromTau, type SemidualEval} from '../semidual';

/**
 * The column block of the lifted dual at given row potentials, from their semi-dual evaluation:
 * `beta_j = -gamma b_j tau_j` and the entry level `ell_j` (in units of `s = alpha + beta - C`).
 * For a full column (k entries in its support) every `lambda_j` between the (k+1)-th and the
 * k-th largest `[s_ij]_+^2 / (2 gamma)` maximizes the lifted dual, i.e. every `ell_j` between
 * `[s_(k+1)]_+` and `s_(k)`; the midpoint is taken (in numpy it stopped the block ascent at
 * better points than either end on routing problems). A column that is not full has `ell_j = 0`.
 *
 * @param ev The evaluation at `alpha` (internal layout).
 * @param alpha `<float32>[groups, m]` @param costT `<float32>[groups, n, m]` @param b `<float32>[groups, n]`
 * @returns `beta`, `ell`: `<float32>[groups, n]` each.
 *
 * @example
 * ```ts
 * const ev = evalSemidual(alpha, costT, a, b, k, gamma);      // alpha <float32>[groups, m]
 * const {beta, ell} = columnBlock(ev, alpha, costT, b, k, gamma); // <float32>[groups, n] each
 * ```
 */
export function columnBlock(
  ev: SemidualEval, alpha: tf.Tensor2D, costT: tf.Tensor3D, b: tf.Tensor2D, k: number, gamma: number,
): {beta: tf.Tensor2D; ell: tf.Tensor2D} {
  return tf.tidy(() => {
    const [groups, , m] = costT.shape;
    const beta = betaFromTau(ev.tau, b, gamma);
    const count = tf.sum(ev.support, 2);
    // s_(k): gamma * the smallest positive plan entry of the column.
    const minPos = tf.min(tf.add(ev.planT, tf.mul(tf.cast(tf.lessEqual(ev.planT, 0), 'float32'), 3.0e38)), 2);
    // s_(k+1): the largest alpha_i - C_ij off the support, plus beta_j.
    const z = tf.sub(tf.reshape(alpha, [groups, 1, m]), costT);
    const offMax = tf.add(tf.max(tf.sub(z, tf.mul(ev.support, 3.0e38)), 2), beta);
    const full = tf.logicalAnd(tf.greaterEqual(count, k - 0.5), tf.less(minPos, 1e38));
    const upper = tf.mul(minPos, gamma);
    const lower = tf.minimum(tf.relu(offMax), upper);
    const ell = tf.where(full, tf.mul(tf.add(upper, lower), 0.5), tf.zerosLike(minPos)) as tf.Tensor2D;
    return {beta, ell};
  });
}

/**
 * Rows active in fewer than this many columns get the exact best response (see
 * {@link rowBestResponseLifted}).
 *
 * @example
 * ```ts
 * rowBestResponseLifted(beta, ell, costTT, a, gamma, MAX_ACTIVE); // the default
 * ```
 */
export const MAX_ACTIVE = 16;

/**
 * The row best response of the lifted dual (see the file comment): for each row i the
 * maximizer over `alpha_i` of
 * `a_i alpha_i - sum_j [[alpha_i + beta_j - C_ij]_+^2 / (2 gamma) - ell_j^2 / (2 gamma)]_+`.
 * Only the `K = min(n, maxActive)` smallest entry points of each row are sorted (a per-row sort
 * of all n is the slowest op of an iteration on wasm): the result is exact for every row active
 * in fewer than K columns (all rows when n <= maxActive); a row whose left derivative is still
 * positive at its K-th entry point gets the stationary point of those K columns, an
 * approximation. Rows with `a_i = 0` are put one unit (`gamma`) below their first entry point.
 *
 * @param beta `<float32>[groups, n]` @param ell `<float32>[groups, n]`, >= 0
 * @param costTT `<float32>[groups, m, n]`: the cost, token-major (the caller's layout; the
 *   solvers keep a copy so that no transpose runs per iteration).
 * @param a `<float32>[groups, m]`
 * @returns `<float32>[groups, m]`
 *
 * @example
 * ```ts
 * // one block-ascent iteration, from the evaluation `ev` at `alpha`:
 * const {beta, ell} = columnBlock(ev, alpha, costT, b, k, gamma);
 * const next = rowBestResponseLifted(beta, ell, tf.transpose(costT, [0, 2, 1]), a, gamma);
 * ```
 */
export function rowBestResponseLifted(
  beta: tf.Tensor2D, ell: tf.Tensor2D, costTT: tf.Tensor3D, a: tf.Tensor2D, gamma: number, maxActive = MAX_ACTIVE,
): tf.Tensor2D {
  return tf.tidy(() => {
    const [groups, m, n] = costTT.shape;
    const K = Math.min(n, maxActive);
    // Negated entry points -e_ij = beta_j - ell_j - C_ij, one row per token: [groups * m, n]
    // (broadcast along rows, fast on wasm); top-k of -e = the K smallest entry points, ascending.
    const negEntry = tf.reshape(tf.sub(tf.reshape(tf.sub(beta, ell), [groups, 1, n]), costTT), [groups * m, n]);
    const sorted = tf.topk(negEntry, K, true);
    const nes = tf.reshape(sorted.values, [groups, m, K]); // -e_(r)
    // ell at the sorted positions: W = beta_j - C_ij = ell_j - e_ij. A flat 1-D gather (a batched
    // gather, or an int32 broadcast add, is several times slower on wasm); groups get an offset.
    const flatIdx = groups === 1 ? sorted.indices : tf.cast(tf.add(tf.cast(sorted.indices, 'float32'), tf.reshape(
      tf.tile(tf.reshape(tf.range(0, groups * n, n, 'float32'), [groups, 1, 1]), [1, m, K]), [groups * m, K])), 'int32');
    const w = tf.add(tf.reshape(tf.gather(tf.reshape(ell, [groups * n]), flatIdx), [groups, m, K]), nes);
    const csIncl = tf.cumsum(w, 2);
    const ga = tf.mul(tf.reshape(a, [groups, m, 1]), gamma);
    // Left derivative (times gamma) at the r-th entry point, with r - 1 columns active:
    // gamma a_i - (r - 1) e_(r) - sum_{l < r} W_(l). Positive on a prefix r <= R.
    const dLeft = tf.sub(tf.add(ga, tf.mul(tf.range(0, K, 1, 'float32'), nes)), tf.sub(csIncl, w));
    const active = tf.step(dLeft);
    const count = tf.sum(active, 2, true);
    // e_(R) = the largest active entry point; sum_{r <= R} W_(r) = the sum of W over the active prefix.
    const eR = tf.neg(tf.min(tf.add(nes, tf.mul(tf.sub(1, active), 3.0e38)), 2, true));
    const csR = tf.sum(tf.mul(w, active), 2, true);
    const stationary = tf.div(tf.sub(ga, csR), tf.maximum(count, 1));
    const firstMinus = tf.sub(tf.neg(tf.slice(nes, [0, 0, 0], [groups, m, 1])), gamma);
    const alpha = tf.where(tf.greater(count, 0), tf.maximum(eR, stationary), firstMinus);
    return tf.reshape(alpha, [groups, m]) as tf.Tensor2D;
  });
}
