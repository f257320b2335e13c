/**
 * What the router base gives every router (issue 8 item 4, issue 12 items 1 and 6, issue 13
 * item 6), on hand-worked cases: strict arguments, the auxiliary losses, the router bias and the
 * Gaussian logit noise, the per-token view of an assignment, a single expert, per-group gathers
 * on every backend, and the config objects surviving a save/load.
 */
import * as tf from '@tensorflow/tfjs';
import {describeBackends, expectAllClose} from '../helpers/backends';
import {UnknownOptionError} from '../../src/core/options';
import {createRouter, expertChoiceRouter, Router, sinkhornRouter, SparseOTRouter, sparseOTRouter, topKRouter} from '../../src/routers';
import {expertsOfTokens, makeRoutingResult, metricsToValues} from '../../src/routers/routing-result';
import {takeAlongAxis1} from '../../src/routers/take';
import {moe, MoE} from '../../src/moe/moe-layer';

// Group of 4 tokens over 2 experts (identity kernel: logits = tokens): t0 [2, 0], t1 [1, 0], t2 [0, 1], t3 [3, 0].
const TOKENS_4x2 = [[[2, 0], [1, 0], [0, 1], [3, 0]]];

function identityKernel<R extends Router>(router: R, e: number): R {
  router.build([null, null, e]);
  router.setWeights([tf.eye(e), ...router.getWeights().slice(1)]);
  return router;
}

const MAKERS: Array<[string, (args: {numExperts: number} & Record<string, unknown>) => Router]> = [
  ['topk', (a) => topKRouter(a)],
  ['expert-choice', (a) => expertChoiceRouter(a)],
  ['sinkhorn', (a) => sinkhornRouter(a)],
  ['sparse-ot', (a) => sparseOTRouter(a)],
];

describe('router arguments are strict', () => {
  it.each([
    [() => topKRouter({numExperts: 4, kk: 2} as never), "TopKRouter: Unknown option 'kk'. Did you mean 'k'?"],
    [() => createRouter({name: 'topk', topK: 2}, {numExperts: 4}), "TopKRouter: Unknown option 'topK'. Did you mean 'k'?"],
    [() => expertChoiceRouter({numExperts: 4, capacityFactor: 2} as never), "ExpertChoiceRouter: Unknown option 'capacityFactor'"],
    [() => sinkhornRouter({numExperts: 4, epsilonn: 0.1} as never), "SinkhornRouter: Unknown option 'epsilonn'. Did you mean 'epsilon'?"],
    [() => sparseOTRouter({numExperts: 4, zLosWeight: 0.1} as never), "SparseOTRouter: Unknown option 'zLosWeight'. Did you mean 'zLossWeight'?"],
  ])('%#: unknown keys name the key and the nearest known one', (make, message) => {
    expect(make).toThrow(UnknownOptionError);
    expect(make).toThrow(message);
  });

  it('shared arguments are checked where every router reads them', () => {
    expect(() => expertChoiceRouter({numExperts: 2, logitNoise: -1})).toThrow('ExpertChoiceRouter: Expected logitNoise to be a finite number >= 0, but got -1.');
    expect(() => sinkhornRouter({numExperts: 2, useBias: 'yes' as never})).toThrow('SinkhornRouter: Expected useBias to be a boolean, but got "yes".');
    expect(() => sparseOTRouter({numExperts: 2, jitterNoise: 1})).toThrow('SparseOTRouter: Expected jitterNoise to be a number in [0, 1), but got 1.');
  });
});

