/**
 * The k-sparse OT problem as a first-class object (in the shape of ott-jax's `LinearProblem`):
 * cost, marginals, cardinality k and regularization gamma, validated once and brought into the
 * one internal layout every solver works on. The forward solve, the backward (implicit) solve
 * and Sinkhorn (the same problem without k) all take a {@link SparseOTProblem}.
 *
 * Internal layout: always column-sparse and batched. The cost is kept twice: `costT
 * <float32>[groups, ni, mi]` (one internal column per row, so each column's k-sparse projection
 * runs along the last axis) and `costRows <float32>[groups, mi, ni]` (token-major, for row-wise
 * steps). A row-sparse problem is the transposed column-sparse problem.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, assertOneOf, assertPositiveInt, assertPositiveNumber} from '../core/errors';
import {checkOptions} from '../core/options';
import {feasibleForMarginals} from './feasibility';
import type {MarginalLike, Sparsity} from './types';
import {checkMarginalSums, marginalPair, resolveHostReads, validateCost} from './validate';

export {defaultHostReads} from './validate';

/**
 * What defines a problem besides its cost. Every field is optional except where a solver needs
 * it (the k-sparse solvers need `k`; Sinkhorn ignores it).
 *
 * @example
 * ```ts
 * const spec: SparseOTProblemSpec = {k: 10, gamma: 1, a: 1, b: 64 / 8, sparsity: 'column'};
 * ```
 */
export interface SparseOTProblemSpec {
  /** At most k nonzeros per column (`sparsity: 'column'`) or per row. Default: no bound (k = that side's size). */
  k?: number;
  /** Quadratic regularization strength, > 0. Default 1. */
  gamma?: number;
  /** Row marginal `<float32>[m]` or `[groups, m]` (or a number). Default 1 per row. */
  a?: MarginalLike;
  /** Column marginal `<float32>[n]` or `[groups, n]` (or a number). Default `m / n` per column. */
  b?: MarginalLike;
  /** Which side k bounds. Default `'column'`. */
  sparsity?: Sparsity;
  /** Allow synchronous reads while building and solving (see `SparseOTOptions.hostReads`). */
  hostReads?: boolean;
}

/** Every key of {@link SparseOTProblemSpec} (the compiler keeps the list complete). */
export const PROBLEM_SPEC_KEYS: readonly string[] = Object.keys({
  k: true, gamma: true, a: true, b: true, sparsity: true, hostReads: true,
} satisfies Record<keyof SparseOTProblemSpec, true>);

/**
 * A validated k-sparse OT problem in the internal layout. It owns its tensors: `dispose()`
 * releases them (the caller's cost and marginal tensors are never taken over).
 *
 * @example
 * ```ts
 * const problem = sparseOTProblem(tf.neg(gates), {k: 10}); // gates <float32>[64, 8]
 * const out = alternating().solve(problem);
 * problem.dispose();
 * ```
 */
export class SparseOTProblem {
  /** `<float32>[groups, ni, mi]`: internal cost, one internal column per row. */
  readonly costT: tf.Tensor3D;
  /** `<float32>[groups, mi, ni]`: the internal cost, token-major. */
  readonly costRows: tf.Tensor3D;
  /** `<float32>[groups, mi]`: internal row marginal. */
  readonly a: tf.Tensor2D;
  /** `<float32>[groups, ni]`: internal column marginal. */
  readonly b: tf.Tensor2D;
  /**
   * Whether synchronous device reads are allowed while building the problem and solving it.
   * Reads only decide when to stop iterating; every decision that shapes a group's result is
   * taken on the device, per group.
   */
  readonly hostReads: boolean;
  /** The cardinality bound (internal: per internal column); the bounded side's size when none was given. */
  readonly k: number;
  readonly gamma: number;
  readonly groups: number;
  /** Internal sizes: mi rows (the bounded side's count), ni columns. */
  readonly mi: number;
  readonly ni: number;
  /** Sizes of the caller's cost `[m, n]`. */
  readonly m: number;
  readonly n: number;
  /** Whether the caller's cost had a groups axis. */
  readonly batched: boolean;
  readonly sparsity: Sparsity;
  /**
   * Whether a k-sparse plan can meet the marginals (exact when uniform, necessary otherwise).
   * `true` (not checked) when a marginal stayed on the device (a tensor with `hostReads` false).
   */
  readonly feasible: boolean;
  /** The name errors about this problem report (e.g. a solver's invalid warm start). */
  readonly context: string;

  /** @internal Use {@link sparseOTProblem}. */
  constructor(fields: {
    costT: tf.Tensor3D; costRows: tf.Tensor3D; a: tf.Tensor2D; b: tf.Tensor2D; hostReads: boolean; k: number;
    gamma: number; groups: number; mi: number; ni: number; m: number; n: number; batched: boolean;
    sparsity: Sparsity; feasible: boolean; context: string;
  }) {
    this.costT = fields.costT;
    this.costRows = fields.costRows;
    this.a = fields.a;
    this.b = fields.b;
    this.hostReads = fields.hostReads;
    this.k = fields.k;
    this.gamma = fields.gamma;
    this.groups = fields.groups;
    this.mi = fields.mi;
    this.ni = fields.ni;
    this.m = fields.m;
    this.n = fields.n;
    this.batched = fields.batched;
    this.sparsity = fields.sparsity;
    this.feasible = fields.feasible;
    this.context = fields.context;
  }

