/**
 * One-hot encoding for any depth >= 1 (tfjs 4.22's `tf.oneHot` rejects depth 1, which a
 * single-expert layer needs).
 */
import * as tf from '@tensorflow/tfjs';

/**
 * `<float32>[...indices.shape, depth]`: 1 where the last axis equals the index, else 0; an index
 * outside `[0, depth)` (e.g. -1) gives a row of zeros.
 *
 * @param indices `<int32>` any shape
 * @param depth number of classes, >= 1
 *
 * @example
 * ```ts
 * oneHot(tf.tensor1d([0, -1], 'int32'), 1).print(); // [[1], [0]]
 * ```
 */
export function oneHot(indices: tf.Tensor, depth: number): tf.Tensor {
  return tf.tidy(() => {
    const ints = indices.dtype === 'int32' ? indices : tf.cast(indices, 'int32');
    // The OneHot kernel (zero rows for indices outside [0, depth) on every backend); the
    // broadcasting Equal below runs element by element on tfjs-wasm (0.6 ms for [128, 17] x 4,
    // 80x the OneHot kernel). int32 then a cast: tfjs-wasm 4.22's OneHot writes int32 bits
    // whatever its dtype (a float32 one-hot holds 1.4e-45).
    if (depth >= 2) return tf.cast(tf.oneHot(ints, depth), 'float32');
    const classes = tf.reshape(tf.range(0, depth, 1, 'int32'), [...indices.shape.map(() => 1), depth]);
    return tf.cast(tf.equal(tf.expandDims(ints, -1), classes), 'float32');
  });
}