describeBackends('every router has the shared parts', (backend) => {
  it.each(MAKERS)('%s: load-balancing and z-loss weighted into the auxiliary loss (hand-worked)', (_name, make) => {
    expect(tf.getBackend()).toBe(backend);
    const router = identityKernel(make({numExperts: 2, loadBalanceLossWeight: 0.5, zLossWeight: 0.1}), 2);
    const r = router.route(tf.tensor3d(TOKENS_4x2), {training: false, capacity: 2});
    const m = metricsToValues(r.metrics);
    // Gates: t0 0.880797, t1 0.731059, t2 0.268941 (expert 0), t3 0.952574. First choices
    // [0, 0, 1, 0]: f = [3/4, 1/4]; P = [0.708343, 0.291657]; load balance 2 (f . P) = 1.208343.
    expect(m.loadBalanceLoss as number).toBeCloseTo(1.208343, 5);
    // z-loss: mean of logsumexp^2 = (ln(e^2+1)^2 + 2 ln(e+1)^2 + ln(e^3+1)^2) / 4 = 4.316755.
    expect(m.zLoss as number).toBeCloseTo(4.316755, 4);
    const expected = 0.5 * 1.208343 + 0.1 * 4.316755; // 1.035847
    expect(r.auxiliaryLoss.dataSync()[0]).toBeCloseTo(expected, 4);
    expect(m.auxiliaryLoss as number).toBeCloseTo(expected, 4);
    r.dispose();
  });

  it.each(MAKERS)('%s: the auxiliary loss reaches the kernel (gradient of the z-loss by hand)', (_name, make) => {
    const router = identityKernel(make({numExperts: 2, zLossWeight: 1, loadBalanceLossWeight: 0}), 2);
    const x = tf.tensor3d([[[2, 0]]]);
    // One token x = [2, 0]: z = lse(xW)^2, dz/dW[0, j] = 2 lse x_0 p_j = 4 ln(e^2 + 1) p_j.
    const {grads} = tf.variableGrads(() => {
      const r = router.route(x, {training: false, capacity: 1});
      const aux = r.auxiliaryLoss.clone();
      tf.dispose([r.tokenIndices, r.combineWeights, r.routerLogits, r.auxiliaryLoss, ...Object.values(r.metrics)]);
      return aux;
    }, [router.kernel!.read() as tf.Variable]);
    const lse = Math.log(Math.exp(2) + 1);
    expectAllClose(Object.values(grads)[0].arraySync() as number[][], [[4 * lse * 0.880797, 4 * lse * 0.119203], [0, 0]], 1e-4);
    tf.dispose(grads);
  });

  it.each(MAKERS)('%s: router bias added to the logits (kernel 0, bias [1, -1])', (_name, make) => {
    const router = make({numExperts: 2, useBias: true});
    router.build([null, null, 3]);
    expect(router.getWeights().map((w) => w.shape)).toEqual([[3, 2], [2], ...router.getWeights().slice(2).map((w) => w.shape)]);
    router.setWeights([tf.zeros([3, 2]), tf.tensor1d([1, -1]), ...router.getWeights().slice(2)]);
    const r = router.route(tf.randomNormal([1, 4, 3], 0, 1, 'float32', 2) as tf.Tensor3D, {training: false, capacity: 4});
    expectAllClose(r.routerLogits.arraySync() as number[][][], [[[1, -1], [1, -1], [1, -1], [1, -1]]]);
    // importance = mean gate = softmax([1, -1]) = [0.880797, 0.119203]
    expectAllClose(r.metrics.importance.dataSync(), [0.880797, 0.119203], 1e-5);
    r.dispose();
  });

  it.each(MAKERS)('%s: router entropy in nats, over real tokens only (hand-worked)', (_name, make) => {
    // Entropy of softmax([a, b]), worked in float64: [2, 0] 0.365334, [1, 0] and [0, 1] 0.582203,
    // [3, 0] 0.190865. Mean over all four: 0.430151; with t3 masked out: 0.509913.
    const router = identityKernel(make({numExperts: 2}), 2);
    const x = tf.tensor3d(TOKENS_4x2);
    const all = router.route(x, {training: false, capacity: 4});
    expectAllClose([all.metrics.routerEntropy.dataSync()[0]], [0.430151], 1e-5);
    const masked = router.route(x, {training: false, capacity: 4, mask: tf.tensor2d([[1, 1, 1, 0]])});
    expectAllClose([masked.metrics.routerEntropy.dataSync()[0]], [0.509913], 1e-5);
    // Limits: uniform gates give ln(experts); a zero kernel makes every gate 1/4.
    const wide = make({numExperts: 4});
    wide.build([null, null, 2]);
    wide.setWeights([tf.zeros([2, 4]), ...wide.getWeights().slice(1)]);
    const uniform = wide.route(x, {training: false, capacity: 4});
    expectAllClose([uniform.metrics.routerEntropy.dataSync()[0]], [Math.log(4)], 1e-5);
    for (const r of [all, masked, uniform]) r.dispose();
    x.dispose();
  });

  it.each(MAKERS)('%s: Gaussian logit noise in training only, with the given standard deviation', (_name, make) => {
    // Seeded, so the sample (and this statistical check on it) is the same on every run.
    const router = make({numExperts: 4, logitNoise: 0.5, seed: 11});
    router.build([null, null, 2]);
    router.setWeights([tf.zeros([2, 4]), ...router.getWeights().slice(1)]);
    const x = tf.zeros([1, 1024, 2]) as tf.Tensor3D;
    const infer = router.route(x, {training: false, capacity: 256});
    expect(Array.from(infer.routerLogits.dataSync()).every((v) => v === 0)).toBe(true);
    infer.dispose();
    const train = router.route(x, {training: true, capacity: 256});
    const v = Array.from(train.routerLogits.dataSync());
    train.dispose();
    const mean = v.reduce((s, a) => s + a, 0) / v.length;
    const std = Math.sqrt(v.reduce((s, a) => s + (a - mean) ** 2, 0) / v.length);
    // 4096 draws of N(0, 0.25): the sample mean is within 4 standard errors (4 * 0.5 / 64 = 0.031)
    // of 0, the sample std within 0.03 of 0.5 (its standard error is 0.5 / sqrt(2 * 4096) = 0.0055).
    expect(Math.abs(mean)).toBeLessThan(0.031);
    expect(Math.abs(std - 0.5)).toBeLessThan(0.03);
    x.dispose();
  });

  it.each(MAKERS)('%s: a seeded router draws its noise from the seed, never from Math.random', (_name, make) => {
    const noisy = (seed: number | undefined): {router: Router; logits: () => number[]} => {
      const router = make({numExperts: 4, logitNoise: 0.5, jitterNoise: 0.1, kernelInitializer: 'zeros', ...(seed === undefined ? {} : {seed})});
      router.build([null, null, 2]);
      router.setWeights([tf.ones([2, 4]), ...router.getWeights().slice(1)]);
      const logits = (): number[] => {
        const r = router.route(tf.ones([1, 8, 2]) as tf.Tensor3D, {training: true, capacity: 8});
        const v = Array.from(r.routerLogits.dataSync());
        r.dispose();
        return v;
      };
      return {router, logits};
    };
    const spy = jest.spyOn(Math, 'random');
    try {
      const a = noisy(7);
      const b = noisy(7);
      const first = a.logits();
      expect(b.logits()).toEqual(first); // same seed, same draws
      expect(a.logits()).not.toEqual(first); // the next call draws anew
      a.router.setNoiseSeed(7);
      expect(a.logits()).toEqual(first); // resetting the seed replays the draws
      expect(noisy(8).logits()).not.toEqual(first);
      expect(spy).not.toHaveBeenCalled();
      expect(a.router.getConfig().seed).toBe(7);
      expect('seed' in noisy(undefined).router.getConfig()).toBe(false);
    } finally {
      spy.mockRestore();
    }
    expect(() => make({numExperts: 2, seed: -1})).toThrow("Expected seed to be a non-negative integer, but got -1.");
  });

  it.each(MAKERS)('%s: a single expert takes every token with combine weight 1', (_name, make) => {
    const router = make({numExperts: 1});
    const capacity = router.computeCapacity(5, 1.0);
    expect(capacity).toBe(5);
    const r = router.route(tf.randomNormal([2, 5, 3], 0, 1, 'float32', 9) as tf.Tensor3D, {training: true, capacity});
    // softmax over one expert is 1; the expert has room for the whole group.
    const idx = r.tokenIndices.arraySync();
    for (const g of idx) expect([...g[0]].sort()).toEqual([0, 1, 2, 3, 4]);
    expectAllClose(r.combineWeights.dataSync(), new Array(10).fill(1), 1e-6);
    expect(r.metrics.droppedFraction.dataSync()[0]).toBe(0);
    r.dispose();
  });
});

