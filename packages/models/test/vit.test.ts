import * as tf from '@tensorflow/tfjs';
import {describeBackends, expectAllClose, expectNoLeaks, useBackend} from '../../router/test/helpers/backends';
import {patchEmbedding, vit, vitParameterCount, VIT_PRESETS, ViTConfig} from '../src';
import {vitReference} from './reference';
import {randomizeWeights, roundTrip, uniformTensor} from './helpers';

/** A tiny, non-square config: 8x12 images, 2 channels, patch 4 -> 2x3 = 6 patches. */
const TINY: ViTConfig = {
  imageSize: [8, 12], channels: 2, patchSize: 4, hiddenSize: 8, depth: 2, numHeads: 2, mlpDim: 12, numClasses: 3,
};

describe('vit parameter counts', () => {
  beforeAll(() => useBackend('cpu'));

  it.each(Object.keys(VIT_PRESETS))('preset %s: countParams() equals vitParameterCount', (preset) => {
    const model = vit(preset as keyof typeof VIT_PRESETS);
    expect(model.countParams()).toBe(vitParameterCount(preset as keyof typeof VIT_PRESETS));
    model.dispose();
  });

  it('mnist-tiny count worked by hand', () => {
    // d 64, patch 7, c 1, 16 patches + class token = 17 tokens, h 128, depth 4, 10 classes.
    // patch 49*64 + 64 = 3200; cls 64; pos 17*64 = 1088;
    // block: LNs 4*64 = 256, attention 4*64^2 + 4*64 = 16640, MLP 2*64*128 + 128 + 64 = 16576 -> 33472;
    // 4 blocks 133888; final LN 128; head 64*10 + 10 = 650.
    // total 3200 + 64 + 1088 + 133888 + 128 + 650 = 139018.
    expect(vitParameterCount('mnist-tiny')).toBe(139018);
  });

  it('gap classifier drops the class token and its position', () => {
    // TINY with gap: patch 16*2*8 + 8 = 264; pos 6*8 = 48; block 4*8 + (4*64 + 32) + (2*8*12 + 12 + 8) = 32 + 288 + 212 = 532;
    // 2 blocks 1064; final LN 16; head 8*3 + 3 = 27. Total 264 + 48 + 1064 + 16 + 27 = 1419.
    const model = vit({...TINY, classifier: 'gap'});
    expect(vitParameterCount({...TINY, classifier: 'gap'})).toBe(1419);
    expect(model.countParams()).toBe(1419);
    // With the class token: + 8 (token) + 8 (its position) = 1435.
    expect(vitParameterCount(TINY)).toBe(1435);
    model.dispose();
  });
});

