/**
 * Issue 13 item 5: images of the wrong size or channel count at a vit() / vmoe() / moeify()
 * model's entry points give a ShapeError naming `images`, the expected
 * `[batch, height, width, channels]` and the shape passed (not tfjs's untyped "Error when
 * checking"); the right size still runs, and symbolic use (a model inside a model) is untouched.
 */
import * as tf from '@tensorflow/tfjs';
import {ShapeError} from '@tfjs-moe/router';
import {useBackend} from '../../router/test/helpers/backends';
import {moeify, vit, vmoe} from '../src';

const base = {imageSize: 8, channels: 1, patchSize: 4, hiddenSize: 8, depth: 2, numHeads: 2, mlpDim: 8, numClasses: 3};

describe('models reject images of the wrong shape with a ShapeError', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  const models: Array<[string, () => tf.LayersModel]> = [
    ['vit', () => vit({...base, name: 'vit_small'})],
    ['vmoe', () => vmoe({...base, name: 'vmoe_small', moeBlocks: [1], moe: {numExperts: 2, router: 'topk'}})],
    ['moeify', () => moeify(vit({...base, name: 'dense'}), {numExperts: 2, router: 'topk'})],
  ];

  describe.each(models)('%s', (_kind, make) => {
    let model: tf.LayersModel;
    beforeAll(() => {
      expect(tf.getBackend()).toBe('cpu');
      model = make();
    });

    it.each([
      ['predict', [1, 16, 16, 1]],
      ['predict', [1, 8, 8, 3]],
      ['predict', [8, 8, 1]],
      ['predictOnBatch', [2, 4, 8, 1]],
      ['apply', [1, 16, 16, 1]],
      ['execute', [1, 8, 16, 1]],
    ])('%s on %j', (method, shape) => {
      const x = tf.zeros(shape);
      const before = tf.memory().numTensors;
      const call = () => (model as unknown as Record<string, (a: tf.Tensor, b?: unknown) => unknown>)[method].call(
        model, x, method === 'execute' ? model.outputs[0].name : undefined);
      expect(call).toThrow(ShapeError);
      expect(call).toThrow(
        `model '${model.name}': Expected images to be of shape [batch, 8, 8, 1] ([batch, height, width, channels]), but got [${shape.join(',')}].`);
      expect(tf.memory().numTensors).toBe(before);
      x.dispose();
    });

    it('evaluate and fit fail the same way (fit as its promise)', async () => {
      const x = tf.zeros([2, 16, 16, 1]);
      const y = tf.zeros([2, 3]);
      model.compile({optimizer: 'sgd', loss: 'meanSquaredError'});
      expect(() => model.evaluate(x, y)).toThrow(ShapeError);
      const fitting = model.fit(x, y, {epochs: 1, verbose: 0});
      await expect(fitting).rejects.toThrow(ShapeError);
      await expect(fitting).rejects.toThrow("Expected images to be of shape [batch, 8, 8, 1]");
      tf.dispose([x, y]);
    });

    it('the right shape runs, and the model still composes symbolically', () => {
      const y = model.predict(tf.zeros([2, 8, 8, 1])) as tf.Tensor;
      expect(y.shape).toEqual([2, 3]);
      y.dispose();
      const input = tf.input({shape: [8, 8, 1]});
      const outer = tf.model({inputs: input, outputs: model.apply(input) as tf.SymbolicTensor});
      const z = outer.predict(tf.ones([1, 8, 8, 1])) as tf.Tensor;
      expect(z.shape).toEqual([1, 3]);
      z.dispose();
    });
  });
});
