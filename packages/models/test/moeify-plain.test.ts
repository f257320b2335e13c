/**
 * moeify on a ViT-style model built from plain tfjs layers (Dense -> Dense MLPs, with the
 * activation in the first Dense or in a separate Activation layer), not by `vit()`.
 */
import * as tf from '@tensorflow/tfjs';
import {describeBackends, expectAllClose} from '../../router/test/helpers/backends';
import {ConfigError} from '@tfjs-moe/router';
import {findMlps, moeify, moeLayers, moeMetrics, moeParameterCount} from '../src';
import {randomizeWeights, roundTrip, uniformTensor} from './helpers';

/** tokens [t, d] -> two pre-LN residual MLP blocks -> mean pool -> dense(2). */
function plainModel(): tf.LayersModel {
  const input = tf.input({shape: [6, 4]});
  let x: tf.SymbolicTensor = input;
  // block 0: activation inside the Dense
  let h = tf.layers.layerNormalization({name: 'ln0'}).apply(x) as tf.SymbolicTensor;
  h = tf.layers.dense({units: 10, activation: 'gelu', name: 'fc0a'}).apply(h) as tf.SymbolicTensor;
  h = tf.layers.dense({units: 4, name: 'fc0b'}).apply(h) as tf.SymbolicTensor;
  x = tf.layers.add({name: 'res0'}).apply([x, h]) as tf.SymbolicTensor;
  // block 1: a separate Activation layer
  h = tf.layers.layerNormalization({name: 'ln1'}).apply(x) as tf.SymbolicTensor;
  h = tf.layers.dense({units: 10, name: 'fc1a'}).apply(h) as tf.SymbolicTensor;
  h = tf.layers.activation({activation: 'relu', name: 'act1'}).apply(h) as tf.SymbolicTensor;
  h = tf.layers.dense({units: 4, name: 'fc1b'}).apply(h) as tf.SymbolicTensor;
  x = tf.layers.add({name: 'res1'}).apply([x, h]) as tf.SymbolicTensor;
  const pooled = tf.layers.globalAveragePooling1d({name: 'pool'}).apply(x) as tf.SymbolicTensor;
  // a Dense -> Dense pair on rank-2 features is not a token MLP and must not be found
  const f = tf.layers.dense({units: 4, activation: 'relu', name: 'cls_a'}).apply(pooled) as tf.SymbolicTensor;
  const out = tf.layers.dense({units: 4, name: 'cls_b'}).apply(f) as tf.SymbolicTensor;
  return tf.model({inputs: input, outputs: out, name: 'plain'});
}

describeBackends('moeify on plain tfjs layers', () => {
  it('finds both token MLPs (and not the rank-2 head) with their activations', () => {
    const model = plainModel();
    expect(findMlps(model).map((m) => [m.name, m.first, m.inner, m.hiddenDim, m.activation])).toEqual([
      ['fc0b', 'fc0a', ['fc0a'], 10, 'gelu'],
      ['fc1b', 'fc1a', ['fc1a', 'act1'], 10, 'relu'],
    ]);
    model.dispose();
  });

  it.each(['topk', 'sparse-ot'])('upcycled, dropless, normalized: same outputs as the dense model; saves and loads (router %s)', async (router) => {
    const dense = plainModel();
    randomizeWeights(dense, 41);
    const sparse = moeify(dense, {numExperts: 3, router, blocks: 'all', dropless: true, normalizeCombineWeights: true});
    expect(moeLayers(sparse).map((l) => [l.name, l.activation])).toEqual([['fc0b_moe', 'gelu'], ['fc1b_moe', 'relu']]);
    const names = sparse.layers.map((l) => l.name);
    for (const gone of ['fc0a', 'fc0b', 'fc1a', 'act1', 'fc1b']) expect(names).not.toContain(gone);
    // d 4, h 10: each Dense pair 4*10 + 10 + 10*4 + 4 = 94 parameters becomes an MoE of moeParameterCount(4, 10, 3)
    expect(sparse.countParams()).toBe(dense.countParams() + 2 * (moeParameterCount(4, 10, 3) - 94));
    const x = uniformTensor([2, 6, 4], 42);
    const a = dense.predict(x) as tf.Tensor;
    const b = sparse.predict(x) as tf.Tensor;
    for (const m of Object.values(moeMetrics(sparse))) expect(m!.droppedFraction).toBe(0);
    expectAllClose(b.dataSync(), a.dataSync(), 1e-5, 1e-4);
    const loaded = await roundTrip(sparse);
    const c = loaded.predict(x) as tf.Tensor;
    expect(Array.from(c.dataSync())).toEqual(Array.from(b.dataSync()));
    tf.dispose([x, a, b, c]);
    [dense, sparse, loaded].forEach((m) => m.dispose());
  });
});

describe('moeify bad input', () => {
  it('something that is not a LayersModel is a ConfigError naming model', () => {
    expect(() => moeify({} as never, {numExperts: 2})).toThrow(ConfigError);
    expect(() => moeify({} as never, {numExperts: 2})).toThrow('moeify: Expected model to be a tf.LayersModel (e.g. from vit() or tf.loadLayersModel), but got {}.');
    expect(() => moeify(null as never, {numExperts: 2})).toThrow('but got null.');
  });
});
