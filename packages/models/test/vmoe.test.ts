import * as tf from '@tensorflow/tfjs';
import {describeBackends, expectAllClose, expectNoLeaks, useBackend} from '../../router/test/helpers/backends';
import {
  auxiliaryLoss, moeify, moeifyParameterCount, moeLayers, moeMetrics, moeParameterCount, vit, ViTConfig, vmoe,
  vmoeParameterCount, VMoEConfig,
} from '../src';
import {routerNames} from '@tfjs-moe/router';
import {mlpReference} from './reference';
import {randomizeWeights, roundTrip, uniformTensor} from './helpers';

/** 8x8 grey images, patch 2: 16 patches + class token = 17 tokens of width 8; 2 blocks. */
const TINY: ViTConfig = {
  imageSize: 8, channels: 1, patchSize: 2, hiddenSize: 8, depth: 2, numHeads: 2, mlpDim: 12, numClasses: 3, seed: 1,
};
const TOKENS = 17;

describe('vmoe parameter counts', () => {
  beforeAll(() => useBackend('cpu'));

  it('moeParameterCount by hand', () => {
    // E 4, d 64, h 128: experts 4 * (2*64*128 + 128 + 64) = 66304; router 64*4 = 256; total 66560.
    expect(moeParameterCount(64, 128, 4)).toBe(66560);
    expect(moeParameterCount(64, 128, 4, false)).toBe(4 * 2 * 64 * 128 + 256);
  });

  it.each([
    ['every-other', {numExperts: 3, router: 'topk'}],
    [{last: 2}, {numExperts: 4, router: 'topk'}],
    [[0], {numExperts: 2, router: 'topk', useBias: false}],
    ['all', {numExperts: 3, router: 'topk', hiddenDim: 6}],
  ] as const)('blocks %j, moe %j: countParams() equals vmoeParameterCount', (moeBlocks, moeOptions) => {
    const config = {...TINY, moeBlocks, moe: moeOptions} as VMoEConfig;
    const model = vmoe(config);
    expect(model.countParams()).toBe(vmoeParameterCount(config));
    model.dispose();
  });

  it('mnist-tiny with 4 experts every other block, by hand', () => {
    // 139018 (dense) + 2 blocks * (66560 - 16576) = 238986
    expect(vmoeParameterCount({preset: 'mnist-tiny', moe: {numExperts: 4}})).toBe(238986);
    const model = vmoe({preset: 'mnist-tiny', moe: {numExperts: 4, router: 'topk'}});
    expect(model.countParams()).toBe(238986);
    expect(moeLayers(model).map((l) => l.name)).toEqual(['block1_moe', 'block3_moe']);
    model.dispose();
  });
});

