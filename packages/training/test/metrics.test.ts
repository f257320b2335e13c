import * as tf from '@tensorflow/tfjs';
import {vmoe} from '@tfjs-moe/models';
import {useBackend} from '../../router/test/helpers/backends';
import {
  evaluate,
  subset,
  syntheticDataset,
  LoadBalanceCallback,
  findMoELayers,
  loadHistogram,
  measureRouting,
  mergeStats,
  probeRouting,
  readLayerStats,
  statsFromMetrics,
} from '../src';

describe('measureRouting on a fixed routing (hand-computed)', () => {
  // 2 groups of 4 tokens, 3 experts, capacity 2 (-1 = empty slot).
  //   group 0: e0 <- [0, 1], e1 <- [1, -], e2 <- [2, -]   token 1 taken twice, token 3 dropped
  //   group 1: e0 <- [0, -], e1 <- [1, 2], e2 <- [3, -]   every token once
  const tokenIndices = [0, 1, 1, -1, 2, -1, 0, -1, 1, 2, 3, -1];
  // Gates: group-0 tokens uniform (1/3 each), group-1 tokens one-hot on e0, e1, e1, e2.
  const third = 1 / 3;
  const gates = [
    ...[third, third, third, third, third, third, third, third, third, third, third, third],
    ...[1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1],
  ];
  // Group 0 holds an image of class 1, group 1 an image of class 0.
  const tokenClasses = [1, 1, 1, 1, 0, 0, 0, 0];
  const s = measureRouting({tokenIndices, shape: [2, 3, 2], groupSize: 4, gates, tokenClasses, numClasses: 2});

  it('counts tokens per expert and summarizes the load', () => {
    // kept: e0 2 + 1 = 3, e1 1 + 2 = 3, e2 1 + 1 = 2 -> per group [1.5, 1.5, 1].
    expect(s.tokensPerExpert).toEqual([1.5, 1.5, 1]);
    expect(s.min).toBe(1);
    expect(s.max).toBe(1.5);
    expect(s.mean).toBeCloseTo(4 / 3, 12);
    // max/mean = 1.5 / (4/3) = 1.125.
    expect(s.maxOverMean).toBeCloseTo(1.125, 12);
    // deviations 1/6, 1/6, -1/3: variance (1/36 + 1/36 + 4/36) / 3 = 1/18; cv = sqrt(1/18) / (4/3) = sqrt(2) / 8.
    expect(s.cv).toBeCloseTo(Math.SQRT2 / 8, 12);
    // loads / mean = 1.125, 1.125, 0.75 -> bins [0.8, 1.2) twice and [0.5, 0.8) once.
    expect(s.loadHistogram).toEqual([0, 1, 2, 0, 0, 0]);
  });

  it('counts dropped tokens and experts per token', () => {
    // per-token expert counts: group 0: 1, 2, 1, 0; group 1: 1, 1, 1, 1.
    expect(s.droppedFraction).toBe(1 / 8);
    expect(s.expertsPerToken).toEqual({min: 0, mean: 1, max: 2});
    expect(s.expertsPerTokenHistogram).toEqual([1 / 8, 6 / 8, 1 / 8]);
  });

  it('computes importance and router entropy from the gates', () => {
    // importance = mean gate: e0 (4/3 + 1) / 8 = 7/24, e1 (4/3 + 2) / 8 = 10/24, e2 7/24.
    s.importance!.forEach((v, i) => expect(v).toBeCloseTo([7 / 24, 10 / 24, 7 / 24][i], 12));
    // entropy: four tokens of ln 3, four of 0 -> mean ln(3) / 2; normalized by ln 3 -> 0.5.
    expect(s.routerEntropy).toBeCloseTo(Math.log(3) / 2, 12);
    expect(s.normalizedEntropy).toBeCloseTo(0.5, 12);
  });

  it('counts class x expert slots (expert specialization)', () => {
    // class 1 = group 0: e0 2, e1 1, e2 1; class 0 = group 1: e0 1, e1 2, e2 1.
    expect(s.classExpert).toEqual([
      [1, 2, 1],
      [2, 1, 1],
    ]);
  });

  it('leaves masked (padding) tokens out', () => {
    // The same routing with token 3 of group 0 marked as padding: no token is dropped any more.
    const m = measureRouting({tokenIndices, shape: [2, 3, 2], groupSize: 4, tokenMask: [1, 1, 1, 0, 1, 1, 1, 1]});
    expect(m.droppedFraction).toBe(0);
    expect(m.expertsPerToken).toEqual({min: 1, mean: 8 / 7, max: 2});
  });

  it('rejects inconsistent shapes with pinned messages', () => {
    expect(() => measureRouting({tokenIndices: [0, 1, 2], shape: [1, 2, 2], groupSize: 2})).toThrow(
      'Expected tokenIndices to be 4 entries for shape [1,2,2], but got 3.',
    );
    expect(() => measureRouting({tokenIndices: [0, 5], shape: [1, 2, 1], groupSize: 2})).toThrow(
      'Expected tokenIndices to be token indices < groupSize 2, but got 5.',
    );
  });
});

