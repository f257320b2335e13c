import * as tf from '@tensorflow/tfjs';
import {matMulPeakGflops, medianTimeMs, timedRuns} from '../../src';

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

  it('timedRuns reads each clock around each timed run only, after the warm-up, and disposes the outputs', async () => {
    expect(tf.getBackend()).toBe('cpu');
    const a = tf.ones([2, 2]);
    const before = tf.memory().numTensors;
    // Hand-worked clocks: the k-th call of fn (k = 1, 2, ...) advances the first clock by 10 k ms
    // and the second by k ms, so with 2 warm-up runs the timed runs (calls 3-5) read 30, 40, 50
    // and 3, 4, 5.
    let calls = 0;
    let wall = 0;
    let cpu = 0;
    const out = await timedRuns(() => {
      calls++;
      wall += 10 * calls;
      cpu += calls;
      return [tf.add(a, 1), tf.mul(a, 2)];
    }, 3, 2, [() => wall, () => cpu]);
    expect(calls).toBe(5);
    expect(out).toEqual([[30, 40, 50], [3, 4, 5]]);
    expect(tf.memory().numTensors).toBe(before);
    a.dispose();
  });
});
