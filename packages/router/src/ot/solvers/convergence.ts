/**
 * The one convergence test of the OT solvers, and the per-group selection it needs.
 *
 * Every decision a solver takes is taken per group, on the device: a group whose value changed
 * by at most `tolerance * max(1, |value|)` since the last check is done, and from then on its
 * state is frozen (every later iterate keeps that group's values bit for bit). So a group's
 * result never depends on the other groups of the batch, nor on how long the loop runs for
 * them, nor on whether the host reads anything: host reads (`hostReads`) only let the loop stop
 * once every group is done.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Per group, `x` where `mask` holds and `y` elsewhere: `mask <bool>[groups]`, `x` and `y` of
 * the same shape `[groups, ...]`. A new tensor; the inputs stay the caller's. Boolean `x` and
 * `y` are selected as float32 (tfjs-backend-wasm 4.22's `Select` on bool operands writes out of
 * bounds and corrupts the wasm heap).
 *
 * @example
 * ```ts
 * whereGroups(tf.tensor1d([1, 0], 'bool'), tf.ones([2, 3]), tf.zeros([2, 3])); // [[1,1,1],[0,0,0]]
 * ```
 */
export function whereGroups<T extends tf.Tensor>(mask: tf.Tensor, x: T, y: T): T {
  return tf.tidy(() => {
    const shape = [x.shape[0], ...x.shape.slice(1).map(() => 1)];
    const m = tf.broadcastTo(tf.reshape(mask, shape), x.shape);
    if (x.dtype !== 'bool') return tf.where(m, x, y) as T;
    return tf.greater(tf.where(m, tf.cast(x, 'float32'), tf.cast(y, 'float32')), 0) as T;
  });
}

/**
 * `<bool>[groups]`: whether `|value - last| <= tolerance * max(1, |value|)`, per group.
 *
 * @param value `<float32>[groups]` @param last `<float32>[groups]`
 *
 * @example
 * ```ts
 * valueSettled(tf.tensor1d([1, 2]), tf.tensor1d([1, 3]), 1e-5); // [true, false]
 * ```
 */
export function valueSettled(value: tf.Tensor, last: tf.Tensor, tolerance: number): tf.Tensor1D {
  return tf.tidy(() => tf.lessEqual(tf.abs(tf.sub(value, last)), tf.mul(tf.maximum(tf.abs(value), 1), tolerance)) as tf.Tensor1D);
}

/**
 * Tracks which groups are done. `check(value)` compares each group's value with its value at
 * the previous check and marks the settled ones done; {@link GroupConvergence.freeze} keeps a
 * done group's state; `allDone()` reads one flag back (only with host reads; false otherwise).
 *
 * @example
 * ```ts
 * const conv = new GroupConvergence(ev.value, 1e-5, problem.hostReads);
 * for (let it = 1; it <= maxIterations; it++) {
 *   state = conv.freeze(step(state), state); // done groups keep their state
 *   if (it % checkEvery === 0 && (conv.check(state.value), conv.allDone())) break;
 * }
 * conv.dispose();
 * ```
 */
export class GroupConvergence {
  /** `<bool>[groups]`: the groups that are done. */
  done: tf.Tensor1D;
  private last: tf.Tensor1D;

  /** @param value0 `<float32>[groups]`: the value at the start (not taken over). */
  constructor(value0: tf.Tensor1D, private readonly tolerance: number, private readonly hostReads: boolean) {
    this.last = tf.clone(value0);
    this.done = tf.zeros(value0.shape, 'bool');
  }

  /** Marks the groups whose value settled since the last check as done (value: `<float32>[groups]`). */
  check(value: tf.Tensor1D): void {
    const settled = valueSettled(value, this.last, this.tolerance);
    const lastN = whereGroups(this.done, this.last, value);
    this.last.dispose();
    this.last = lastN;
    this.markDone(settled);
    settled.dispose();
  }

  /** Marks the groups where `flags` (`<bool>[groups]`, not taken over) holds as done, by another criterion. */
  markDone(flags: tf.Tensor): void {
    const next = tf.logicalOr(this.done, flags) as tf.Tensor1D;
    this.done.dispose();
    this.done = next;
  }

  /** Per group: `prev` where the group is done, `next` elsewhere (new tensors). */
  freeze<T extends tf.Tensor>(next: T, prev: T): T {
    return whereGroups(this.done, prev, next);
  }

  /** Whether every group is done: one synchronous read with host reads, `false` without. */
  allDone(): boolean {
    return allGroups(tf.clone(this.done), this.hostReads);
  }

  dispose(): void {
    tf.dispose([this.done, this.last]);
  }
}

/**
 * Reads whether every entry of `flags <bool>[groups]` holds (one synchronous read), or returns
 * false without host reads. Disposes `flags`.
 *
 * @example
 * ```ts
 * const converged = allGroups(done, problem.hostReads);
 * ```
 */
export function allGroups(flags: tf.Tensor, hostReads: boolean): boolean {
  if (!hostReads) {
    flags.dispose();
    return false;
  }
  const all = tf.all(flags);
  const r = all.dataSync()[0] === 1;
  tf.dispose([all, flags]);
  return r;
}