  /** Whether the caller's rows are the internal rows (column sparsity). */
  get columnSparse(): boolean {
    return this.sparsity === 'column';
  }

  /** `<float32>[groups, m, n]`: the cost in the caller's orientation (a view owned by the problem). */
  get cost(): tf.Tensor3D {
    return this.columnSparse ? this.costRows : this.costT;
  }

  /** `<float32>[groups, m]` and `[groups, n]`: the marginals in the caller's orientation (owned by the problem). */
  get rowMarginal(): tf.Tensor2D {
    return this.columnSparse ? this.a : this.b;
  }

  get columnMarginal(): tf.Tensor2D {
    return this.columnSparse ? this.b : this.a;
  }

  /**
   * The same problem with another bound `k` (e.g. no bound for Sinkhorn, or the backward
   * solve's), sharing this problem's tensors: dispose only one of them.
   */
  withK(k: number): SparseOTProblem {
    return new SparseOTProblem({...this, k});
  }

  dispose(): void {
    tf.dispose([this.costT, this.costRows, this.a, this.b]);
  }
}

/**
 * Validates `cost` and `spec` and builds the {@link SparseOTProblem}. Errors name the argument
 * and echo its value (`InvalidArgumentError`, `ShapeError`, `NonFiniteError`). With
 * `hostReads` (default: `tf.getBackend() !== 'webgpu'`) this reads the cost's finiteness and the
 * marginals back once; without, tensor marginals stay on the device unchecked.
 *
 * A group whose marginals sum to 0 (all padding) is valid: every solver returns a zero plan for
 * it, and the other groups' results do not depend on it.
 *
 * @param cost `<float32>[m, n]` or `[groups, m, n]` (another numeric dtype is cast): rows are
 *   tokens, columns experts.
 * @param spec See {@link SparseOTProblemSpec}.
 * @param context The name errors report (default `'sparseOTProblem'`).
 *
 * @example
 * ```ts
 * const problem = sparseOTProblem(tf.neg(tf.softmax(logits)), {k: Math.ceil(64 * 1.25 / 8)});
 * problem.k; // 10
 * problem.dispose();
 * ```
 */
export function sparseOTProblem(cost: tf.Tensor, spec: SparseOTProblemSpec = {}, context = 'sparseOTProblem'): SparseOTProblem {
  if (spec === null || typeof spec !== 'object') throw new InvalidArgumentError('options', 'an object', spec, context);
  checkOptions(spec, PROBLEM_SPEC_KEYS, context);
  const hostReads = resolveHostReads(spec.hostReads, context);
  validateCost(cost, context, hostReads);
  const sparsity = assertOneOf('sparsity', spec.sparsity ?? 'column', ['column', 'row'] as const, context);
  const batched = cost.rank === 3;
  const groups = batched ? cost.shape[0] : 1;
  const m = cost.shape[cost.rank - 2];
  const n = cost.shape[cost.rank - 1];
  const column = sparsity === 'column';
  const bound = column ? m : n;
  const k = spec.k === undefined ? bound : assertPositiveInt('k', spec.k, context);
  if (k > bound) {
    const side = column ? `the number of rows m = ${m} (k bounds the nonzeros per column)` : `the number of columns n = ${n} (k bounds the nonzeros per row)`;
    throw new InvalidArgumentError('k', `at most ${side}`, k, context);
  }
  const gamma = assertPositiveNumber('gamma', spec.gamma ?? 1, context);
  const aPair = marginalPair('a', spec.a, groups, m, 1, batched, context, hostReads);
  const bPair = marginalPair('b', spec.b, groups, n, m / n, batched, context, hostReads);
  if (aPair.host && bPair.host) checkMarginalSums(aPair.host, bPair.host, groups, context);
  const mi = column ? m : n;
  const ni = column ? n : m;
  const aHost = column ? aPair.host : bPair.host;
  const bHost = column ? bPair.host : aPair.host;
  let feasible = true;
  if (aHost && bHost) {
    for (let g = 0; g < groups; g++) {
      feasible &&= feasibleForMarginals(aHost.subarray(g * mi, (g + 1) * mi), bHost.subarray(g * ni, (g + 1) * ni), k);
    }
  }
  const [c3, c3T] = tf.tidy(() => {
    const c = tf.reshape(tf.cast(cost, 'float32'), [groups, m, n]) as tf.Tensor3D;
    return [c, tf.transpose(c, [0, 2, 1]) as tf.Tensor3D];
  });
  const aOrig = aPair.device();
  const bOrig = bPair.device();
  return new SparseOTProblem({
    costT: column ? c3T : c3, costRows: column ? c3 : c3T, a: column ? aOrig : bOrig, b: column ? bOrig : aOrig,
    hostReads, k, gamma, groups, mi, ni, m, n, batched, sparsity, feasible, context,
  });
}