describeBackends('one expert in the MoE layer is a dense FFN', (backend) => {
  it.each(['topk', 'expert-choice', 'sinkhorn', 'sparse-ot'])('%s: y = gelu(x W1 + b1) W2 + b2', (router) => {
    expect(tf.getBackend()).toBe(backend);
    const layer = moe({numExperts: 1, hiddenDim: 3, router, activation: 'relu'});
    layer.build([1, 4, 2]);
    const w1 = [[1, -1, 0.5], [0.5, 2, -1]];
    const b1 = [0.1, 0, -0.2];
    const w2 = [[1, 0], [0, 1], [2, -1]];
    const b2 = [0.5, -0.5];
    const byName = Object.fromEntries(layer.weights.map((w) => [w.originalName.split('/').pop(), w]));
    const set = (name: string, v: number[] | number[][], shape: number[]) => byName[name].write(tf.tensor((v as number[]).flat(), shape));
    set('kernel_in', w1, [1, 2, 3]); set('bias_in', b1, [1, 3]); set('kernel_out', w2, [1, 3, 2]); set('bias_out', b2, [1, 2]);
    const x = [[[1, 0], [0, 1], [-1, 2], [0.5, 0.5]]];
    const y = (layer.apply(tf.tensor3d(x)) as tf.Tensor).arraySync() as number[][][];
    // By hand for x = [1, 0]: h = relu([1.1, -1, 0.3]) = [1.1, 0, 0.3]; y = [1.1 + 0.6, -0.3] + b2 = [2.2, -0.8].
    const dense = x[0].map(([a, b]) => {
      const h = [0, 1, 2].map((j) => Math.max(0, a * w1[0][j] + b * w1[1][j] + b1[j]));
      return [0, 1].map((k) => h.reduce((s, hj, j) => s + hj * w2[j][k], 0) + b2[k]);
    });
    expectAllClose(dense[0], [2.2, -0.8], 1e-6);
    expectAllClose(y[0], dense, 1e-5);
  });
});

