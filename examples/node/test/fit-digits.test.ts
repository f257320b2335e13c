/**
 * The Node example trains for real: on 400 embedded digits (320 to train, 80 held out) two
 * epochs of `model.fit` lower the loss and beat chance (0.1) on held-out digits, with a sparse-OT
 * V-MoE whose measured load stays within capacity (max/mean <= 1.25, the capacity factor).
 */
import * as tf from '@tensorflow/tfjs';
import {useBackend} from '../../../packages/router/test/helpers/backends';
import {fitDigits} from '../src/fit-digits';

test('fitDigits trains a sparse-OT V-MoE on the embedded digits [wasm]', async () => {
  await useBackend('wasm');
  const before = tf.memory().numTensors;
  const result = await fitDigits({perClass: 40, epochs: 2, verbose: false});
  expect(tf.getBackend()).toBe('wasm');
  expect(result.losses[1]).toBeLessThan(result.losses[0]);
  // Measured 0.3-0.45 in runs of this size; chance is 0.1.
  expect(result.accuracy).toBeGreaterThan(0.15);
  expect(Object.keys(result.maxOverMean).sort()).toEqual(['block1_moe', 'block3_moe']);
  for (const v of Object.values(result.maxOverMean)) expect(v).toBeLessThanOrEqual(1.25 + 1e-6);
  expect(tf.memory().numTensors).toBe(before);
});