describeBackends('vmoe', () => {
  it('predicts [batch, classes] probabilities, trains every weight, and reports metrics', () => {
    const model = vmoe({...TINY, headActivation: 'softmax', moe: {numExperts: 4, router: 'topk', capacityFactor: 2}});
    randomizeWeights(model, 3);
    const x = uniformTensor([3, 8, 8, 1], 4);
    const y = model.predict(x) as tf.Tensor;
    expect(y.shape).toEqual([3, 3]);
    expectAllClose(tf.sum(y, 1).arraySync() as number[], [1, 1, 1], 1e-5);
    const metrics = moeMetrics(model).block1_moe!;
    expect(metrics.tokensPerExpert).toHaveLength(4);
    const labels = tf.oneHot([0, 1, 2], 3);
    const {value, grads} = tf.variableGrads(() => tf.add(
      tf.losses.softmaxCrossEntropy(labels, tf.log(model.apply(x, {training: true}) as tf.Tensor)),
      auxiliaryLoss(model),
    ) as tf.Scalar);
    expect(Object.keys(grads).length).toBe(model.trainableWeights.length);
    for (const [name, g] of Object.entries(grads)) {
      const a = g.abs().max().dataSync()[0];
      if (!(Number.isFinite(a) && a > 0)) throw new Error(`gradient of ${name} is ${a}`);
    }
    tf.dispose([x, y, labels, value, ...Object.values(grads)]);
    model.dispose();
  });

  it.each(routerNames())('save + loadLayersModel round trip gives identical outputs: router %s', async (name) => {
    const router = name === 'topk' ? {name, k: 2} : name;
    const model = vmoe({...TINY, moeBlocks: 'all', moe: {numExperts: 3, router, capacityFactor: 1.5}});
    randomizeWeights(model, 5);
    const loaded = await roundTrip(model);
    expect(moeLayers(loaded).map((l) => l.router.getClassName())).toEqual(moeLayers(model).map((l) => l.router.getClassName()));
    const x = uniformTensor([2, 8, 8, 1], 6);
    const a = model.predict(x) as tf.Tensor;
    const b = loaded.predict(x) as tf.Tensor;
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    tf.dispose([x, a, b]);
    model.dispose();
    loaded.dispose();
  });

  it('does not leak tensors over repeated forward passes', async () => {
    const model = vmoe({...TINY, moe: {numExperts: 4, router: 'topk'}});
    const x = uniformTensor([2, 8, 8, 1], 8);
    await expectNoLeaks(() => {
      (model.predict(x) as tf.Tensor).dispose();
    }, 5);
    // training-mode calls with a gradient: the layer keeps only its last metrics and aux loss
    const labels = tf.oneHot([0, 1], 3);
    await expectNoLeaks(() => {
      const {value, grads} = tf.variableGrads(() => tf.add(
        tf.losses.softmaxCrossEntropy(labels, tf.log(model.apply(x, {training: true}) as tf.Tensor)),
        auxiliaryLoss(model),
      ) as tf.Scalar);
      tf.dispose([value, ...Object.values(grads)]);
    }, 5);
    tf.dispose([x, labels]);
    model.dispose();
  });
});