describeBackends('vit forward', () => {
  it.each([
    ['token', 'gelu', 'softmax'],
    ['gap', 'relu', 'linear'],
  ] as const)('matches a float64 loop reference (classifier %s, %s, head %s)', (classifier, activation, headActivation) => {
    const model = vit({...TINY, classifier, activation, headActivation, seed: 3});
    randomizeWeights(model, 11);
    const x = uniformTensor([3, 8, 12, 2], 5);
    const y = model.predict(x) as tf.Tensor;
    expect(y.shape).toEqual([3, 3]);
    const images = x.arraySync() as number[][][][];
    const expected = images.map((img) => vitReference(model, img, {
      patchSize: 4, depth: 2, numHeads: 2, classifier, activation, headActivation, eps: 1e-6,
    }));
    expectAllClose(y.arraySync() as number[][], expected, 2e-5, 1e-4);
    tf.dispose([x, y]);
    model.dispose();
  });

  it('patch embedding equals a convolution with kernel size = stride = patch', () => {
    // Independent oracle: tf.conv2d with the kernel reshaped to [p, p, c, d].
    const layer = patchEmbedding({patchSize: 4, hiddenSize: 5, seed: 1});
    const x = uniformTensor([2, 8, 12, 3], 9);
    const y = layer.apply(x) as tf.Tensor;
    const [kernel, bias] = layer.getWeights();
    const conv = tf.add(tf.conv2d(x as tf.Tensor4D, tf.reshape(kernel, [4, 4, 3, 5]) as tf.Tensor4D, 4, 'valid'), bias);
    expect(y.shape).toEqual([2, 6, 5]);
    expectAllClose(y.dataSync(), tf.reshape(conv, [2, 6, 5]).dataSync(), 1e-5, 1e-5);
    tf.dispose([x, y, conv]);
    layer.dispose();
  });

  it.each([1, 4])('preset mnist-tiny with a softmax head: batch %i -> [batch, 10] probabilities', (batch) => {
    const model = vit({preset: 'mnist-tiny', headActivation: 'softmax'});
    const y = model.predict(tf.zeros([batch, 28, 28, 1])) as tf.Tensor;
    expect(y.shape).toEqual([batch, 10]);
    const sums = tf.sum(y, 1).arraySync() as number[];
    expectAllClose(sums, new Array(batch).fill(1), 1e-5);
    tf.dispose(y);
    model.dispose();
  });

  it('every weight gets a finite, nonzero gradient', () => {
    const model = vit({...TINY, seed: 1}); // logits head (the default)
    randomizeWeights(model, 2);
    const x = uniformTensor([2, 8, 12, 2], 3);
    const labels = tf.oneHot([0, 2], 3);
    const {value, grads} = tf.variableGrads(
      () => tf.losses.softmaxCrossEntropy(labels, model.apply(x) as tf.Tensor) as tf.Scalar,
    );
    const names = model.trainableWeights.map((w) => w.originalName);
    expect(Object.keys(grads).length).toBe(names.length);
    for (const [name, g] of Object.entries(grads)) {
      const a = g.abs().max().dataSync()[0];
      if (!(Number.isFinite(a) && a > 0)) throw new Error(`gradient of ${name} is ${a}`);
    }
    tf.dispose([x, labels, value, ...Object.values(grads)]);
    model.dispose();
  });

  it('save + loadLayersModel round trip gives identical outputs', async () => {
    const model = vit({...TINY, seed: 4});
    randomizeWeights(model, 5);
    const loaded = await roundTrip(model);
    expect(loaded.layers.map((l) => l.getClassName())).toEqual(model.layers.map((l) => l.getClassName()));
    const x = uniformTensor([2, 8, 12, 2], 6);
    const a = model.predict(x) as tf.Tensor;
    const b = loaded.predict(x) as tf.Tensor;
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    tf.dispose([x, a, b]);
    model.dispose();
    loaded.dispose();
  });

  it('does not leak tensors over repeated forward passes', async () => {
    const model = vit({...TINY, seed: 7});
    const x = uniformTensor([2, 8, 12, 2], 8);
    await expectNoLeaks(() => {
      (model.predict(x) as tf.Tensor).dispose();
    }, 5);
    x.dispose();
    model.dispose();
  });
});

describe('vit bad input', () => {
  beforeAll(() => useBackend('cpu'));

  it.each([
    [{...TINY, patchSize: 5}, 'vit config: Expected imageSize to be divisible by patchSize 5, but got [8,12].'],
    [{...TINY, numHeads: 3}, 'vit config: Expected numHeads to be a divisor of hiddenSize 8, but got 3.'],
    [{...TINY, depth: 0}, 'vit config: Expected depth to be a positive integer, but got 0.'],
    [{...TINY, mlpDim: 2.5}, 'vit config: Expected mlpDim to be a positive integer, but got 2.5.'],
    [{...TINY, imageSize: [8]}, 'vit config: Expected imageSize to be a positive integer or [height, width], but got [8].'],
    [{...TINY, classifier: 'cls'}, "vit config: Expected classifier to be one of 'token', 'gap', but got \"cls\"."],
    [{...TINY, activation: 'swiglu'}, "vit config: Expected activation to be one of 'gelu', 'gelu_new', 'relu', 'relu6', 'elu', 'selu', 'swish', 'silu', 'mish', 'tanh', 'sigmoid', 'softplus', 'linear', but got \"swiglu\"."],
    [{...TINY, mlpDims: 4}, "vit config: Unknown option 'mlpDims'. Did you mean 'mlpDim'?"],
    ['mnist-huge', "vit config: Expected preset to be one of 'mnist-tiny', 'mnist-small', 'cifar-tiny', but got \"mnist-huge\"."],
    [{preset: 'mnist', depth: 2}, "vit config: Expected preset to be one of 'mnist-tiny', 'mnist-small', 'cifar-tiny', but got \"mnist\"."],
  ])('%j', (config, message) => {
    expect(() => vit(config as ViTConfig)).toThrow(message);
  });

  it('a model input of the wrong image size is a ShapeError naming images and the expected shape (issue 13 item 5)', () => {
    const model = vit({...TINY});
    expect(() => model.predict(tf.zeros([1, 8, 8, 2]))).toThrow(
      `model '${model.name}': Expected images to be of shape [batch, 8, 12, 2] ([batch, height, width, channels]), but got [1,8,8,2].`);
    model.dispose();
  });

  it('the patch layer names its input shape when height is not a multiple of the patch', () => {
    const layer = patchEmbedding({patchSize: 3, hiddenSize: 4, name: 'patch_embedding'});
    expect(() => layer.apply(tf.zeros([1, 8, 9, 1]))).toThrow(
      'patch_embedding: Expected input shape to be height and width divisible by patchSize 3, but got [1,8,9,1].',
    );
  });
});
