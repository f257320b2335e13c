import * as tf from '@tensorflow/tfjs';
import {matMulPeakGflops, medianTimeMs} from '../../src';

describe('matMulPeakGflops (cpu)', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    await tf.ready();
  });

  it('returns a finite positive rate and leaves no tensors', async () => {
    expect(tf.getBackend()).toBe('cpu');
    const before = tf.memory().numTensors;
    const peak = await matMulPeakGflops([8, 16], 2);
    expect(Number.isFinite(peak)).toBe(true);
    expect(peak).toBeGreaterThan(0);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('medianTimeMs disposes what the timed function returns', async () => {
    expect(tf.getBackend()).toBe('cpu');
    const a = tf.ones([4, 4]);
    const before = tf.memory().numTensors;
    const ms = await medianTimeMs(() => tf.matMul(a, a), 3, 1);
    expect(ms).toBeGreaterThanOrEqual(0);
    expect(tf.memory().numTensors).toBe(before);
    a.dispose();
  });
});
