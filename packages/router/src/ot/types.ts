/**
 * Public types of the k-sparse optimal-transport core: the options of a solve and its result.
 * The problem (cost + marginals + k + gamma), the solvers and the result are kept apart.
 */
import * as tf from '@tensorflow/tfjs';
import type {MarginalStats} from './output';

/** Which side of the plan `k` bounds: `'column'` (an expert takes at most k tokens) or `'row'`. */
export type Sparsity = 'column' | 'row';

/** `'semidual'` optimizes the row potentials alpha only; `'dual'` optimizes alpha and beta. */
export type Formulation = 'semidual' | 'dual';

/**
 * Solver of the (semi-)dual.
 * - `'auto'` (default): `'alternating'` when k is below the size of the side it bounds (the
 *   routing case, where the objective has kinks), `'newton'` otherwise (smooth objective).
 * - `'alternating'`: exact block ascent on a lifted dual in which the row potentials have a
 *   closed-form best response to 2n column variables (see `alternating.ts`); each iteration costs
 *   one semi-dual evaluation plus a sort of n entries per row.
 * - `'newton'`: damped (Levenberg-Marquardt) Newton steps on the support, solved matrix-free by
 *   preconditioned conjugate gradients (see `newton.ts`); fast when k >= m.
 * - `'adam'`: reproduces the released V-MoE reference (learning rate 1e-2, 20 iterations from zero).
 */
export type SolverName = 'auto' | 'alternating' | 'newton' | 'adam';

/** Marginal weights: a number (the same for every entry), an array, or a tensor. */
export type MarginalLike = number | number[] | Float32Array | tf.Tensor;

/** Options of {@link solveSparseOT}. */
export interface SparseOTOptions {
  /** Cardinality bound: at most k nonzeros per column (`sparsity: 'column'`) or per row. */
  k: number;
  /** Quadratic regularization strength, > 0. Default 1. */
  gamma?: number;
  /** Row marginal `<float32>[m]` or `[groups, m]`. Default 1 per row (one unit per token). */
  a?: MarginalLike;
  /** Column marginal `<float32>[n]` or `[groups, n]`. Default `m / n` per column. */
  b?: MarginalLike;
  /** Default `'column'`. */
  sparsity?: Sparsity;
  /** Default `'semidual'`. */
  formulation?: Formulation;
  /** Default `'auto'` (see {@link SolverName}). */
  solver?: SolverName;
  /** Adam learning rate. Default 1e-2. */
  learningRate?: number;
  /**
   * Iteration budget. Default 20 for `'adam'`, 30 for `'newton'`, 3 for `'alternating'` (about
   * Adam-20's wall time; 10 iterations cost ~2.7x that and leave a median 16x less
   * suboptimality on routing problems, see bench/RESULTS-ot.md).
   */
  maxIterations?: number;
  /**
   * Convergence tolerance on the change of the objective value, relative to `max(1, |value|)`.
   * Default 1e-5. `'adam'` always runs `maxIterations` steps (as the reference does) and only
   * reports whether the last step changed the value by less than this.
   */
  tolerance?: number;
  /**
   * Warm start from earlier potentials (e.g. `result.alpha`, `result.beta`), in the shapes of
   * the result. Only `beta` (per expert) can carry over between batches of different tokens: a
   * semi-dual solve given only `beta` starts from the row potentials that best respond to it.
   */
  init?: {alpha?: tf.Tensor; beta?: tf.Tensor};
  /** Newton solver only: conjugate-gradient iterations per Newton step. Default 10. */
  cgIterations?: number;
  /** Read the objective back to test convergence every this many iterations. Default 5 (`'alternating'`: 2). */
  checkEvery?: number;
  /**
   * Whether the solver may read values back from the device synchronously (`dataSync`). Default
   * `tf.getBackend() !== 'webgpu'` (on webgpu a synchronous read throws in Node and destroys the
   * device in Chromium); cpu and wasm keep every check. With `false` nothing is read back during
   * the call: the cost's finiteness is not checked (a non-finite cost yields a non-finite plan),
   * tensor marginals stay on the device unchecked (their sums are not compared, and `feasible` is
   * then `true`, meaning "not checked"), no convergence check stops the iterations early (the
   * full `maxIterations` budget runs and `converged` is `false`), and any choice between iterates
   * is made per group on the device. The marginal statistics of the result are lazy either way.
   */
  hostReads?: boolean;
}

