/**
 * What a solver returns (in the shape of ott-jax's `SinkhornOutput`): the plan, the potentials,
 * the objective value, the iterations run and whether every group converged, in the caller's
 * layout. Marginal statistics are computed on the device with the output and read back only
 * when asked for, explicitly and asynchronously (`await out.marginalStats()`).
 */
import * as tf from '@tensorflow/tfjs';
import type {SparseOTProblem} from './problem';

/**
 * The marginal statistics of a plan.
 *
 * @example
 * ```ts
 * const {marginalError, meanRowError, droppedFraction} = await out.marginalStats();
 * ```
 */
export interface MarginalStats {
  /** Largest violation of a row or column sum, relative to its marginal (max over groups). */
  marginalError: number;
  /** Mean over rows of |row sum - a_i| / a_i (mean over groups). */
  meanRowError: number;
  /** Fraction of rows with a positive marginal that receive no mass (mean over groups). */
  droppedFraction: number;
}

/**
 * Marginal statistics of a plan `<float32>[groups, m, n]` against `a` `[groups, m]` and
 * `b` `[groups, n]`, on the device: `<float32>[3]` holding the largest relative violation of any
 * row or column sum, the mean relative row violation, and the fraction of rows with positive
 * marginal that receive no mass. Entries with a zero marginal count their absolute violation.
 *
 * @example
 * ```ts
 * const stats = marginalStatsTensor(plan, a, b); // <float32>[3]
 * ```
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

function statsOf(values: ArrayLike<number>): MarginalStats {
  return {marginalError: values[0], meanRowError: values[1], droppedFraction: values[2]};
}

/**
 * {@link marginalStatsTensor}, read back at once (one synchronous read; not on webgpu).
 *
 * @example
 * ```ts
 * const {droppedFraction} = marginalStats(plan, a, b);
 * ```
 */
export function marginalStats(plan: tf.Tensor3D, a: tf.Tensor2D, b: tf.Tensor2D): MarginalStats {
  const stats = marginalStatsTensor(plan, a, b);
  const values = stats.dataSync();
  stats.dispose();
  return statsOf(values);
}

/**
 * Row and column potentials in the caller's layout: `alpha <float32>[m]` (or `[groups, m]`),
 * `beta <float32>[n]` (or `[groups, n]`).
 *
 * @example
 * ```ts
 * const next = solver.solve(problem, {beta: out.potentials.beta}); // warm start
 * ```
 */
export interface Potentials {
  alpha: tf.Tensor;
  beta: tf.Tensor;
}

/**
 * The output of a solver. It owns its tensors: call `dispose()` when done (the plan can be
 * kept by taking it with `tf.keep` / `tf.clone` first).
 *
 * @example
 * ```ts
 * const out = alternating().solve(sparseOTProblem(cost, {k: 10}));
 * out.plan;                   // <float32>[m, n], at most 10 nonzeros per column
 * const stats = await out.marginalStats();
 * out.dispose();
 * ```
 */
export class SparseOTOutput {
  private stats: tf.Tensor1D | null;
  private statsValues: MarginalStats | null = null;

  /**
   * @param plan `<float32>[m, n]` or `[groups, m, n]`: the transport plan.
   * @param potentials the dual potentials that yield the plan (see {@link Potentials}).
   * @param value `<float32>[]` or `[groups]`: the objective at the potentials.
   * @param iterations iterations run (the loop's count; a group that converged earlier kept its state).
   * @param converged whether every group converged (always false when the solver could not read back).
   * @param feasible whether a k-sparse plan can meet the marginals (see `SparseOTProblem.feasible`).
   * @param stats `<float32>[3]` from {@link marginalStatsTensor} (taken over).
   */
  constructor(
    readonly plan: tf.Tensor,
    readonly potentials: Potentials,
    readonly value: tf.Tensor,
    readonly iterations: number,
    readonly converged: boolean,
    readonly feasible: boolean,
    stats: tf.Tensor1D,
  ) {
    this.stats = stats;
  }

