/**
 * models and training agree (issue 12 item 3): train() takes the library's own default vit() and
 * vmoe() (logits heads), and rejects a softmax head with its typed error.
 */
import {useBackend} from '../../router/test/helpers/backends';
import {ConfigError} from '@tfjs-moe/router';
import {vit, vmoe} from '@tfjs-moe/models';
import {splitDataset, syntheticDataset} from '../src/data';
import {train} from '../src/train';

const data = splitDataset(syntheticDataset({examples: 40, numClasses: 3, height: 8, width: 8, seed: 1}), {seed: 0});
const base = {imageSize: 8, channels: 1, patchSize: 4, hiddenSize: 8, depth: 2, numHeads: 2, mlpDim: 8, numClasses: 3};

describe('train() and the default models [cpu]', () => {
  beforeAll(() => useBackend('cpu'));

  it.each([
    ['vit', () => vit(base)],
    ['vmoe', () => vmoe({...base, moe: {numExperts: 2, router: 'topk'}})],
  ])('train() accepts the default %s', async (_name, model) => {
    const r = await train({model, data, batchSize: 8, steps: 2, logEvery: 1, seed: 0});
    expect(r.steps).toBe(2);
    expect(Number.isFinite(r.history[r.history.length - 1].loss)).toBe(true);
    r.model.dispose();
  });

  it('a softmax head is rejected with a typed error', async () => {
    await expect(train({model: () => vit({...base, headActivation: 'softmax'}), data, batchSize: 8, steps: 1, seed: 0})).rejects.toThrow(ConfigError);
  });
});
