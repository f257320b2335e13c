/**
 * The k-sparse OT problem: validated cost, marginals, k and gamma, brought into the one internal
 * layout every solver works on. Internally the problem is always column-sparse and batched, and
 * the cost is stored transposed, columns as rows, `costT <float32>[groups, n, m]`, so that each
 * column's k-sparse projection runs along the last axis. A row-sparse problem is the transposed
 * column-sparse problem, so its internal `costT` is the original cost itself.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, NonFiniteError, ShapeError, assertOneOf, assertPositiveInt, assertPositiveNumber} from '../errors';
import {feasibleForMarginals} from './feasibility';
import type {MarginalLike, Sparsity} from './types';

/** A validated problem in the internal layout. The tensors belong to the problem. */
export interface OTProblem {
  /** `<float32>[groups, ni, mi]`: internal cost, one internal column per row. */
  costT: tf.Tensor3D;
  /** `<float32>[groups, mi]`: internal row marginal. */
  a: tf.Tensor2D;
  /** `<float32>[groups, ni]`: internal column marginal. */
  b: tf.Tensor2D;
  /** Host copies of `a` and `b` (`groups * mi`, `groups * ni` values). */
  aHost: Float32Array;
  bHost: Float32Array;
  k: number;
  gamma: number;
  groups: number;
  /** Internal sizes: mi rows (bounded side's count), ni columns. */
  mi: number;
  ni: number;
  /** Original sizes of the cost. */
  m: number;
  n: number;
  batched: boolean;
  sparsity: Sparsity;
  /** Whether a k-sparse plan can meet the marginals (exact when uniform, necessary otherwise). */
  feasible: boolean;
  dispose(): void;
}

/** Validates that `cost` is a finite `<float32>[m, n]` or `[groups, m, n]` tensor. */
export function validateCost(cost: unknown, context: string): tf.Tensor {
  if (!(cost instanceof tf.Tensor)) throw new InvalidArgumentError('cost', 'a tf.Tensor', cost, context);
  if (cost.rank !== 2 && cost.rank !== 3) {
    throw new ShapeError('cost', 'of shape [m, n] or [groups, m, n]', cost.shape, context);
  }
  if (cost.size === 0) throw new ShapeError('cost', 'non-empty', cost.shape, context);
  const finite = tf.tidy(() => tf.all(tf.isFinite(cost)));
  const ok = finite.dataSync()[0];
  finite.dispose();
  if (!ok) {
    const v = cost.dataSync();
    let bad = NaN;
    for (let i = 0; i < v.length; i++) {
      if (!Number.isFinite(v[i])) {
        bad = v[i];
        break;
      }
    }
    throw new NonFiniteError('cost', 'finite (no NaN or Infinity)', bad, context);
  }
  return cost;
}

/**
 * Reads a marginal into `groups * len` host values, broadcasting a number or an unbatched
 * vector over groups. Checks shape, finiteness and non-negativity.
 */
export function readMarginal(
  name: string, value: MarginalLike | undefined, groups: number, len: number, fill: number, batched: boolean, context: string,
): Float32Array {
  const out = new Float32Array(groups * len);
  if (value === undefined) {
    out.fill(fill);
    return out;
  }
  let data: ArrayLike<number>;
  let shape: number[];
  if (typeof value === 'number') {
    data = [value];
    shape = [];
  } else if (value instanceof tf.Tensor) {
    data = value.dataSync();
    shape = value.shape;
  } else if (Array.isArray(value) || value instanceof Float32Array) {
    data = value;
    shape = [value.length];
  } else {
    throw new InvalidArgumentError(name, 'a number, an array or a tf.Tensor', value, context);
  }
  const okShape =
    shape.length === 0 || (shape.length === 1 && shape[0] === len) ||
    (batched && shape.length === 2 && shape[0] === groups && shape[1] === len);
  if (!okShape) {
    const want = batched ? `of shape [${len}] or [${groups}, ${len}]` : `of shape [${len}]`;
    throw new ShapeError(name, want, shape, context);
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new NonFiniteError(name, 'finite', data[i], context);
    if (data[i] < 0) throw new InvalidArgumentError(name, 'non-negative', Array.from(data), context);
  }
  if (shape.length === 0) out.fill(data[0]);
  else if (shape.length === 1) for (let g = 0; g < groups; g++) out.set(Array.from(data), g * len);
  else out.set(Array.from(data));
  return out;
}

