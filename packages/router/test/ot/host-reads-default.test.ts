/**
 * The `hostReads` default follows the backend: with `tf.getBackend()` mocked to return
 * `'webgpu'` (the module is mocked, the cpu backend still computes), a sparse-OT MoE forward with
 * the router's defaults makes no synchronous read. On the real cpu backend the same forward reads
 * (validation, convergence checks), which shows the count sees the reads.
 */
import * as tf from '@tensorflow/tfjs';
import {moe} from '../../src/moe/moe-layer';
import '../../src/routers';
import '../../src/routers/sparse-ot';
import {defaultHostReads} from '../../src/ot/problem';
import {useBackend} from '../helpers/backends';

jest.mock('@tensorflow/tfjs', () => {
  const actual = jest.requireActual('@tensorflow/tfjs');
  return {...actual, getBackend: jest.fn(() => actual.getBackend())};
});

function syncReadsDuring(fn: () => void): number {
  const proto = tf.Tensor.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const names = ['dataSync', 'arraySync', 'bufferSync'];
  const saved = names.map((n) => proto[n]);
  let reads = 0;
  names.forEach((n, i) => {
    proto[n] = function (this: unknown, ...args: unknown[]) {
      reads++;
      return saved[i].apply(this, args);
    };
  });
  try {
    fn();
  } finally {
    names.forEach((n, i) => {
      proto[n] = saved[i];
    });
  }
  return reads;
}

describe('hostReads default', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  test('on a (mocked) webgpu backend: no synchronous read in a sparse-OT MoE forward; on cpu: reads', () => {
    const getBackend = tf.getBackend as jest.Mock;
    const layer = moe({numExperts: 4, hiddenDim: 8, router: 'sparse-ot' as never, groupingMode: 'per-example'});
    const input = tf.randomNormal([2, 10, 8], 0, 1, 'float32', 3);
    tf.dispose(layer.apply(input, {training: false}) as tf.Tensor);
    expect(defaultHostReads()).toBe(true);
    const cpuReads = syncReadsDuring(() => tf.dispose(layer.apply(input, {training: false}) as tf.Tensor));
    expect(cpuReads).toBeGreaterThan(0);
    getBackend.mockReturnValue('webgpu');
    try {
      expect(defaultHostReads()).toBe(false);
      const reads = syncReadsDuring(() => tf.dispose(layer.apply(input, {training: false}) as tf.Tensor));
      expect(reads).toBe(0);
    } finally {
      getBackend.mockImplementation(() => jest.requireActual('@tensorflow/tfjs').getBackend());
    }
    expect(tf.getBackend()).toBe('cpu');
    input.dispose();
    layer.weights.forEach((w) => w.dispose());
    layer.disposeLast();
  });
});