describeBackends('moeify', () => {
  const routers = routerNames();

  it('has the routers of the issue registered', () => {
    expect(routers).toEqual(expect.arrayContaining(['topk', 'expert-choice', 'sinkhorn', 'sparse-ot']));
  });

  it.each(routerNames())(
    'upcycling with normalizeCombineWeights and no drops (dropless) reproduces the dense model: router %s',
    (router) => {
      const dense = vit({...TINY, activation: 'gelu'});
      randomizeWeights(dense, 21);
      const sparse = moeify(dense, {numExperts: 3, router, normalizeCombineWeights: true, dropless: true, blocks: 'all'});
      expect(moeLayers(sparse)).toHaveLength(2);
      const x = uniformTensor([2, 8, 8, 1], 22);
      const a = dense.predict(x) as tf.Tensor;
      const b = sparse.predict(x) as tf.Tensor;
      for (const m of Object.values(moeMetrics(sparse))) expect(m!.droppedFraction).toBe(0);
      // identical experts: sum_e w_e MLP(x) = MLP(x) * sum_e w_e = MLP(x) up to float32 rounding
      expectAllClose(b.dataSync(), a.dataSync(), 1e-5, 1e-4);
      tf.dispose([x, a, b]);
      dense.dispose();
      sparse.dispose();
    },
  );

  it.each(routerNames())('a dropped token gets 0 from the MoE layer (block output = residual input); a kept one gets the dense MLP output: router %s', (router) => {
    const dense = vit(TINY);
    randomizeWeights(dense, 31);
    // 4 experts, capacity per expert = ceil(17 * 0.25 / 4) = 2 (top-1: at most 8 of 17 tokens kept)
    const sparse = moeify(dense, {
      numExperts: 4, router, capacityFactor: 0.25, evalCapacityFactor: 0.25, normalizeCombineWeights: true, dropless: false,
    });
    const probeOf = (m: tf.LayersModel, mlpName: string) => tf.model({
      inputs: m.inputs,
      outputs: ['block1_add1', 'block1_norm2', mlpName, 'block1_add2'].map((n) => m.getLayer(n).output as tf.SymbolicTensor),
    });
    const x = uniformTensor([2, 8, 8, 1], 32);
    const [resDense] = probeOf(dense, 'block1_mlp').predict(x) as tf.Tensor[];
    const outs = probeOf(sparse, 'block1_moe').predict(x) as tf.Tensor[];
    const [res, normed, moeOut, blockOut] = outs.map((t) => t.arraySync() as number[][][]);
    // the blocks before the first MoE block are untouched, so the MoE block sees the dense model's input
    expect(res).toEqual(resDense.arraySync());
    const mlpWeights = dense.getLayer('block1_mlp').getWeights().map((w) => w.arraySync());
    let dropped = 0;
    let kept = 0;
    for (let b = 0; b < 2; b++) {
      const mlp = mlpReference(normed[b], mlpWeights, 'gelu');
      for (let t = 0; t < TOKENS; t++) {
        if (moeOut[b][t].every((v) => v === 0)) {
          dropped++;
          expect(blockOut[b][t]).toEqual(res[b][t]); // x + 0, exactly
        } else {
          kept++;
          expectAllClose(moeOut[b][t], mlp[t], 1e-5, 1e-4);
          expectAllClose(blockOut[b][t], res[b][t].map((v, j) => v + mlp[t][j]), 1e-5, 1e-4);
        }
      }
    }
    expect(kept).toBeGreaterThan(0);
    expect(dropped).toBeGreaterThan(0);
    if (router === 'topk') expect(kept).toBeLessThanOrEqual(2 * 8);
    // the layer's own count of dropped tokens agrees with the zeros seen here
    expect(moeMetrics(sparse).block1_moe!.droppedFraction as number).toBeCloseTo(dropped / (2 * TOKENS), 5);
    tf.dispose([x, resDense, ...outs]);
    dense.dispose();
    sparse.dispose();
  });

  it('fresh experts differ from the MLP; counts follow the formula; the model round-trips', async () => {
    const dense = vit(TINY);
    const sparse = moeify(dense, {numExperts: 2, router: 'topk', init: 'fresh', blocks: [0], name: 'fresh'});
    expect(sparse.name).toBe('fresh');
    expect(sparse.countParams()).toBe(moeifyParameterCount(TINY, {numExperts: 2, blocks: [0]}));
    const kIn = moeLayers(sparse)[0].kernelIn!.read();
    const k1 = dense.getLayer('block0_mlp').getWeights()[0];
    expect(tf.max(tf.abs(tf.sub(tf.gather(kIn, 0), k1))).dataSync()[0]).toBeGreaterThan(1e-3);
    const loaded = await roundTrip(sparse);
    const x = uniformTensor([1, 8, 8, 1], 3);
    const a = sparse.predict(x) as tf.Tensor;
    const b = loaded.predict(x) as tf.Tensor;
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    tf.dispose([x, a, b]);
    [dense, sparse, loaded].forEach((m) => m.dispose());
  });
});

describe('seeded construction', () => {
  beforeAll(() => useBackend('cpu'));
  const weightsOf = (m: tf.LayersModel) => m.getWeights().map((w) => Array.from(w.dataSync()));

  it('vit and vmoe with the same seed start from identical weights; experts differ from each other', () => {
    const config = {...TINY, seed: 7, moe: {numExperts: 3, router: 'sparse-ot'}} as VMoEConfig;
    const [a, b] = [vmoe(config), vmoe(config)];
    expect(weightsOf(b)).toEqual(weightsOf(a));
    const c = vmoe({...config, seed: 8});
    expect(weightsOf(c)).not.toEqual(weightsOf(a));
    const kIn = moeLayers(a)[0].kernelIn!.read();
    const [e0, e1] = tf.unstack(kIn);
    expect(tf.max(tf.abs(tf.sub(e0, e1))).dataSync()[0]).toBeGreaterThan(1e-3);
    expect(weightsOf(vit({...TINY, seed: 7}))).toEqual(weightsOf(vit({...TINY, seed: 7})));
    [a, b, c].forEach((m) => m.dispose());
  });

  it('moeify with a seed is reproducible (fresh experts and router)', () => {
    const dense = vit({...TINY, seed: 2});
    const opts = {numExperts: 2, router: 'topk', init: 'fresh' as const, seed: 5};
    expect(weightsOf(moeify(dense, opts))).toEqual(weightsOf(moeify(dense, opts)));
    expect(weightsOf(moeify(dense, {...opts, init: 'upcycle'}))).toEqual(weightsOf(moeify(dense, {...opts, init: 'upcycle'})));
    dense.dispose();
  });

  it('auxiliaryLoss sums the MoE layers\' last auxiliary losses, and is 0 before any call', () => {
    const model = vmoe({...TINY, moeBlocks: 'all', moe: {numExperts: 2, router: 'topk'}});
    const zero = auxiliaryLoss(model);
    expect(zero.dataSync()[0]).toBe(0);
    const x = uniformTensor([2, 8, 8, 1], 1);
    const y = model.apply(x, {training: true}) as tf.Tensor;
    const total = auxiliaryLoss(model);
    const parts = Object.values(moeMetrics(model)).map((m) => m!.auxiliaryLoss as number);
    expect(parts).toHaveLength(2);
    expect(parts.every((p) => p > 0)).toBe(true); // Switch load-balance loss is >= its weight * 1 > 0
    expect(total.dataSync()[0]).toBeCloseTo(parts[0] + parts[1], 5);
    tf.dispose([zero, x, y, total]);
    model.dispose();
  });
});

