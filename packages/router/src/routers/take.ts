/**
 * Per-group gathering along axis 1, written as one flat gather: tfjs-backend-wasm 4.22's
 * `tf.gather(x, indices, 1, 1)` (batchDims 1) returns wrong values for rank-2 inputs beyond the
 * first group (measured: `[[10..13], [20..23]]` gathered at `[[3, 0], [1, 2]]` gives `[22, 20]` for
 * the second row instead of `[21, 22]`).
 */
import * as tf from '@tensorflow/tfjs';

/**
 * `out[g, j, ...] = x[g, indices[g, j], ...]`.
 *
 * @param x `[groups, n, ...]`
 * @param indices `<int32>[groups, k]`, each in `[0, n)`
 * @returns `[groups, k, ...]`
 *
 * @example
 * ```ts
 * takeAlongAxis1(tf.tensor2d([[10, 11], [20, 21]]), tf.tensor2d([[1, 0], [1, 1]], undefined, 'int32')).print();
 * // [[11, 10], [21, 21]]
 * ```
 */
export function takeAlongAxis1<T extends tf.Tensor>(x: T, indices: tf.Tensor2D): T {
  return tf.tidy(() => {
    const [groups, n, ...rest] = x.shape;
    const k = indices.shape[1];
    const offsets = tf.mul(tf.reshape(tf.range(0, groups, 1, 'int32'), [groups, 1]), tf.scalar(n, 'int32'));
    const flat = tf.reshape(tf.add(indices, offsets), [groups * k]);
    const rows = tf.gather(tf.reshape(x, [groups * n, ...rest]), flat);
    return tf.reshape(rows, [groups, k, ...rest]) as T;
  });
}
