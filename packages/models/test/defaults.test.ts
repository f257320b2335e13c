/**
 * Defaults that must not change results (issue 12 item 3) and strict options (item 1):
 * moeify(dense, {numExperts}) predicts what the dense model predicts, for every router and for a
 * tf.sequential model; models output logits that train() and softmaxCrossEntropy take; unknown
 * options are rejected with the nearest known key. The FLOP count against hand arithmetic.
 */
import * as tf from '@tensorflow/tfjs';
import {expectAllClose, useBackend} from '../../router/test/helpers/backends';
import {moe, routerNames, UnknownOptionError} from '@tfjs-moe/router';
import {moeify, moeLayers, vit, vitForwardFlops, vmoe, vmoeForwardFlops} from '../src';
import {randomizeWeights, uniformTensor} from './helpers';

const TINY = {imageSize: 8, channels: 1, patchSize: 2, hiddenSize: 8, depth: 2, numHeads: 2, mlpDim: 12, numClasses: 3, seed: 1};

describe('defaults [cpu]', () => {
  beforeAll(() => useBackend('cpu'));

  it.each(routerNames())("moeify(dense, {numExperts: 4, router: '%s'}) predicts exactly what the dense model predicts", (router) => {
    expect(tf.getBackend()).toBe('cpu');
    const dense = vit({...TINY, depth: 4});
    randomizeWeights(dense, 5);
    const sparse = moeify(dense, {numExperts: 4, router});
    const x = uniformTensor([6, 8, 8, 1], 6);
    const a = dense.predict(x) as tf.Tensor;
    const b = sparse.predict(x) as tf.Tensor;
    expectAllClose(b.dataSync(), a.dataSync(), 1e-4, 1e-4);
    expect(Array.from(tf.argMax(b, 1).dataSync())).toEqual(Array.from(tf.argMax(a, 1).dataSync()));
    for (const layer of moeLayers(sparse)) expect(layer.lastMetrics!.droppedFraction).toBe(0);
  });

  it('moeify of a tf.sequential model: converted to the functional graph of its layers', () => {
    const seq = tf.sequential({layers: [
      tf.layers.dense({units: 10, activation: 'relu', inputShape: [5, 4], name: 'up'}),
      tf.layers.dense({units: 4, name: 'down'}),
      tf.layers.flatten(),
      tf.layers.dense({units: 2}),
    ]});
    const sparse = moeify(seq, {numExperts: 3, router: 'topk', blocks: 'all'});
    expect(moeLayers(sparse).map((l) => l.name)).toEqual(['down_moe']);
    const x = uniformTensor([3, 5, 4], 2);
    expectAllClose((sparse.predict(x) as tf.Tensor).dataSync(), (seq.predict(x) as tf.Tensor).dataSync(), 1e-5, 1e-5);
  });

  it('vit and vmoe output logits by default (softmaxCrossEntropy takes them); headActivation softmax gives probabilities', () => {
    const x = uniformTensor([2, 8, 8, 1], 3);
    const logits = vmoe({...TINY, moe: {numExperts: 2, router: 'topk'}});
    const probs = vmoe({...TINY, headActivation: 'softmax', moe: {numExperts: 2, router: 'topk'}});
    probs.setWeights(logits.getWeights());
    const l = logits.predict(x) as tf.Tensor;
    expectAllClose((probs.predict(x) as tf.Tensor).dataSync(), tf.softmax(l).dataSync(), 1e-6);
    expect(Math.abs((tf.sum(l, 1).dataSync() as Float32Array)[0] - 1)).toBeGreaterThan(1e-3);
  });

  it('the default MoE layer name is moe_<n>', () => {
    const a = moe({numExperts: 2, hiddenDim: 3, router: 'topk'});
    const b = moe({numExperts: 2, hiddenDim: 3, router: 'topk'});
    expect(a.name).toMatch(/^moe_\d+$/);
    expect(Number(b.name.slice(4))).toBe(Number(a.name.slice(4)) + 1);
  });

  it('unknown options name the key and the nearest known one (moe, vmoe.moe, moeify, vit)', () => {
    expect(() => moe({numExperts: 2, hiddenDim: 3, router: 'topk', kk: 2} as never)).toThrow(UnknownOptionError);
    expect(() => moe({numExperts: 2, hiddenDim: 3, router: 'topk', kk: 2} as never)).toThrow("moe: Unknown option 'kk'. Did you mean 'k'?");
    expect(() => moe({numExperts: 2, hiddenDim: 3, router: 'topk', minCapacty: 2} as never)).toThrow("Did you mean 'minCapacity'?");
    expect(() => vmoe({...TINY, moe: {numExperts: 2, capacityFacter: 2}})).toThrow("vmoe config.moe: Unknown option 'capacityFacter'. Did you mean 'capacityFactor'?");
    expect(() => moeify(vit(TINY), {numExperts: 2, capacityFacter: 2} as never)).toThrow("moeify: Unknown option 'capacityFacter'. Did you mean 'capacityFactor'?");
    expect(() => vit({...TINY, depht: 2} as never)).toThrow("vit config: Unknown option 'depht'. Did you mean 'depth'?");
  });
});

describe('forward FLOP count', () => {
  it('mnist-tiny ViT by hand', () => {
    // 16 patches of 7x7x1, T 17, d 64, h 128, depth 4, 10 classes.
    const embed = 2 * 16 * 49 * 64; // 100352
    const attention = 2 * 17 * 64 * 192 + 4 * 17 * 17 * 64 + 2 * 17 * 64 * 64; // 631040
    const mlp = 4 * 17 * 64 * 128; // 557056
    const head = 2 * 64 * 10; // 1280
    const f = vitForwardFlops('mnist-tiny');
    expect(f.total).toBe(embed + 4 * (attention + mlp) + head);
    expect(f.total).toBe(4854016);
    expect(f.useful).toBe(f.total);
  });

  it('V-MoE: executed expert slots at the capacity in force, useful work k per token, router matMul', () => {
    const dense = vitForwardFlops('mnist-tiny').total;
    const mlp = 557056;
    const router = 2 * 17 * 64 * 4; // 8704
    // top-1, training capacity factor 1.25: capacity ceil(17 * 1.25 / 4) = 6 -> 24 slots of 4 * 64 * 128 in 2 blocks.
    const train = vmoeForwardFlops({preset: 'mnist-tiny', moe: {numExperts: 4, router: 'topk', capacityFactor: 1.25}}, {training: true});
    expect(train.total).toBe(dense + 2 * (24 * 4 * 64 * 128 + router - mlp));
    expect(train.useful).toBe(dense + 2 * router);
    // At inference the default evaluation factor is 2.0: capacity ceil(17 * 2 / 4) = 9 -> 36 slots.
    const inference = vmoeForwardFlops({preset: 'mnist-tiny', moe: {numExperts: 4, router: 'topk', capacityFactor: 1.25}});
    expect(inference.total).toBe(dense + 2 * (36 * 4 * 64 * 128 + router - mlp));
    // top-2, gated experts: 3 matMuls of d x h per expert and token.
    const gated = vmoeForwardFlops({preset: 'mnist-tiny', moeBlocks: {last: 1}, moe: {numExperts: 4, router: 'topk', k: 2, gated: true}});
    expect(gated.useful).toBe(dense - mlp + 2 * 17 * 6 * 64 * 128 + router);
  });
});
