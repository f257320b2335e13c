/**
 * `stopGradient`: identity forward, zero gradient backward (tfjs 4.22 has no such op).
 */
import * as tf from '@tensorflow/tfjs';

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
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const t = args[0] as tf.Tensor;
    return {value: tf.clone(t), gradFunc: (dy: tf.Tensor | tf.Tensor[]) => tf.zerosLike(dy as tf.Tensor)};
  });
  return f(x) as T;
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
  const anchor = tf.scalar(0);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: fn(),
    gradFunc: () => [tf.zerosLike(args[0] as tf.Tensor)],
  }));
  const out = f(anchor) as T;
  anchor.dispose();
  return out;
}
