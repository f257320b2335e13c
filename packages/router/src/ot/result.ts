/**
 * Turns a solver's internal output into a {@link SparseOTResult}: the plan and potentials in the
 * caller's layout, and the marginal statistics (computed on the device, read back once, lazily).
 */
import * as tf from '@tensorflow/tfjs';
import type {OTProblem} from './problem';
import type {SparseOTResult} from './types';

/** The three marginal statistics of a plan. */
export interface MarginalStats {
  marginalError: number;
  meanRowError: number;
  droppedFraction: number;
}

/**
 * Marginal statistics of a plan `<float32>[groups, m, n]` against `a` `[groups, m]` and
 * `b` `[groups, n]`, on the device: `<float32>[3]` holding the largest relative violation of any
 * row or column sum, the mean relative row violation, and the fraction of rows with positive
 * marginal that receive no mass. Entries with a zero marginal count their absolute violation.
 */
export function marginalStatsTensor(plan: tf.Tensor3D, a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => {
    const rel = (sum: tf.Tensor, target: tf.Tensor): tf.Tensor =>
      tf.div(tf.abs(tf.sub(sum, target)), tf.where(tf.greater(target, 0), target, tf.onesLike(target)));
    const rows = tf.sum(plan, 2);
    const rowErr = rel(rows, a);
    const colErr = rel(tf.sum(plan, 1), b);
    const dropped = tf.mean(tf.cast(tf.logicalAnd(tf.lessEqual(rows, 0), tf.greater(a, 0)), 'float32'));
    return tf.stack([tf.maximum(tf.max(rowErr), tf.max(colErr)), tf.mean(rowErr), dropped]) as tf.Tensor1D;
  });
}

/** {@link marginalStatsTensor}, read back at once (one synchronous read). */
export function marginalStats(plan: tf.Tensor3D, a: tf.Tensor2D, b: tf.Tensor2D): MarginalStats {
  const stats = marginalStatsTensor(plan, a, b);
  const [marginalError, meanRowError, droppedFraction] = Array.from(stats.dataSync());
  stats.dispose();
  return {marginalError, meanRowError, droppedFraction};
}

/**
 * Lazy marginal statistics: owns `stats` (`<float32>[3]`, from {@link marginalStatsTensor}),
 * reads it back once on the first `get()` and disposes it then. `dispose()` drops it unread;
 * a `get()` after that throws, naming `what` (the result type) in the message.
 */
export class LazyStats {
  private tensor: tf.Tensor1D | null;
  private values: MarginalStats | null = null;

  constructor(stats: tf.Tensor1D, private readonly what: string) {
    this.tensor = stats;
  }

  get(): MarginalStats {
    if (this.values) return this.values;
    if (!this.tensor) {
      throw new Error(`${this.what}: the marginal statistics (marginalError, meanRowError, droppedFraction) are read on first access, which must come before dispose()`);
    }
    const [marginalError, meanRowError, droppedFraction] = Array.from(this.tensor.dataSync());
    this.tensor.dispose();
    this.tensor = null;
    this.values = {marginalError, meanRowError, droppedFraction};
    return this.values;
  }

  dispose(): void {
    if (this.tensor) this.tensor.dispose();
    this.tensor = null;
  }
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
  const stats = new LazyStats(marginalStatsTensor(plan3, aOrig, bOrig), 'solveSparseOT result');
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
    plan, alpha, beta, value: val, iterations, converged, feasible: problem.feasible,
    get marginalError() {
      return stats.get().marginalError;
    },
    get meanRowError() {
      return stats.get().meanRowError;
    },
    get droppedFraction() {
      return stats.get().droppedFraction;
    },
    dispose: () => {
      stats.dispose();
      tf.dispose([plan, alpha, val, ...(beta ? [beta] : [])]);
    },
  };
}