describe('vmoe and moeify bad input', () => {
  beforeAll(() => useBackend('cpu'));

  it.each([
    [{...TINY, moe: {numExperts: 2, router: 'top-3'}}, /^Expected router to be one of .*'topk'.*, but got "top-3"\.$/],
    [{...TINY, moe: {numExperts: 2, router: 'topk', capacityFactor: 0}}, /^MoE: Expected capacityFactor to be a finite number > 0, but got 0\.$/],
    [{...TINY, moe: {numExperts: 0}}, /^MoE: Expected numExperts to be a positive integer, but got 0\.$/],
    [{...TINY, moeBlocks: [2], moe: {numExperts: 2}}, /^vmoe config: Expected moeBlocks to be block indices in \[0, 1\], but got \[2\]\.$/],
    [{...TINY, moeBlocks: {last: 3}, moe: {numExperts: 2}}, /^vmoe config: Expected moeBlocks.last to be at most the number of blocks 2, but got 3\.$/],
    [{...TINY, moeBlocks: 'odd', moe: {numExperts: 2}}, /^vmoe config: Expected moeBlocks to be 'every-other', 'all', \{last: n\} or a list of block indices, but got "odd"\.$/],
    [{...TINY}, /^vmoe config: Expected moe to be an object with at least numExperts, but got undefined\.$/],
  ])('vmoe %j', (config, message) => {
    expect(() => vmoe(config as VMoEConfig)).toThrow(message);
  });

  it('moeify errors', () => {
    const dense = vit(TINY);
    expect(() => moeify(dense, {numExperts: 2, router: 'nope'})).toThrow(/^Expected router to be one of .*'topk'.*, but got "nope"\.$/);
    expect(() => moeify(dense, {numExperts: 2, router: 'topk', capacityFactor: -1})).toThrow(
      'MoE: Expected capacityFactor to be a finite number > 0, but got -1.',
    );
    expect(() => moeify(dense, {numExperts: 2, router: 'topk', hiddenDim: 5})).toThrow(
      "moeify: Expected hiddenDim to be the replaced MLP's hiddenDim 12 for init 'upcycle', but got 5.",
    );
    expect(() => moeify(dense, {numExperts: 2, router: 'topk', init: 'copy' as 'fresh'})).toThrow(
      "moeify: Expected init to be one of 'upcycle', 'fresh', but got \"copy\".",
    );
    expect(() => moeify(dense, {numExperts: 2, router: 'topk', blocks: ['block9_mlp']})).toThrow(
      'moeify: Expected blocks to be names of MLP layers ("block0_mlp", "block1_mlp"), but got "block9_mlp".',
    );
    const all = moeify(dense, {numExperts: 2, router: 'topk', blocks: 'all'});
    expect(() => moeify(all, {numExperts: 2})).toThrow('moeify: Expected model to be a model with MLPs to replace (MlpBlock layers or Dense -> Dense chains), but got "vit".');
    dense.dispose();
    all.dispose();
  });
});