describe('statsFromMetrics, mergeStats, loadHistogram', () => {
  it('derives the summary from router metric values', () => {
    const s = statsFromMetrics({tokensPerExpert: [3, 1], droppedFraction: 0.25, expertsPerTokenMean: 0.75, meanRowViolation: 0.1, solverIterations: 20});
    // mean 2, max 3 -> max/mean 1.5; std 1 -> cv 0.5.
    expect([s.maxOverMean, s.cv, s.droppedFraction, s.otMarginalError, s.solverIterations]).toEqual([1.5, 0.5, 0.25, 0.1, 20]);
    expect(() => statsFromMetrics({droppedFraction: 0})).toThrow('Expected metrics.tokensPerExpert to be a per-expert array, but got undefined.');
  });

  it('averages batches and sums class x expert counts', () => {
    const a = measureRouting({tokenIndices: [0, 1], shape: [1, 2, 1], groupSize: 2, tokenClasses: [0, 0], numClasses: 1});
    const b = measureRouting({tokenIndices: [0, -1], shape: [1, 2, 1], groupSize: 2, tokenClasses: [0, 0], numClasses: 1});
    const m = mergeStats([a, b]);
    // a: loads [1, 1], no drop; b: loads [1, 0], token 1 dropped (1/2) -> mean loads [1, 0.5], drop 0.25.
    expect(m.tokensPerExpert).toEqual([1, 0.5]);
    expect(m.droppedFraction).toBe(0.25);
    expect(m.classExpert).toEqual([[2, 1]]);
  });

  it('bins loads relative to the mean', () => {
    // mean 1: ratios 0, 0.5, 1, 2.5 -> bins 0, 1, 2, 5.
    expect(loadHistogram([0, 0.5, 1, 2.5])).toEqual([1, 1, 1, 0, 0, 1]);
    expect(loadHistogram([0, 0])).toEqual([2, 0, 0, 0, 0, 0]);
  });
});

describe('MoE models [cpu]', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  const tiny = (router: string): tf.LayersModel =>
    vmoe({preset: 'mnist-tiny', depth: 2, hiddenSize: 16, numHeads: 2, mlpDim: 32, headActivation: 'linear', seed: 1, moe: {numExperts: 4, router, capacityFactor: 1.0}});

  it('the probe reproduces each layer\'s own inference routing', () => {
    for (const router of ['topk', 'expert-choice', 'sinkhorn']) {
      const model = tiny(router);
      const xs = tf.randomUniform([6, 28, 28, 1], 0, 1, 'float32', 3);
      const ys = tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32');
      tf.dispose(model.predict(xs) as tf.Tensor);
      const own = readLayerStats(model);
      const probed = probeRouting(model, xs, ys, 3);
      const names = findMoELayers(model).map((l) => l.name);
      expect(names.length).toBe(1);
      for (const name of names) {
        const tpe = probed[name].tokensPerExpert;
        tpe.forEach((v, e) => expect(v).toBeCloseTo(own[name].tokensPerExpert[e], 5));
        expect(probed[name].droppedFraction).toBeCloseTo(own[name].droppedFraction, 5);
        // The router's entropy metric (tensor ops) against the probe's (plain JS over the gates).
        expect(own[name].normalizedEntropy).toBeGreaterThan(0);
        expect(own[name].normalizedEntropy).toBeCloseTo(probed[name].normalizedEntropy!, 5);
        // Every kept slot is counted once in the class x expert table: 6 images x 17 tokens x mean experts per token.
        const total = probed[name].classExpert!.flat().reduce((a, b) => a + b, 0);
        expect(total).toBeCloseTo(6 * 17 * probed[name].expertsPerToken.mean, 6);
      }
      tf.dispose([xs, ys]);
      model.dispose();
    }
  });

  it('works as a callback of a plain model.fit', async () => {
    const model = tiny('topk');
    model.compile({optimizer: tf.train.adam(1e-3), loss: (y, p) => tf.losses.softmaxCrossEntropy(y, p)});
    const xs = tf.randomUniform([8, 28, 28, 1], 0, 1, 'float32', 4);
    const ys = tf.tensor1d([0, 1, 2, 3, 0, 1, 2, 3], 'int32');
    const yOne = tf.oneHot(ys, 10);
    const cb = new LoadBalanceCallback({everyBatches: 1, probe: {xs, ys, numClasses: 4}});
    const history = await model.fit(xs, yOne, {epochs: 2, batchSize: 4, callbacks: [cb], verbose: 0});
    expect(cb.epochs.length).toBe(2);
    const name = findMoELayers(model)[0].name;
    const s = cb.epochs[1][name];
    expect(s.numExperts).toBe(4);
    // 17 tokens per group, capacity factor 1 with 4 experts -> each group keeps at most 17 tokens in total.
    expect(s.tokensPerExpert.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(17 + 1e-6);
    expect(s.classExpert!.length).toBe(4);
    expect(history.history[`${name}/maxOverMean`].length).toBe(2);
    tf.dispose([xs, ys, yOne]);
    model.dispose();
  });

  it('evaluation probes a sample of every class even when the data are sorted by class', async () => {
    // A 4-class head for the 4-class data (evaluate refuses a model whose classes differ).
    const model = vmoe({preset: 'mnist-tiny', depth: 2, hiddenSize: 16, numHeads: 2, mlpDim: 32, numClasses: 4, headActivation: 'linear', seed: 1, moe: {numExperts: 4, router: 'topk', capacityFactor: 1.0}});
    const ds = syntheticDataset({examples: 40, numClasses: 4, seed: 2});
    const sorted = subset(ds, Array.from({length: 40}, (_, i) => i).sort((a, b) => ds.labels[a] - ds.labels[b] || a - b));
    expect(Array.from(sorted.labels.subarray(0, 12))).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    const r = await evaluate(model, sorted, {batchSize: 8, probeExamples: 16});
    const name = findMoELayers(model)[0].name;
    const perClass = r.balance[name].classExpert!.map((row) => row.reduce((a, b) => a + b, 0));
    // 16 probed images x 17 tokens, every class among them (the first 16 in sorted order would be classes 0 and 1 only).
    expect(perClass.every((c) => c > 0)).toBe(true);
    expect(r.examples).toBe(40);
    model.dispose();
  });
});
