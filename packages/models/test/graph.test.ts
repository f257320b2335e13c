import * as tf from '@tensorflow/tfjs';
import {expectAllClose, useBackend} from '../../router/test/helpers/backends';
import {mlpBlock, replaceLayers, vit, ViTConfig} from '../src';
import {mlpReference} from './reference';
import {randomizeWeights, roundTrip, uniformTensor} from './helpers';

const TINY: ViTConfig = {
  imageSize: 8, channels: 1, patchSize: 4, hiddenSize: 8, depth: 2, numHeads: 2, mlpDim: 12, numClasses: 3, seed: 1,
};

describe('replaceLayers', () => {
  beforeAll(() => useBackend('cpu'));

  it('a same-config swap with copied weights reproduces the model exactly, and the source is untouched', async () => {
    const model = vit(TINY);
    randomizeWeights(model, 3);
    const before = model.getWeights().map((w) => w.arraySync());
    const swapped = replaceLayers(model, new Map([
      ['block1_mlp', {
        layer: mlpBlock({hiddenDim: 12, name: 'block1_ffn'}),
        init: (n, o) => n.setWeights(o.getWeights()),
      }],
    ]), 'swapped');
    expect(swapped.name).toBe('swapped');
    expect(swapped.layers.map((l) => l.name)).toContain('block1_ffn');
    expect(swapped.layers.map((l) => l.name)).not.toContain('block1_mlp');
    const x = uniformTensor([2, 8, 8, 1], 4);
    const a = model.predict(x) as tf.Tensor;
    const b = swapped.predict(x) as tf.Tensor;
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    // the new model owns its own variables: training it (here: overwriting) leaves the source alone
    randomizeWeights(swapped, 99);
    expect(model.getWeights().map((w) => w.arraySync())).toEqual(before);
    const loaded = await roundTrip(swapped);
    const c = loaded.predict(x) as tf.Tensor;
    const d = swapped.predict(x) as tf.Tensor;
    expect(Array.from(c.dataSync())).toEqual(Array.from(d.dataSync()));
    tf.dispose([x, a, b, c, d]);
    [model, swapped, loaded].forEach((m) => m.dispose());
  });

  it('a swap to a wider MLP keeps every other weight and wires the new layer in place', () => {
    const model = vit(TINY);
    randomizeWeights(model, 5);
    const swapped = replaceLayers(model, new Map([['block0_mlp', {layer: mlpBlock({hiddenDim: 20, activation: 'relu', name: 'block0_mlp'})}]]));
    expect(swapped.countParams()).toBe(model.countParams() + 2 * 8 * 8 + 8); // h 12 -> 20: +2*d*8 + 8
    for (const layer of model.layers) {
      if (layer.name === 'block0_mlp') continue;
      const w1 = layer.getWeights().map((w) => w.arraySync());
      expect(swapped.getLayer(layer.name).getWeights().map((w) => w.arraySync())).toEqual(w1);
    }
    // The new layer computes its own MLP on the output of block0_norm2 (checked by a sub-model).
    const probe = tf.model({inputs: swapped.inputs, outputs: [swapped.getLayer('block0_norm2').output as tf.SymbolicTensor, swapped.getLayer('block0_mlp').output as tf.SymbolicTensor]});
    const x = uniformTensor([1, 8, 8, 1], 6);
    const [normed, out] = probe.predict(x) as tf.Tensor[];
    const expected = mlpReference((normed.arraySync() as number[][][])[0], swapped.getLayer('block0_mlp').getWeights().map((w) => w.arraySync()), 'relu');
    expectAllClose((out.arraySync() as number[][][])[0], expected, 1e-5, 1e-5);
    tf.dispose([x, normed, out]);
    [model, swapped].forEach((m) => m.dispose());
  });

  it('rejects unknown names, duplicate names and sequential models', () => {
    const model = vit(TINY);
    expect(() => replaceLayers(model, new Map([['nope', {layer: mlpBlock({hiddenDim: 4})}]]))).toThrow(
      'replaceLayers: Expected replacements to be names of layers of model "vit", but got "nope".',
    );
    expect(() => replaceLayers(model, new Map([['block0_mlp', {layer: mlpBlock({hiddenDim: 4, name: 'head'})}]]))).toThrow(
      'replaceLayers: Expected layer name to be a name not already used in model "vit", but got "head".',
    );
    const seq = tf.sequential({layers: [tf.layers.dense({units: 2, inputShape: [3]})]});
    expect(() => replaceLayers(seq, new Map())).toThrow(
      'replaceLayers: Expected model to be a functional tf.LayersModel (built with tf.model), but got "Sequential".',
    );
    model.dispose();
    seq.dispose();
  });
});
