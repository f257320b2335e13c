/**
 * The routers' one-hot encoding on hand-worked cases: every depth (1 included, which tf.oneHot
 * rejects), indices outside [0, depth) as zero rows, float indices, any rank.
 */
import * as tf from '@tensorflow/tfjs';
import {describeBackends, expectNoLeaks} from '../helpers/backends';
import {oneHot} from '../../src/routers/one-hot';

describeBackends('oneHot', () => {
  it('encodes hand-worked indices at depth 1, 2 and 4; out-of-range indices give zero rows', () => {
    const idx = tf.tensor2d([[0, -1, 3], [4, 2, 1]], [2, 3], 'int32');
    const four = oneHot(idx, 4);
    expect(four.dtype).toBe('float32');
    expect(four.shape).toEqual([2, 3, 4]);
    expect(four.arraySync()).toEqual([[[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]], [[0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]]]);
    const two = oneHot(tf.tensor1d([1, 0, -1, 2], 'int32'), 2);
    expect(two.arraySync()).toEqual([[0, 1], [1, 0], [0, 0], [0, 0]]);
    const one = oneHot(tf.tensor1d([0, -1, 1], 'int32'), 1);
    expect(one.dtype).toBe('float32');
    expect(one.arraySync()).toEqual([[1], [0], [0]]);
    // Float indices (e.g. a reshaped float tensor of expert ids) are cast first.
    const three = oneHot(tf.tensor1d([2, 0]), 3);
    expect(three.arraySync()).toEqual([[0, 0, 1], [1, 0, 0]]);
    tf.dispose([idx, four, two, one, three]);
  });

  it('does not leak tensors', async () => {
    const idx = tf.tensor2d([[0, 1], [3, -1]], [2, 2], 'int32');
    const floats = tf.cast(idx, 'float32');
    await expectNoLeaks(() => {
      tf.dispose([oneHot(idx, 4), oneHot(idx, 1), oneHot(floats, 4)]);
    }, 5);
    tf.dispose([idx, floats]);
  });
});
