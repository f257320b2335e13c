/**
 * Issue 13 item 6: a diverged run says what was non-finite. The message of each cause is pinned
 * against hand-written text, and a run whose weights overflow (learning rate 1e30) stops naming a
 * layer and tensor or a weight, never "mean loss NaN, gradient norm NaN" for a value nobody read.
 */
import * as tf from '@tensorflow/tfjs';
import {NonFiniteError} from '@tfjs-moe/router';
import {vmoe} from '@tfjs-moe/models';
import {useBackend} from '../../router/test/helpers/backends';
import {splitDataset, syntheticDataset} from '../src/data';
import {DivergedError, train} from '../src/train/trainer';

describe('DivergedError says what was non-finite', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('a loss or gradient norm read back as non-finite', () => {
    const e = new DivergedError(3, 4, {loss: NaN, gradNorm: Infinity}, 2, 0.001);
    expect(e.message).toBe('Training stopped: non-finite values in steps 3-4 (mean loss NaN, gradient norm Infinity). ' +
      'The newest checkpoint (step 2) holds the last good weights. Lower the learning rate (now 0.001) or check the data for NaN/Infinity.');
    expect(e.argument).toBe('loss');
    expect(e.cause).toBeUndefined();
  });

  it('a weight that an update overflowed', () => {
    const e = new DivergedError(5, 5, {weight: 'block0_moe/kernel_in', loss: 2.5, gradNorm: 1e20}, 0, 1e30);
    expect(e.message).toBe('Training stopped: non-finite values in step 5 (weight block0_moe/kernel_in after the update; mean loss 2.5, ' +
      'gradient norm 100000000000000000000). No checkpoint was written. Lower the learning rate (now 1e+30) or check the data for NaN/Infinity.');
    expect(e.argument).toBe('block0_moe/kernel_in');
  });

  it("a layer's own check, kept as the cause", () => {
    const layerError = new NonFiniteError('inputs', 'finite (no NaN or Infinity; shape [4, 5, 8])', NaN, "MoE 'block1_moe'");
    const e = new DivergedError(7, 7, {error: layerError}, 6, 0.01);
    expect(e.message).toBe("Training stopped: non-finite values in step 7 (found by MoE 'block1_moe': Expected inputs to be finite " +
      '(no NaN or Infinity; shape [4, 5, 8]), but got NaN). The newest checkpoint (step 6) holds the last good weights. ' +
      'Lower the learning rate (now 0.01) or check the data for NaN/Infinity.');
    expect(e.cause).toBe(layerError);
    expect(e.argument).toBe('inputs');
    expect(e).toBeInstanceOf(NonFiniteError);
  });

  it.each(['topk', 'sparse-ot'])('train() with learning rate 1e30 (%s): the message names the layer and tensor or the weight', async (router) => {
    expect(tf.getBackend()).toBe('cpu');
    const split = splitDataset(syntheticDataset({examples: 40, height: 8, width: 8}), {seed: 0});
    const tiny = {imageSize: 8, channels: 1, patchSize: 4, hiddenSize: 8, depth: 1, numHeads: 2, mlpDim: 8, numClasses: 10, headActivation: 'linear' as const};
    const before = tf.memory().numTensors;
    const err = await train({
      model: () => vmoe({...tiny, moeBlocks: [0], moe: {numExperts: 2, router: router as 'topk'}}), data: split, steps: 4, batchSize: 4, learningRate: 1e30,
    }).catch((e: unknown) => e) as DivergedError;
    expect(err).toBeInstanceOf(DivergedError);
    expect(err.message).not.toContain('mean loss NaN, gradient norm NaN');
    expect(err.message).toMatch(/\((found by MoE 'block0_moe': Expected inputs to be finite|weight \S+ after the update|mean loss -?\d)/);
    expect(tf.memory().numTensors).toBe(before);
  });
});
