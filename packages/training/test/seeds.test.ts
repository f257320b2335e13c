/**
 * Seeds reach randomness only through seeded initializers and the routers' noise seeds: the
 * trainer never reads or replaces `Math.random`.
 */
import * as tf from '@tensorflow/tfjs';
import {useBackend} from '../../router/test/helpers/backends';
import {findMoELayers, splitDataset, syntheticDataset, train} from '../src';
import {buildModel, type ModelSpec} from '../src/model-factory';

/** Top-k routing with input jitter, so the first step draws router noise. */
const spec: ModelSpec = {router: 'topk', experts: 4, capacityFactor: 1.25, depth: 2, hiddenSize: 16, numHeads: 2, mlpDim: 32, jitterNoise: 0.2};
const data = splitDataset(syntheticDataset({examples: 48, numClasses: 4, seed: 1}), {seed: 0});

/** One logged training step; returns the initial weights and the first step's loss. */
async function firstStep(seed: number): Promise<{initial: number[][]; loss: number}> {
  let initial: number[][] = [];
  const r = await train({
    model: (initSeed: number) => {
      const model = buildModel(spec, data.train, initSeed);
      initial = model.weights.map((w) => Array.from(w.read().dataSync()));
      return model;
    },
    data, batchSize: 8, steps: 1, logEvery: 1, evalEvery: 0, evalExamples: 8, seed,
  });
  for (const l of findMoELayers(r.model)) (l as unknown as {disposeLast?: () => void}).disposeLast?.();
  r.model.dispose();
  return {initial, loss: r.history[0].loss};
}

describe('training seeds [cpu]', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('same seed: identical initial weights and first-step loss; another seed: different; Math.random never called', async () => {
    expect(tf.getBackend()).toBe('cpu');
    const spy = jest.spyOn(Math, 'random');
    try {
      const a = await firstStep(3);
      const b = await firstStep(3);
      const c = await firstStep(4);
      expect(spy).not.toHaveBeenCalled();
      expect(b.initial).toEqual(a.initial);
      expect(b.loss).toBe(a.loss);
      expect(c.initial).not.toEqual(a.initial);
      expect(c.loss).not.toBe(a.loss);
    } finally {
      spy.mockRestore();
    }
  });
});
