/**
 * Public types of the k-sparse optimal-transport core: the options of a solve and its result.
 * The problem (cost + marginals + k + gamma), the solvers and the result are kept apart.
 */
import * as tf from '@tensorflow/tfjs';

/** Which side of the plan `k` bounds: `'column'` (an expert takes at most k tokens) or `'row'`. */
export type Sparsity = 'column' | 'row';

/** `'semidual'` optimizes the row potentials alpha only; `'dual'` optimizes alpha and beta. */
export type Formulation = 'semidual' | 'dual';

/**
 * Solver of the (semi-)dual. `'adam'` reproduces the released V-MoE reference (learning rate
 * 1e-2, 20 iterations from zero). `'lbfgs'` is the fast default (see the solver's docs).
 */
export type SolverName = 'adam' | 'lbfgs';

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
  /** Default `'lbfgs'`. */
  solver?: SolverName;
  /** Adam learning rate. Default 1e-2. */
  learningRate?: number;
  /** Iteration budget. Default 20 for `'adam'`, solver-specific otherwise. */
  maxIterations?: number;
  /** Convergence tolerance on the relative change of the objective value. */
  tolerance?: number;
  /** Warm start from earlier potentials (e.g. `result.alpha`, `result.beta`). */
  init?: {alpha?: tf.Tensor; beta?: tf.Tensor};
}

/** The output of {@link solveSparseOT}. The caller owns (and must dispose) its tensors. */
export interface SparseOTResult {
  /** `<float32>[m, n]` or `[groups, m, n]`: the transport plan recovered from the potentials. */
  plan: tf.Tensor;
  /** `<float32>[m]` or `[groups, m]`: row potentials. */
  alpha: tf.Tensor;
  /** `<float32>[n]` or `[groups, n]`: column potentials (dual formulation only). */
  beta?: tf.Tensor;
  /** `<float32>[]` or `[groups]`: the objective at the returned potentials. */
  value: tf.Tensor;
  /** Largest violation of a row or column sum, relative to its marginal (max over groups). */
  marginalError: number;
  /** Mean over rows of |row sum - a_i| / a_i (mean over groups). */
  meanRowError: number;
  /** Fraction of rows that receive no mass (mean over groups). */
  droppedFraction: number;
  /** Iterations run. */
  iterations: number;
  /** Whether the relative change of the objective fell below the tolerance. */
  converged: boolean;
  /** Whether a k-sparse plan can meet both marginals (exact for uniform marginals). */
  feasible: boolean;
  /** Disposes every tensor of the result. */
  dispose(): void;
}
