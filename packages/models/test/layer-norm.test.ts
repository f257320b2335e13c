/**
 * LayerNorm against tfjs-layers' LayerNormalization (an independent implementation) and a
 * hand-worked case; its closed-form gradient against tfjs-layers' autodiff gradient; the class
 * token's broadcasting add against its definition; serialization; kernel counts independent of
 * the batch size.
 */
import * as tf from '@tensorflow/tfjs';
import {ClassToken, LayerNorm, layerNorm, layerNorm1D} from '../src';
import {BACKENDS, expectAllClose, expectNoLeaks, useBackend} from '../../router/test/helpers/backends';
import {roundTrip, uniformTensor} from './helpers';

describe.each(BACKENDS.map((b) => [b]))('LayerNorm [%s]', (backend) => {
  beforeAll(async () => useBackend(backend));
  beforeEach(() => expect(tf.getBackend()).toBe(backend));

  it('normalizes a hand-worked row: [1, 2, 3] -> [-sqrt(1.5), 0, sqrt(1.5)] (var 2/3)', () => {
    const y = layerNorm1D(tf.tensor2d([[1, 2, 3]]), tf.ones([3]) as tf.Tensor1D, tf.zeros([3]) as tf.Tensor1D, 0);
    expectAllClose(y.dataSync(), [-Math.sqrt(1.5), 0, Math.sqrt(1.5)], 1e-5);
  });

  it.each([[[1, 1, 4]], [[2, 5]], [[3, 4, 6]], [[2, 3, 4, 5]], [[4, 1]], [[1, 17, 64]]])(
    'equals tfjs-layers LayerNormalization, forward and gradients (x, gamma, beta), shape %j',
    (shape: number[]) => {
      const d = shape[shape.length - 1];
      const x = uniformTensor(shape, 1, 2);
      const gamma = uniformTensor([d], 2, 1);
      const beta = uniformTensor([d], 3, 1);
      const dy = uniformTensor(shape, 4, 1);
      const ours = layerNorm({epsilon: 1e-3});
      const ref = tf.layers.layerNormalization({epsilon: 1e-3});
      ours.build(shape);
      ref.build(shape);
      ours.setWeights([gamma, beta]);
      ref.setWeights([gamma, beta]);
      const run = (layer: tf.layers.Layer) => tf.tidy(() => {
        const f = (xx: tf.Tensor) => tf.sum(tf.mul(layer.apply(xx) as tf.Tensor, dy));
        const {value, grads} = tf.variableGrads(() => f(x) as tf.Scalar, layer.trainableWeights.map((w) => (w as any).val));
        const dx = tf.grad(f)(x);
        return {y: (layer.apply(x) as tf.Tensor).dataSync(), value: value.dataSync()[0], dx: dx.dataSync(),
          dg: grads[(layer.trainableWeights[0] as any).val.name].dataSync(), db: grads[(layer.trainableWeights[1] as any).val.name].dataSync()};
      });
      const a = run(ours);
      const b = run(ref);
      expectAllClose(a.y, b.y, 1e-5, 1e-4);
      expectAllClose(a.dx, b.dx, 1e-4, 1e-3);
      expectAllClose(a.dg, b.dg, 1e-4, 1e-4);
      expectAllClose(a.db, b.db, 1e-4, 1e-4);
      tf.dispose([x, gamma, beta, dy]);
    });

  it('gradient matches central finite differences in float32 (d = 5)', () => {
    const x = uniformTensor([2, 5], 7, 1);
    const g = uniformTensor([5], 8, 1) as tf.Tensor1D;
    const b = uniformTensor([5], 9, 1) as tf.Tensor1D;
    const w = uniformTensor([2, 5], 10, 1);
    const f = (xx: tf.Tensor) => tf.sum(tf.mul(layerNorm1D(xx, g, b, 1e-3), w));
    const dx = tf.grad(f)(x).dataSync();
    const xv = x.dataSync();
    const h = 1e-2;
    for (let i = 0; i < xv.length; i++) {
      const plus = Float32Array.from(xv); plus[i] += h;
      const minus = Float32Array.from(xv); minus[i] -= h;
      const fd = (f(tf.tensor(plus, x.shape)).dataSync()[0] - f(tf.tensor(minus, x.shape)).dataSync()[0]) / (2 * h);
      expect(Math.abs(dx[i] - fd)).toBeLessThan(5e-3);
    }
    tf.dispose([x, g, b, w]);
  });

  it('uses a number of kernels independent of the batch size, and leaks nothing', async () => {
    const layer = layerNorm({epsilon: 1e-6});
    const kernels = async (batch: number) => {
      const x = tf.ones([batch, 17, 8]);
      const info = await tf.profile(() => tf.tidy(() => tf.grad((xx: tf.Tensor) => tf.sum(layer.apply(xx) as tf.Tensor))(x)));
      x.dispose();
      return info.kernels.length;
    };
    expect(await kernels(64)).toBe(await kernels(2));
    const x = tf.ones([3, 4, 8]);
    await expectNoLeaks(() => tf.tidy(() => tf.grad((xx: tf.Tensor) => tf.sum(layer.apply(xx) as tf.Tensor))(x)).dispose(), 5);
    x.dispose();
  });

  it('class token: gradient is the batch sum of the upstream gradient at position 0, kernels independent of batch', async () => {
    const layer = new ClassToken();
    layer.build([null, 3, 4]);
    const token = uniformTensor([1, 1, 4], 11, 1);
    layer.setWeights([token]);
    const x = uniformTensor([5, 3, 4], 12, 1);
    const dy = uniformTensor([5, 4, 4], 13, 1);
    const {value, grads} = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(x) as tf.Tensor, dy)) as tf.Scalar,
      [(layer.trainableWeights[0] as any).val]);
    const y = layer.apply(x) as tf.Tensor;
    expect(y.shape).toEqual([5, 4, 4]);
    expectAllClose(tf.slice(y, [2, 0, 0], [1, 1, 4]).dataSync(), token.dataSync());
    const expected = tf.sum(tf.slice(dy, [0, 0, 0], [5, 1, 4]), 0).dataSync();
    expectAllClose(Object.values(grads)[0].dataSync(), expected, 1e-5);
    void value;
    const count = async (batch: number) => (await tf.profile(() => tf.tidy(() => {
      const xb = tf.ones([batch, 3, 4]);
      return tf.variableGrads(() => tf.sum(layer.apply(xb) as tf.Tensor) as tf.Scalar, [(layer.trainableWeights[0] as any).val]).value;
    }))).kernels.length;
    expect(await count(64)).toBe(await count(2));
  });

  it('saves and loads (className LayerNorm, weights gamma and beta, epsilon kept)', async () => {
    const input = tf.input({shape: [3, 4]});
    const model = tf.model({inputs: input, outputs: layerNorm({epsilon: 1e-6, name: 'ln'}).apply(input) as tf.SymbolicTensor});
    model.getLayer('ln').setWeights([uniformTensor([4], 14, 1), uniformTensor([4], 15, 1)]);
    const loaded = await roundTrip(model);
    const ln = loaded.getLayer('ln');
    expect(ln).toBeInstanceOf(LayerNorm);
    expect((ln as LayerNorm).epsilon).toBe(1e-6);
    expect(ln.weights.map((w) => w.originalName.split('/').pop())).toEqual(['gamma', 'beta']);
    const x = uniformTensor([2, 3, 4], 16, 1);
    expectAllClose((loaded.predict(x) as tf.Tensor).dataSync(), (model.predict(x) as tf.Tensor).dataSync(), 1e-6);
  });

  it('rejects a non-positive epsilon and an unknown last axis', () => {
    expect(() => layerNorm({epsilon: 0})).toThrow(/epsilon/);
    expect(() => layerNorm().build([null, null])).toThrow(/known last axis/);
  });
});