/** The output of {@link solveSparseOT}. The caller owns (and must dispose) its tensors. */
export interface SparseOTResult {
  /** `<float32>[m, n]` or `[groups, m, n]`: the transport plan recovered from the potentials. */
  plan: tf.Tensor;
  /** `<float32>[m]` or `[groups, m]`: row potentials. */
  alpha: tf.Tensor;
  /**
   * `<float32>[n]` or `[groups, n]`: column potentials. The dual optimizes them; the semi-dual
   * returns the column potentials that its plan implies (`beta_j = -gamma b_j tau_j`, with
   * `tau_j` the threshold of column j's projection), so that `(alpha, beta)` is a dual pair with
   * the same plan and value: the per-expert state to carry over as a warm start.
   */
  beta?: tf.Tensor;
  /** `<float32>[]` or `[groups]`: the objective at the returned potentials. */
  value: tf.Tensor;
  /**
   * Largest violation of a row or column sum, relative to its marginal (max over groups).
   * Computed on the device with the result and read back (one read for all statistics) on first
   * access, which must come before `dispose()`.
   */
  marginalError: number;
  /** Mean over rows of |row sum - a_i| / a_i (mean over groups). */
  meanRowError: number;
  /** Fraction of rows that receive no mass (mean over groups). */
  droppedFraction: number;
  /**
   * The same statistics read asynchronously (works on every backend, webgpu included, where the
   * getters above cannot read synchronously). Call before `dispose()`.
   */
  marginalStats(): Promise<MarginalStats>;
  /** Iterations run. */
  iterations: number;
  /** Whether the relative change of the objective fell below the tolerance (always false with `hostReads: false`: never checked). */
  converged: boolean;
  /**
   * Whether a k-sparse plan can meet both marginals (exact for uniform marginals). `true`, meaning
   * "not checked", when a marginal was a tensor and `hostReads` was false.
   */
  feasible: boolean;
  /** Disposes every tensor of the result. */
  dispose(): void;
}

/** Options of {@link sinkhorn}. */
export interface SinkhornOptions {
  /** Entropic regularization strength, > 0. Default 0.05. Log-domain updates stay stable for small values. */
  epsilon?: number;
  /** Row marginal `<float32>[m]` or `[groups, m]`. Default 1 per row. */
  a?: MarginalLike;
  /** Column marginal `<float32>[n]` or `[groups, n]`. Default `m / n` per column. */
  b?: MarginalLike;
  /** Iteration budget (one iteration updates f, then g). Default 500. */
  maxIterations?: number;
  /**
   * Stop when the largest row-sum violation relative to `a` (the columns are exact after every
   * g update) falls below this. Checked every `checkEvery` iterations. Default 1e-4.
   */
  tolerance?: number;
  /** Warm start from earlier potentials `f` `<float32>[m]` / `g` `<float32>[n]` (or batched). */
  init?: {f?: tf.Tensor; g?: tf.Tensor};
  /** Read the marginal error back every this many iterations. Default 10. */
  checkEvery?: number;
  /**
   * Whether `sinkhorn` may read values back from the device synchronously (`dataSync`). Default
   * `tf.getBackend() !== 'webgpu'` (on webgpu a synchronous read throws in Node and destroys the
   * device in Chromium); cpu and wasm keep every check. With `false` nothing is read back during
   * the call: the cost's finiteness is not checked (a non-finite cost yields a non-finite plan),
   * tensor marginals stay on the device unchecked (their sums are not compared), no convergence check stops the iterations early (the
   * full `maxIterations` budget runs and `converged` is `false`). The marginal statistics of the result are lazy either way.
   */
  hostReads?: boolean;
}

/** The output of {@link sinkhorn}. The caller owns (and must dispose) its tensors. */
export interface SinkhornResult {
  /** `<float32>[m, n]` or `[groups, m, n]`: `exp((f_i + g_j - C_ij) / epsilon)`. */
  plan: tf.Tensor;
  /** `<float32>[m]` or `[groups, m]`: row potentials. */
  f: tf.Tensor;
  /** `<float32>[n]` or `[groups, n]`: column potentials. */
  g: tf.Tensor;
  /**
   * `<float32>[]` or `[groups]`: the dual objective
   * `<f, a> + <g, b> - epsilon * sum(plan) + epsilon * sum(a)`, which equals the primal
   * `<plan, C> + epsilon * sum(plan * log(plan))` at the optimum (where `sum(plan) = sum(a)`).
   */
  value: tf.Tensor;
  /**
   * Largest violation of a row or column sum, relative to its marginal (max over groups).
   * Computed on the device with the result and read back (one read for all statistics) on first
   * access, which must come before `dispose()`.
   */
  marginalError: number;
  /** Mean over rows of |row sum - a_i| / a_i (mean over groups). */
  meanRowError: number;
  /** Iterations run. */
  iterations: number;
  /** Whether the marginal error fell below the tolerance (always false with `hostReads: false`: never checked). */
  converged: boolean;
  /** Disposes every tensor of the result. */
  dispose(): void;
}
