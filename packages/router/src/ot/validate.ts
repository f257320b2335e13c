/**
 * Input checks of the OT core, run once when a problem is built: the cost (type, rank,
 * finiteness), the marginals (shape, sign, equal sums per group) and warm starts. Errors name the
 * argument and echo its value (`InvalidArgumentError`, `ShapeError`, `NonFiniteError`). With
 * `hostReads` false nothing is read back from the device (see `SparseOTOptions.hostReads`).
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, NonFiniteError, ShapeError} from '../core/errors';
import type {MarginalLike} from './types';

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
 * Finds the first non-finite entry of `t` (one synchronous read of a flag, and of the values
 * only when one is bad); returns it, or null when every entry is finite. The test runs in
 * float32: tfjs-wasm's `isFinite` is wrong for negative int32 values (it reports them as
 * non-finite), so integer tensors are cast first.
 */
export function firstNonFinite(t: tf.Tensor): number | null {
  const finite = tf.tidy(() => tf.all(tf.isFinite(t.dtype === 'float32' ? t : tf.cast(t, 'float32'))));
  const ok = finite.dataSync()[0];
  finite.dispose();
  if (ok) return null;
  const v = t.dataSync();
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return v[i];
  return NaN;
}

/** Throws an `InvalidArgumentError` naming `name` when `t` was disposed (tfjs would fail deep inside with a TypeError). */
function assertLive(name: string, t: tf.Tensor, context: string): void {
  if (t.isDisposed) throw new InvalidArgumentError(name, 'a tensor that is not disposed', `a disposed tensor of shape [${t.shape.join(', ')}]`, context);
}

/**
 * Validates that `cost` is a finite `[m, n]` or `[groups, m, n]` tensor (any numeric dtype; the
 * solvers cast it to float32). With `hostReads` false only its type, rank and size are checked
 * (no read-back): a non-finite cost then yields a non-finite plan instead of an error. A disposed
 * cost is an `InvalidArgumentError`.
 */
export function validateCost(cost: unknown, context: string, hostReads = true): tf.Tensor {
  if (!(cost instanceof tf.Tensor)) throw new InvalidArgumentError('cost', 'a tf.Tensor', cost, context);
  assertLive('cost', cost, context);
  if (cost.rank !== 2 && cost.rank !== 3) {
    throw new ShapeError('cost', 'of shape [m, n] or [groups, m, n]', cost.shape, context);
  }
  if (cost.size === 0) throw new ShapeError('cost', 'non-empty', cost.shape, context);
  if (!hostReads) return cost;
  const bad = firstNonFinite(cost);
  if (bad !== null) throw new NonFiniteError('cost', 'finite (no NaN or Infinity)', bad, context);
  return cost;
}

/** Throws a `ShapeError` unless `shape` is `[]`, `[len]` or (batched) `[groups, len]`. */
function checkMarginalShape(name: string, shape: number[], groups: number, len: number, batched: boolean, context: string): void {
  const ok = shape.length === 0 || (shape.length === 1 && shape[0] === len) ||
    (batched && shape.length === 2 && shape[0] === groups && shape[1] === len);
  if (!ok) throw new ShapeError(name, batched ? `of shape [${len}] or [${groups}, ${len}]` : `of shape [${len}]`, shape, context);
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
    assertLive(name, value, context);
    data = value.dataSync();
    shape = value.shape;
  } else if (Array.isArray(value) || value instanceof Float32Array) {
    data = value;
    shape = [value.length];
  } else {
    throw new InvalidArgumentError(name, 'a number, an array or a tf.Tensor', value, context);
  }
  checkMarginalShape(name, shape, groups, len, batched, context);
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
  checkMarginalShape(name, shape, groups, len, batched, context);
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

/**
 * Throws unless every group's marginals have equal sums (relative tolerance 1e-4). A group whose
 * marginals both sum to 0 (all padding) is valid: its plan is zero.
 */
export function checkMarginalSums(a: Float32Array, b: Float32Array, groups: number, context: string): void {
  const m = a.length / groups;
  const n = b.length / groups;
  for (let g = 0; g < groups; g++) {
    let sa = 0;
    let sb = 0;
    for (let i = 0; i < m; i++) sa += a[g * m + i];
    for (let j = 0; j < n; j++) sb += b[g * n + j];
    if (Math.abs(sa - sb) > 1e-4 * Math.max(sa, sb)) {
      throw new InvalidArgumentError(
        'b', `a marginal whose sum equals the sum of a (${sa})${groups > 1 ? ` in group ${g}` : ''}`, sb, context);
    }
  }
}

/**
 * Validates a warm-start tensor of length `len` (or `[groups, len]`): its shape and, when
 * `hostReads` allows a read, its finiteness (a NaN or Infinity potential would poison every
 * iterate). Returns it as `<float32>[groups, len]`.
 */
export function readInit(
  name: string, t: tf.Tensor | undefined, groups: number, len: number, batched: boolean, context: string, hostReads = true,
): tf.Tensor2D | undefined {
  if (t === undefined) return undefined;
  if (!(t instanceof tf.Tensor)) throw new InvalidArgumentError(name, 'a tf.Tensor', t, context);
  assertLive(name, t, context);
  const ok = (t.rank === 1 && t.shape[0] === len) || (batched && t.rank === 2 && t.shape[0] === groups && t.shape[1] === len);
  if (!ok) throw new ShapeError(name, batched ? `of shape [${len}] or [${groups}, ${len}]` : `of shape [${len}]`, t.shape, context);
  if (hostReads) {
    const bad = firstNonFinite(t);
    if (bad !== null) throw new NonFiniteError(name, 'finite (no NaN or Infinity)', bad, context);
  }
  return tf.tidy(() => tf.broadcastTo(tf.reshape(tf.cast(t, 'float32'), [-1, len]), [groups, len]) as tf.Tensor2D);
}

