/**
 * The k-sparse OT problem: validated cost, marginals, k and gamma, brought into the one internal
 * layout every solver works on. Internally the problem is always column-sparse and batched, and
 * the cost is stored transposed, columns as rows, `costT <float32>[groups, n, m]`, so that each
 * column's k-sparse projection runs along the last axis. A row-sparse problem is the transposed
 * column-sparse problem, so its internal `costT` is the original cost itself.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, NonFiniteError, ShapeError, assertOneOf, assertPositiveInt, assertPositiveNumber} from '../core/errors';
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
  /**
   * Host copies of `a` and `b` (`groups * mi`, `groups * ni` values), or null when a marginal
   * was given as a tensor and `hostReads` is false (it then stays on the device, unread).
   */
  aHost: Float32Array | null;
  bHost: Float32Array | null;
  /** Mean entry of `a` and of `b` (from the host copies; estimated when they are null, see {@link buildProblem}). */
  meanA: number;
  meanB: number;
  /** Whether synchronous device reads were allowed while building the problem and solving it. */
  hostReads: boolean;
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
  /**
   * Whether a k-sparse plan can meet the marginals (exact when uniform, necessary otherwise).
   * `true` (not checked) when a marginal stayed on the device (`aHost` or `bHost` null).
   */
  feasible: boolean;
  dispose(): void;
}

/**
 * The default of the `hostReads` option: `tf.getBackend() !== 'webgpu'`. On webgpu,
 * tfjs-backend-webgpu's synchronous reads need an OffscreenCanvas (absent in Node, where they
 * throw) and, in Chromium, destroy the device; every other backend reads synchronously at no risk.
 *
 * @example
 * ```ts
 * defaultHostReads(); // true on 'cpu' and 'wasm', false on 'webgpu'
 * ```
 */
export function defaultHostReads(): boolean {
  return tf.getBackend() !== 'webgpu';
}

/** Validates an optional `hostReads` option; returns it, or {@link defaultHostReads} when undefined. */
export function resolveHostReads(value: unknown, context: string): boolean {
  if (value === undefined) return defaultHostReads();
  if (typeof value !== 'boolean') throw new InvalidArgumentError('hostReads', 'a boolean', value, context);
  return value;
}

/**
 * Validates that `cost` is a finite `<float32>[m, n]` or `[groups, m, n]` tensor. With
 * `hostReads` false only its type, rank and size are checked (no read-back): a non-finite cost
 * then yields a non-finite plan instead of an error.
 */
export function validateCost(cost: unknown, context: string, hostReads = true): tf.Tensor {
  if (!(cost instanceof tf.Tensor)) throw new InvalidArgumentError('cost', 'a tf.Tensor', cost, context);
  if (cost.rank !== 2 && cost.rank !== 3) {
    throw new ShapeError('cost', 'of shape [m, n] or [groups, m, n]', cost.shape, context);
  }
  if (cost.size === 0) throw new ShapeError('cost', 'non-empty', cost.shape, context);
  if (!hostReads) return cost;
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

/**
 * A marginal given as a tensor, kept on the device (no read-back, so neither finiteness nor
 * signs are checked): its shape is checked and it is broadcast to `<float32>[groups, len]`.
 * Numbers and arrays go through {@link readMarginal} instead (they are on the host already).
 */
export function deviceMarginal(
  name: string, value: tf.Tensor, groups: number, len: number, batched: boolean, context: string,
): tf.Tensor2D {
  const shape = value.shape;
  const okShape =
    shape.length === 0 || (shape.length === 1 && shape[0] === len) ||
    (batched && shape.length === 2 && shape[0] === groups && shape[1] === len);
  if (!okShape) {
    const want = batched ? `of shape [${len}] or [${groups}, ${len}]` : `of shape [${len}]`;
    throw new ShapeError(name, want, shape, context);
  }
  return tf.tidy(() => tf.broadcastTo(tf.reshape(tf.cast(value, 'float32'), [-1, shape.length === 0 ? 1 : len]), [groups, len]) as tf.Tensor2D);
}

/**
 * A marginal as a device tensor `<float32>[groups, len]` plus its host copy, or null for the
 * host copy when `value` is a tensor and `hostReads` is false.
 */
export function marginalPair(
  name: string, value: MarginalLike | undefined, groups: number, len: number, fill: number, batched: boolean,
  context: string, hostReads: boolean,
): {host: Float32Array | null; device: () => tf.Tensor2D} {
  if (!hostReads && value instanceof tf.Tensor) {
    const t = value;
    return {host: null, device: () => deviceMarginal(name, t, groups, len, batched, context)};
  }
  const host = readMarginal(name, value, groups, len, fill, batched, context);
  return {host, device: () => tf.tensor2d(host, [groups, len])};
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
  /** Allow synchronous reads (default {@link defaultHostReads}); see `SparseOTOptions.hostReads`. */
  hostReads?: boolean;
}

/**
 * Validates `cost` and the options and builds the internal problem. Errors name the argument
 * and echo its value (`InvalidArgumentError`, `ShapeError`, `NonFiniteError`).
 *
 * @param cost `<float32>[m, n]` or `[groups, m, n]`.
 */
export function buildProblem(cost: tf.Tensor, spec: ProblemSpec, context: string): OTProblem {
  if (spec === null || typeof spec !== 'object') throw new InvalidArgumentError('options', 'an object', spec, context);
  validateCost(cost, context, resolveHostReads(spec.hostReads, context));
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
  const hostReads = resolveHostReads(spec.hostReads, context);
  const aPair = marginalPair('a', spec.a, groups, m, 1, batched, context, hostReads);
  const bPair = marginalPair('b', spec.b, groups, n, m / n, batched, context, hostReads);
  if (aPair.host && bPair.host) checkMarginalSums(aPair.host, bPair.host, groups, context);
  const column = sparsity === 'column';
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
  // Means of the marginals (the solvers' step sizes and start choice use them). A marginal on the
  // device is estimated from the other side (equal sums) or, when both are there, as if uniform
  // with one unit per original row.
  const mean = (h: Float32Array): number => {
    let s = 0;
    for (let i = 0; i < h.length; i++) s += h[i] / h.length;
    return s;
  };
  const meanA = aHost ? mean(aHost) : bHost ? (mean(bHost) * ni) / mi : column ? 1 : m / n;
  const meanB = bHost ? mean(bHost) : (meanA * mi) / ni;
  const costT = tf.tidy(() => {
    const c3 = tf.reshape(tf.cast(cost, 'float32'), [groups, m, n]);
    return (column ? tf.transpose(c3, [0, 2, 1]) : tf.clone(c3)) as tf.Tensor3D;
  });
  const aOrig = aPair.device();
  const bOrig = bPair.device();
  const a = column ? aOrig : bOrig;
  const b = column ? bOrig : aOrig;
  return {
    costT, a, b, aHost, bHost, meanA, meanB, hostReads, k, gamma, groups, mi, ni, m, n, batched, sparsity, feasible,
    dispose: () => tf.dispose([costT, a, b]),
  };
}