  /**
   * The marginal statistics, read back asynchronously (once; later calls return the same
   * values). Call it before `dispose()`.
   *
   * @throws Error after `dispose()` when never read.
   */
  async marginalStats(): Promise<MarginalStats> {
    if (this.statsValues) return this.statsValues;
    const t = this.takeStats('SparseOTOutput');
    const values = await t.data();
    t.dispose();
    this.statsValues = statsOf(values);
    return this.statsValues;
  }

  /**
   * The marginal statistics, read back synchronously (`dataSync`: not on webgpu). For code that
   * cannot await, such as the legacy `SparseOTResult` getters of `solveSparseOT`.
   *
   * @param what names the object in the error thrown after `dispose()`.
   */
  marginalStatsSync(what = 'SparseOTOutput'): MarginalStats {
    if (this.statsValues) return this.statsValues;
    const t = this.takeStats(what);
    this.statsValues = statsOf(t.dataSync());
    t.dispose();
    return this.statsValues;
  }

  private takeStats(what: string): tf.Tensor1D {
    if (!this.stats) {
      throw new Error(`${what}: the marginal statistics (marginalError, meanRowError, droppedFraction) are read on first access, which must come before dispose()`);
    }
    const t = this.stats;
    this.stats = null;
    return t;
  }

  /**
   * @internal Keeps every tensor but the plan past the enclosing `tf.tidy` (the implicit op's
   * forward pass runs in one, and returns the plan itself).
   */
  keepAllButPlan(): void {
    for (const t of [this.potentials.alpha, this.potentials.beta, this.value, this.stats]) if (t) tf.keep(t);
  }

  /** @internal The same output with `plan` in place of its plan (this output is spent). */
  withPlan(plan: tf.Tensor): SparseOTOutput {
    return new SparseOTOutput(plan, this.potentials, this.value, this.iterations, this.converged, this.feasible, this.takeStats('SparseOTOutput'));
  }

  /** @internal Disposes the marginal statistics unread (reading them later throws). */
  dropStats(): void {
    if (this.stats) this.stats.dispose();
    this.stats = null;
  }

  /** Disposes every tensor of the output except the plan, and returns the plan (now the caller's). */
  release(): tf.Tensor {
    this.dropStats();
    tf.dispose([this.potentials.alpha, this.potentials.beta, this.value]);
    return this.plan;
  }

  /** Disposes every tensor of the output. */
  dispose(): void {
    this.dropStats();
    tf.dispose([this.plan, this.potentials.alpha, this.potentials.beta, this.value]);
  }
}

/**
 * Builds the output from internal tensors (all `[groups, ...]`, internal layout), taking
 * ownership of `planT`, `alphaInt`, `betaInt` and `value`: transposes back a column-sparse
 * problem, drops the groups axis of an unbatched one, computes the marginal statistics.
 *
 * @param planT `<float32>[groups, ni, mi]` @param alphaInt `<float32>[groups, mi]`
 * @param betaInt `<float32>[groups, ni]` @param value `<float32>[groups]`
 *
 * @example
 * ```ts
 * return makeOutput(problem, ev.planT, alpha, betaFromTau(ev.tau, problem.b, gamma), ev.value, 10, true);
 * ```
 */
export function makeOutput(
  problem: SparseOTProblem, planT: tf.Tensor3D, alphaInt: tf.Tensor2D, betaInt: tf.Tensor2D, value: tf.Tensor1D,
  iterations: number, converged: boolean,
): SparseOTOutput {
  const {m, n, batched} = problem;
  const column = problem.columnSparse;
  const plan3 = column ? tf.transpose(planT, [0, 2, 1]) as tf.Tensor3D : planT;
  if (plan3 !== planT) planT.dispose();
  const stats = marginalStatsTensor(plan3, problem.rowMarginal, problem.columnMarginal);
  const unbatch = (t: tf.Tensor, shape: number[]): tf.Tensor => {
    if (batched) return t;
    const r = tf.reshape(t, shape);
    t.dispose();
    return r;
  };
  const alpha = unbatch(column ? alphaInt : betaInt, [m]);
  const beta = unbatch(column ? betaInt : alphaInt, [n]);
  return new SparseOTOutput(unbatch(plan3, [m, n]), {alpha, beta}, unbatch(value, []), iterations, converged, problem.feasible, stats);
}
