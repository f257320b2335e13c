/**
 * The gradient barriers that tfjs 4.22 lacks, all built on one mechanism ({@link noGrad}, a
 * `tf.customGrad` whose gradient is zero):
 * - `noGrad(fn)`: a computation that autodiff treats as a constant (masks, freeze decisions,
 *   anything built from comparisons or from ops without a gradient such as TopK or ScatterNd);
 * - `stopGradient(x)`: identity forward, zero gradient;
 * - `untracked(fn)`: a computation of no tensor input (index tables) kept off the tape;
 * - `positiveMask(x)`: `1` where `x > 0`, as a constant (the support of a plan).
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Wraps a computation whose result autodiff must treat as a constant: its gradient with respect
 * to every input is zero. Use it for support masks, freeze decisions and anything built from
 * comparisons (tfjs has no `stopGradient` op, and ops such as `greater`, `equal`, `logicalAnd`,
 * `TopK` or `ScatterNd` have no gradient: a taped path through them makes `tf.grad` throw).
 *
 * @param fn a function of one or more tensors returning one tensor.
 * @returns the same function, with a zero gradient.
 *
 * @example
 * ```ts
 * const positive = noGrad((x: tf.Tensor) => tf.cast(tf.greater(x, 0), 'float32'));
 * const relu = (x: tf.Tensor) => tf.mul(x, positive(x)); // differentiable: d/dx = positive(x)
 * ```
 */
export function noGrad(fn: (...xs: tf.Tensor[]) => tf.Tensor): (...xs: tf.Tensor[]) => tf.Tensor {
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const xs = args.slice(0, -1) as tf.Tensor[];
    return {value: fn(...xs), gradFunc: () => xs.map((x) => tf.zerosLike(x))};
  });
  return (...xs: tf.Tensor[]) => op(...xs);
}

const identityNoGrad = noGrad((x: tf.Tensor) => tf.clone(x));

/**
 * Returns `x` unchanged, but gradients do not flow through it.
 *
 * @param x any float32 tensor, e.g. `<float32>[groups, groupSize, E]`
 * @returns a tensor equal to `x`, with zero gradient
 *
 * @example
 * ```ts
 * const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(stopGradient(x), x)));
 * g(tf.tensor1d([3])).print(); // [3]: only the second factor is differentiated
 * ```
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return identityNoGrad(x) as T;
}

/**
 * Runs `fn` without recording it on the gradient tape and returns its (single) output,
 * disconnected from every variable. Use it for index computations (top-k choices, capacity
 * positions, scatter tables) whose ops have no gradient in tfjs: a tensor downstream of a
 * variable that reaches a loss through such ops would otherwise make `tf.grad` throw
 * ("gradient function not found for TopK / ScatterNd"), even when its gradient is zero.
 *
 * @param fn computes one tensor, e.g. `<int32>[groups, groupSize, k]` expert choices
 *
 * @example
 * ```ts
 * const choices = untracked(() => tf.topk(gates, 2).indices); // no tape node for TopK
 * ```
 */
export function untracked<T extends tf.Tensor>(fn: () => T): T {
  // tf.customGrad needs a tensor input: a scalar anchor that nothing reads.
  const anchor = tf.scalar(0);
  const out = noGrad(() => fn())(anchor) as T;
  anchor.dispose();
  return out;
}

/**
 * `<float32>` 1 where `x > 0`, 0 elsewhere, as a constant for autodiff (e.g. the support of a
 * plan `<float32>[groups, m, n]`).
 *
 * @example
 * ```ts
 * positiveMask(tf.tensor1d([0.5, 0, -1])); // [1, 0, 0]
 * ```
 */
export const positiveMask: (x: tf.Tensor) => tf.Tensor = noGrad((x: tf.Tensor) => tf.cast(tf.greater(x, 0), 'float32'));