/** Throws unless every group's marginals have equal, positive sums (relative tolerance 1e-4). */
export function checkMarginalSums(a: Float32Array, b: Float32Array, groups: number, context: string): void {
  const m = a.length / groups;
  const n = b.length / groups;
  for (let g = 0; g < groups; g++) {
    let sa = 0;
    let sb = 0;
    for (let i = 0; i < m; i++) sa += a[g * m + i];
    for (let j = 0; j < n; j++) sb += b[g * n + j];
    if (!(sa > 0)) throw new InvalidArgumentError('a', 'a marginal with a positive sum', sa, context);
    if (Math.abs(sa - sb) > 1e-4 * Math.max(sa, sb)) {
      throw new InvalidArgumentError(
        'b', `a marginal whose sum equals the sum of a (${sa})${groups > 1 ? ` in group ${g}` : ''}`, sb, context);
    }
  }
}

/** Validates a warm-start tensor of length `len` (or `[groups, len]`); returns it as `[groups, len]`. */
export function readInit(
  name: string, t: tf.Tensor | undefined, groups: number, len: number, batched: boolean, context: string,
): tf.Tensor2D | undefined {
  if (t === undefined) return undefined;
  if (!(t instanceof tf.Tensor)) throw new InvalidArgumentError(name, 'a tf.Tensor', t, context);
  const ok = (t.rank === 1 && t.shape[0] === len) || (batched && t.rank === 2 && t.shape[0] === groups && t.shape[1] === len);
  if (!ok) throw new ShapeError(name, batched ? `of shape [${len}] or [${groups}, ${len}]` : `of shape [${len}]`, t.shape, context);
  return tf.tidy(() => tf.broadcastTo(tf.reshape(tf.cast(t, 'float32'), [-1, len]), [groups, len]) as tf.Tensor2D);
}

/** Options shared by everything that builds an {@link OTProblem}. */
export interface ProblemSpec {
  k: number;
  gamma?: number;
  a?: MarginalLike;
  b?: MarginalLike;
  sparsity?: Sparsity;
}

/**
 * Validates `cost` and the options and builds the internal problem. Errors name the argument
 * and echo its value (`InvalidArgumentError`, `ShapeError`, `NonFiniteError`).
 *
 * @param cost `<float32>[m, n]` or `[groups, m, n]`.
 */
export function buildProblem(cost: tf.Tensor, spec: ProblemSpec, context: string): OTProblem {
  if (spec === null || typeof spec !== 'object') throw new InvalidArgumentError('options', 'an object', spec, context);
  validateCost(cost, context);
  const sparsity = assertOneOf('sparsity', spec.sparsity ?? 'column', ['column', 'row'] as const, context);
  const batched = cost.rank === 3;
  const groups = batched ? cost.shape[0] : 1;
  const m = cost.shape[cost.rank - 2];
  const n = cost.shape[cost.rank - 1];
  const k = assertPositiveInt('k', spec.k, context);
  const bound = sparsity === 'column' ? m : n;
  if (k > bound) {
    const side = sparsity === 'column' ? `the number of rows m = ${m} (k bounds the nonzeros per column)` : `the number of columns n = ${n} (k bounds the nonzeros per row)`;
    throw new InvalidArgumentError('k', `at most ${side}`, k, context);
  }
  const gamma = assertPositiveNumber('gamma', spec.gamma ?? 1, context);
  const aHostOrig = readMarginal('a', spec.a, groups, m, 1, batched, context);
  const bHostOrig = readMarginal('b', spec.b, groups, n, m / n, batched, context);
  checkMarginalSums(aHostOrig, bHostOrig, groups, context);
  const column = sparsity === 'column';
  const mi = column ? m : n;
  const ni = column ? n : m;
  const aHost = column ? aHostOrig : bHostOrig;
  const bHost = column ? bHostOrig : aHostOrig;
  let feasible = true;
  for (let g = 0; g < groups; g++) {
    feasible &&= feasibleForMarginals(aHost.subarray(g * mi, (g + 1) * mi), bHost.subarray(g * ni, (g + 1) * ni), k);
  }
  const costT = tf.tidy(() => {
    const c3 = tf.reshape(tf.cast(cost, 'float32'), [groups, m, n]);
    return (column ? tf.transpose(c3, [0, 2, 1]) : tf.clone(c3)) as tf.Tensor3D;
  });
  const a = tf.tensor2d(aHost, [groups, mi]);
  const b = tf.tensor2d(bHost, [groups, ni]);
  return {
    costT, a, b, aHost, bHost, k, gamma, groups, mi, ni, m, n, batched, sparsity, feasible,
    dispose: () => tf.dispose([costT, a, b]),
  };
}