describeBackends('per-group gathers and the per-token view', (backend) => {
  it('takeAlongAxis1 picks x[g, indices[g, j]] in every group', () => {
    expect(tf.getBackend()).toBe(backend);
    const x = tf.tensor2d([[10, 11, 12, 13], [20, 21, 22, 23], [30, 31, 32, 33]]);
    const i = tf.tensor2d([[3, 0], [1, 2], [0, 0]], undefined, 'int32');
    expect(takeAlongAxis1(x, i).arraySync()).toEqual([[13, 10], [21, 22], [30, 30]]);
  });

  it('expert choice never takes masked tokens, in every group', () => {
    const router = identityKernel(expertChoiceRouter({numExperts: 2}), 2);
    const x = tf.tensor3d([TOKENS_4x2[0], TOKENS_4x2[0], TOKENS_4x2[0]]);
    const mask = tf.tensor2d([[1, 1, 1, 1], [1, 1, 0, 0], [0, 1, 1, 1]]);
    const r = router.route(x, {training: false, capacity: 2, mask});
    // Expert 0 by gate: t3 .953, t0 .881, t1 .731, t2 .269; expert 1: t2 .731, t1 .269, t0 .119, t3 .047.
    expect(r.tokenIndices.arraySync()).toEqual([
      [[3, 0], [2, 1]],
      [[0, 1], [1, 0]],
      [[3, 1], [2, 1]],
    ]);
    r.dispose();
  });

  it('expertsOfTokens lists each token\'s experts by combine weight', () => {
    const t = expertsOfTokens(tf.tensor3d([[[1], [1]], [[0], [-1]]], [2, 2, 1], 'int32'), tf.tensor3d([[[0.2], [0.7]], [[0.9], [0]]]), 2);
    expect(t.experts.arraySync()).toEqual([[[-1, -1], [1, 0]], [[0, -1], [-1, -1]]]);
    expectAllClose(t.weights.arraySync() as number[][][], [[[0, 0], [0.7, 0.2]], [[0.9, 0], [0, 0]]]);
    const r = makeRoutingResult({
      tokenIndices: tf.tensor3d([[[1], [1]]], [1, 2, 1], 'int32'), combineWeights: tf.tensor3d([[[0.7], [0.2]]]),
      routerLogits: tf.zeros([1, 2, 2]) as tf.Tensor3D, auxiliaryLoss: tf.scalar(0), metrics: {} as never,
    });
    expect(r.expertsOfTokens().experts.arraySync()).toEqual([[[-1, -1], [0, 1]]]);
    r.dispose();
  });
});

describe('config objects survive save and load', () => {
  it('tokens choose experts with Adam and the unrolled gradient: same config and predictions after a JSON round trip', async () => {
    const x = tf.input({shape: [6, 4]});
    const layer = moe({numExperts: 3, hiddenDim: 5, router: {
      name: 'sparse-ot', useBias: true, zLossWeight: 0.01,
      solver: {className: 'Adam', config: {learningRate: 0.05, maxIterations: 15}},
      gradient: {className: 'Unrolled', config: {iterations: 2}},
      assignment: {className: 'TokensChooseExperts', config: {expertsPerToken: 2}},
    }});
    const model = tf.model({inputs: x, outputs: layer.apply(x) as tf.SymbolicTensor});
    let saved: tf.io.ModelArtifacts | undefined;
    await model.save(tf.io.withSaveHandler(async (a) => {
      saved = a;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    const loaded = await tf.loadLayersModel(tf.io.fromMemory({...saved!, modelTopology: JSON.parse(JSON.stringify(saved!.modelTopology))}));
    const router = (loaded.layers.find((l) => l instanceof MoE) as MoE).router as SparseOTRouter;
    expect(router.solver).toEqual({className: 'Adam', config: {formulation: 'semidual', learningRate: 0.05, maxIterations: 15}});
    expect(router.gradient).toEqual({className: 'Unrolled', config: {iterations: 2}});
    expect(router.assignment).toEqual({className: 'TokensChooseExperts', config: {expertsPerToken: 2}});
    expect([router.useBias, router.zLossWeight]).toEqual([true, 0.01]);
    const input = tf.randomNormal([2, 6, 4], 0, 1, 'float32', 21);
    expect(Array.from((loaded.predict(input) as tf.Tensor).dataSync())).toEqual(Array.from((model.predict(input) as tf.Tensor).dataSync()));
  });
});
