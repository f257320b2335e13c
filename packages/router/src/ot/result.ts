/**
 * Turns a solver's internal output into a {@link SparseOTResult}: the plan and potentials in the
 * caller's layout, and the marginal statistics, read back from the device once.
 */
import * as tf from '@tensorflow/tfjs';
import type {OTProblem} from './problem';
import type {SparseOTResult} from './types';

/**
 * Marginal statistics of a plan `<float32>[groups, m, n]` against `a` `[groups, m]` and
 * `b` `[groups, n]`: the largest relative violation of any row or column sum, the mean relative
 * row violation, and the fraction of rows with positive marginal that receive no mass.
 * Entries with a zero marginal count their absolute violation. One read-back.
 */
export function marginalStats(
  plan: tf.Tensor3D, a: tf.Tensor2D, b: tf.Tensor2D,
): {marginalError: number; meanRowError: number; droppedFraction: number} {
  const stats = tf.tidy(() => {
    const rel = (sum: tf.Tensor, target: tf.Tensor): tf.Tensor =>
      tf.div(tf.abs(tf.sub(sum, target)), tf.where(tf.greater(target, 0), target, tf.onesLike(target)));
    const rows = tf.sum(plan, 2);
    const rowErr = rel(rows, a);
    const colErr = rel(tf.sum(plan, 1), b);
    const dropped = tf.mean(tf.cast(tf.logicalAnd(tf.lessEqual(rows, 0), tf.greater(a, 0)), 'float32'));
    return tf.stack([tf.maximum(tf.max(rowErr), tf.max(colErr)), tf.mean(rowErr), dropped]);
  });
  const [marginalError, meanRowError, droppedFraction] = Array.from(stats.dataSync());
  stats.dispose();
  return {marginalError, meanRowError, droppedFraction};
}

/**
 * Builds the result from internal tensors (all `[groups, ...]`, internal layout), taking
 * ownership of `planT`, `alphaInt`, `betaInt` and `value`.
 *
 * @param planT `<float32>[groups, ni, mi]` @param alphaInt `<float32>[groups, mi]`
 * @param betaInt `<float32>[groups, ni]` or null @param value `<float32>[groups]`
 */
export function buildResult(
  problem: OTProblem, planT: tf.Tensor3D, alphaInt: tf.Tensor2D, betaInt: tf.Tensor2D | null, value: tf.Tensor1D,
  iterations: number, converged: boolean,
): SparseOTResult {
  const {m, n, batched, sparsity} = problem;
  const column = sparsity === 'column';
  const plan3 = column ? tf.transpose(planT, [0, 2, 1]) as tf.Tensor3D : planT;
  const alpha2 = column ? alphaInt : betaInt;
  const beta2 = column ? betaInt : alphaInt;
  const aOrig = column ? problem.a : problem.b;
  const bOrig = column ? problem.b : problem.a;
  const stats = marginalStats(plan3, aOrig, bOrig);
  const unbatch = (t: tf.Tensor, shape: number[]): tf.Tensor => {
    if (batched) return t;
    const r = tf.reshape(t, shape);
    t.dispose();
    return r;
  };
  if (plan3 !== planT) planT.dispose();
  const plan = unbatch(plan3, [m, n]);
  if (alpha2 === null) throw new Error('internal: the row potentials of a row-sparse problem are missing');
  const alpha = unbatch(alpha2, [m]);
  const beta = beta2 === null ? undefined : unbatch(beta2, [n]);
  const val = unbatch(value, []);
  return {
    plan, alpha, beta, value: val, ...stats, iterations, converged, feasible: problem.feasible,
    dispose: () => tf.dispose([plan, alpha, val, ...(beta ? [beta] : [])]),
  };
}
