/**
 * Every baseline router on tiny hand-worked cases. The router kernel is set to the identity
 * (d = E), so the logits equal the tokens and every number below can be worked by hand:
 * softmax([2, 0]) = [e^2 / (e^2 + 1), 1 / (e^2 + 1)] = [0.880797, 0.119203],
 * softmax([1, 0]) = [0.731059, 0.268941], softmax([3, 0]) = [0.952574, 0.047426],
 * softmax([2.5, 0]) = [0.924142, 0.075858], softmax([2, 1, 0]) = [0.665241, 0.244728, 0.090031].
 */
import * as tf from '@tensorflow/tfjs';
import {describeBackends, expectAllClose, expectNoLeaks} from '../helpers/backends';
import {ConfigError, InvalidArgumentError, ShapeError} from '../../src/core/errors';
import {
  createRouter,
  expertChoiceRouter,
  getRouterClass,
  Router,
  routerNames,
  sinkhornRouter,
  TopKRouter,
  topKRouter,
} from '../../src/routers';
import {assignTokenChoice, computeCapacity} from '../../src/routers/capacity';
import {metricsToValues, RoutingResult} from '../../src/routers/routing-result';

function identityKernel<R extends Router>(router: R, e: number): R {
  router.build([null, null, e]);
  router.setWeights([tf.eye(e)]);
  return router;
}

function read(r: RoutingResult): {idx: number[][][]; w: number[][][]; m: Record<string, number | number[]>; aux: number} {
  const out = {
    idx: r.tokenIndices.arraySync(),
    w: r.combineWeights.arraySync(),
    m: metricsToValues(r.metrics),
    aux: r.auxiliaryLoss.arraySync() as number,
  };
  r.dispose();
  return out;
}

// Group of 4 tokens over 2 experts: t0 [2, 0], t1 [1, 0], t2 [0, 1], t3 [3, 0].
const TOKENS_4x2 = [[[2, 0], [1, 0], [0, 1], [3, 0]]];

describe('capacity', () => {
  it('follows ceil(S * cf * k / E), clamped to [1, S], with optional rounding', () => {
    expect(computeCapacity(64, 1.0, 8)).toBe(8); // 64 / 8
    expect(computeCapacity(64, 1.25, 8)).toBe(10); // 80 / 8
    expect(computeCapacity(64, 1.1, 8)).toBe(9); // 8.8 -> 9 (no float-noise overshoot)
    expect(computeCapacity(64, 1.0, 8, 2)).toBe(16); // top-2: 128 / 8
    expect(computeCapacity(4, 0.1, 8)).toBe(1); // at least one slot
    expect(computeCapacity(4, 10, 2)).toBe(4); // at most the group
    expect(computeCapacity(10, 1, 4, 1, 4)).toBe(4); // 2.5 -> 3 -> multiple of 4
    expect(() => computeCapacity(4, 0, 2)).toThrow('computeCapacity: Expected capacityFactor to be a finite number > 0, but got 0.');
  });
});

describeBackends('assignTokenChoice (host and tensor paths)', () => {
  // One group of 5 tokens, 3 experts, top-2 choices, capacity 2; token 2 is masked.
  const CHOICES = [[[0, 1], [0, 2], [0, 1], [1, 0], [2, 0]]];
  const MASK = [[1, 1, 0, 1, 1]];

  it('fills slots choice rank by choice rank, in group order or by descending priority (hand-worked)', () => {
    const choices = tf.tensor3d(CHOICES, undefined, 'int32');
    const mask = tf.tensor2d(MASK);
    // Ties (tokens 1 and 4 at 0.9) go by lower index; the masked token's 5 does not count.
    const priority = tf.tensor2d([[0.1, 0.9, 5, 0.5, 0.9]]);
    for (const host of [true, false]) {
      // Group order: first choices t0->e0, t1->e0, t3->e1, t4->e2; second: t0->e1, t1->e2, t3 and t4 find e0 full.
      const a = assignTokenChoice(choices, 3, 2, mask, undefined, host);
      expect(a.tokenIndices.arraySync()).toEqual([[[0, 1], [3, 0], [4, 1]]]);
      expect(a.demand.arraySync()).toEqual([[4, 2, 2]]);
      // Priority order t1, t4, t3, t0: first choices t1->e0, t4->e2, t3->e1, t0->e0; second t1->e2, t0->e1.
      const b = assignTokenChoice(choices, 3, 2, mask, priority, host);
      expect(b.tokenIndices.arraySync()).toEqual([[[1, 0], [3, 0], [4, 1]]]);
      expect(b.demand.arraySync()).toEqual([[4, 2, 2]]);
      tf.dispose([a.tokenIndices, a.demand, b.tokenIndices, b.demand]);
    }
    tf.dispose([choices, mask, priority]);
  });

  it('the host path equals the tensor path on random choices, masks and priorities', () => {
    for (const [seed, k, capacity] of [[1, 1, 2], [2, 2, 3], [3, 3, 1]]) {
      const choices = tf.tidy(() => tf.topk(tf.randomUniform([3, 9, 4], 0, 1, 'float32', seed), k).indices) as tf.Tensor3D;
      const mask = tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([3, 9], 0, 1, 'float32', seed + 10), 0.2), 'float32')) as tf.Tensor2D;
      const priority = tf.randomUniform([3, 9], 0, 1, 'float32', seed + 20) as tf.Tensor2D;
      for (const [m, p] of [[undefined, undefined], [mask, undefined], [mask, priority], [undefined, priority]] as const) {
        const h = assignTokenChoice(choices, 4, capacity, m, p, true);
        const t = assignTokenChoice(choices, 4, capacity, m, p, false);
        expect(h.tokenIndices.arraySync()).toEqual(t.tokenIndices.arraySync());
        expect(h.demand.arraySync()).toEqual(t.demand.arraySync());
        tf.dispose([h.tokenIndices, h.demand, t.tokenIndices, t.demand]);
      }
      tf.dispose([choices, mask, priority]);
    }
  });

  it('does not leak tensors', async () => {
    const choices = tf.tensor3d(CHOICES, undefined, 'int32');
    const mask = tf.tensor2d(MASK);
    await expectNoLeaks(() => {
      for (const host of [true, false]) {
        const a = assignTokenChoice(choices, 3, 2, mask, mask, host);
        tf.dispose([a.tokenIndices, a.demand]);
      }
    }, 5);
    tf.dispose([choices, mask]);
  });
});

describeBackends('TopKRouter', () => {
  it('top-1 (Switch): fills slots in token order, drops demand above capacity, losses by hand', () => {
    const router = identityKernel(topKRouter({numExperts: 2, zLossWeight: 0.1}), 2);
    const capacity = router.computeCapacity(4, 1.0); // ceil(4 / 2) = 2
    expect(capacity).toBe(2);
    const r = read(router.route(tf.tensor3d(TOKENS_4x2), {training: false, capacity}));
    // Choices: t0 -> 0, t1 -> 0, t2 -> 1, t3 -> 0. Expert 0 takes t0, t1; t3 finds it full.
    expect(r.idx).toEqual([[[0, 1], [2, -1]]]);
    expectAllClose(r.w, [[[0.880797, 0.731059], [0.731059, 0]]], 1e-5);
    expectAllClose(r.m.demand as number[], [3, 1]);
    expectAllClose(r.m.tokensPerExpert as number[], [2, 1]);
    expect(r.m.droppedFraction).toBeCloseTo(0.25, 6); // t3
    expect([r.m.expertsPerTokenMin, r.m.expertsPerTokenMean, r.m.expertsPerTokenMax]).toEqual([0, 0.75, 1]);
    expect([r.m.tokensPerExpertMin, r.m.tokensPerExpertMean, r.m.tokensPerExpertMax]).toEqual([1, 1.5, 2]);
    // importance: mean gates = [(0.880797 + 0.731059 + 0.268941 + 0.952574) / 4, 1 - that]
    expectAllClose(r.m.importance as number[], [0.708343, 0.291657], 1e-5);
    // Load balance: f = [3/4, 1/4] (first choices), P = importance; 2 * (0.75 * 0.708343 + 0.25 * 0.291657) = 1.208343.
    expect(r.m.loadBalanceLoss as number).toBeCloseTo(1.208343, 5);
    // z-loss: mean of lse^2 = (ln(e^2+1)^2 + ln(e+1)^2 + ln(e+1)^2 + ln(e^3+1)^2) / 4 = 4.316755.
    expect(r.m.zLoss as number).toBeCloseTo(4.316755, 4);
    // aux = 0.01 * 1.208343 + 0.1 * 4.316755 = 0.443759
    expect(r.aux).toBeCloseTo(0.01 * 1.208343 + 0.1 * 4.316755, 5);
    expect(r.m.auxiliaryLoss as number).toBeCloseTo(r.aux, 6);
  });

  it('batch-prioritized routing lets the most confident tokens in first', () => {
    const router = identityKernel(topKRouter({numExperts: 2, batchPrioritizedRouting: true}), 2);
    const r = read(router.route(tf.tensor3d(TOKENS_4x2), {training: false, capacity: 2}));
    // Top gates: t0 0.8808, t1 0.7311, t2 0.7311, t3 0.9526 -> order t3, t0, t1, t2.
    // Expert 0 takes t3 then t0; t1 is dropped; expert 1 takes t2.
    expect(r.idx).toEqual([[[3, 0], [2, -1]]]);
    expectAllClose(r.w, [[[0.952574, 0.880797], [0.731059, 0]]], 1e-5);
  });

  it('top-2 (GShard): second choices after all first choices; optional gate normalization', () => {
    // t0 [2, 1, 0] -> (0, 1); t1 [2, 0, 1] -> (0, 2); t2 [0, 2, 1] -> (1, 2). capacity ceil(3 * 2 / 3) = 2.
    const tokens = tf.tensor3d([[[2, 1, 0], [2, 0, 1], [0, 2, 1]]]);
    const router = identityKernel(topKRouter({numExperts: 3, k: 2}), 3);
    expect(router.computeCapacity(3, 1.0)).toBe(2);
    const r = read(router.route(tokens, {training: false, capacity: 2}));
    // First choices: e0 <- t0, t1; e1 <- t2. Second choices: e1 <- t0; e2 <- t1, t2.
    expect(r.idx).toEqual([[[0, 1], [2, 0], [1, 2]]]);
    expectAllClose(r.w, [[[0.665241, 0.665241], [0.665241, 0.244728], [0.244728, 0.244728]]], 1e-5);
    expect(r.m.droppedFraction).toBe(0);
    expect(r.m.expertsPerTokenMean).toBe(2);
    const n = identityKernel(topKRouter({numExperts: 3, k: 2, normalizeGates: true}), 3);
    const rn = read(n.route(tokens, {training: false, capacity: 2}));
    // 0.665241 / (0.665241 + 0.244728) = 0.731059; 0.244728 / 0.909969 = 0.268941
    expectAllClose(rn.w, [[[0.731059, 0.731059], [0.731059, 0.268941], [0.268941, 0.268941]]], 1e-5);
  });

  it('masked tokens take no slot and do not count in the metrics', () => {
    const router = identityKernel(topKRouter({numExperts: 2}), 2);
    const mask = tf.tensor2d([[1, 0, 1, 1]]);
    const r = read(router.route(tf.tensor3d(TOKENS_4x2), {training: false, capacity: 2, mask}));
    // t1 is masked: expert 0 takes t0 and t3, expert 1 takes t2. Nothing dropped among 3 real tokens.
    expect(r.idx).toEqual([[[0, 3], [2, -1]]]);
    expect(r.m.droppedFraction).toBe(0);
    expectAllClose(r.m.demand as number[], [2, 1]);
    // importance over real tokens: (0.880797 + 0.268941 + 0.952574) / 3 = 0.700771
    expectAllClose(r.m.importance as number[], [0.700771, 0.299229], 1e-5);
  });

  it('jitter noise applies in training only', () => {
    const router = identityKernel(topKRouter({numExperts: 2, jitterNoise: 0.5}), 2);
    const x = tf.tensor3d(TOKENS_4x2);
    const evalA = read(router.route(x, {training: false, capacity: 4}));
    const evalB = read(router.route(x, {training: false, capacity: 4}));
    expect(evalA.w).toEqual(evalB.w);
    expectAllClose(evalA.w, [[[0.880797, 0.731059, 0.952574, 0], [0.731059, 0, 0, 0]]], 1e-5);
    const train = read(router.route(x, {training: true, capacity: 4}));
    // t0 logits become [2u, 0] with u in [0.5, 1.5]: its gate lies in [softmax(1), softmax(3)] and differs.
    expect(train.w[0][0][0]).toBeGreaterThanOrEqual(0.731058);
    expect(train.w[0][0][0]).toBeLessThanOrEqual(0.952575);
    expect(train.w).not.toEqual(evalA.w);
  });

  it('combine weights carry the softmax gradient to the kernel', () => {
    const router = identityKernel(topKRouter({numExperts: 2, loadBalanceLossWeight: 0}), 2);
    const x = tf.tensor3d([[[2, 0]]]);
    // One token, logits = x W; w = softmax(xW)_0; dw/dW[0,0] = x_0 * p0 (1 - p0) = 2 * 0.880797 * 0.119203 = 0.209987;
    // dw/dW[0,1] = -x_0 * p0 p1 = -0.209987; row 1 of W sees x_1 = 0.
    const {grads} = tf.variableGrads(() => {
      const r = router.route(x, {training: true, capacity: 1});
      const s = tf.sum(r.combineWeights) as tf.Scalar;
      tf.dispose([r.tokenIndices, r.auxiliaryLoss, ...Object.values(r.metrics)]);
      return s;
    }, [router.kernel!.read() as tf.Variable]);
    expectAllClose(Object.values(grads)[0].arraySync() as number[][], [[0.209987, -0.209987], [0, 0]], 1e-5);
    tf.dispose(grads);
  });

  it('does not leak', async () => {
    const router = identityKernel(topKRouter({numExperts: 2, k: 2, jitterNoise: 0.1, batchPrioritizedRouting: true}), 2);
    const x = tf.tensor3d(TOKENS_4x2);
    await expectNoLeaks(() => router.route(x, {training: true, capacity: 2}).dispose(), 5);
    x.dispose();
  });
});

describeBackends('ExpertChoiceRouter', () => {
  it('each expert takes its top-capacity tokens by gate', () => {
    const router = identityKernel(expertChoiceRouter({numExperts: 2}), 2);
    const r = read(router.route(tf.tensor3d(TOKENS_4x2), {training: false, capacity: 2}));
    // Column 0 gates [0.8808, 0.7311, 0.2689, 0.9526] -> t3, t0; column 1 [0.1192, 0.2689, 0.7311, 0.0474] -> t2, t1.
    expect(r.idx).toEqual([[[3, 0], [2, 1]]]);
    expectAllClose(r.w, [[[0.952574, 0.880797], [0.731059, 0.268941]]], 1e-5);
    expect(r.m.droppedFraction).toBe(0);
    const r1 = read(router.route(tf.tensor3d(TOKENS_4x2), {training: false, capacity: 1}));
    // capacity 1: t3 and t2 only, so t0 and t1 are dropped.
    expect(r1.idx).toEqual([[[3], [2]]]);
    expect(r1.m.droppedFraction).toBe(0.5);
    expect(r1.aux).toBe(0);
  });

  it('never takes a masked token, leaving slots empty when real tokens run out', () => {
    const router = identityKernel(expertChoiceRouter({numExperts: 2}), 2);
    const mask = tf.tensor2d([[1, 0, 0, 1]]);
    const r = read(router.route(tf.tensor3d(TOKENS_4x2), {training: false, capacity: 3, mask}));
    // Real tokens t0, t3. Expert 0: t3 (0.9526), t0 (0.8808); expert 1: t0 (0.1192), t3 (0.0474).
    expect(r.idx).toEqual([[[3, 0, -1], [0, 3, -1]]]);
    expectAllClose(r.w, [[[0.952574, 0.880797, 0], [0.119203, 0.047426, 0]]], 1e-5);
    expect(r.m.expertsPerTokenMin).toBe(2);
  });
});

describeBackends('SinkhornRouter', () => {
  // All four tokens prefer expert 0 by margins 3, 2.5, 2, 1.
  const TOKENS = [[[3, 0], [2.5, 0], [2, 0], [1, 0]]];
  it('training balances by Sinkhorn: the two largest margins keep expert 0, the rest go to expert 1', () => {
    const router = identityKernel(sinkhornRouter({numExperts: 2, epsilon: 0.1, iterations: 200}), 2);
    const r = read(router.route(tf.tensor3d(TOKENS), {training: true, capacity: 2}));
    // Balanced OT (2 tokens per expert) maximizing the summed logits gives expert 0 the tokens with
    // the largest l0 - l1: t0, t1. Weights are softmax gates: 0.952574, 0.924142 and for expert 1
    // softmax([2, 0])_1 = 0.119203, softmax([1, 0])_1 = 0.268941.
    expect(r.idx).toEqual([[[0, 1], [2, 3]]]);
    expectAllClose(r.w, [[[0.952574, 0.924142], [0.119203, 0.268941]]], 1e-5);
    expect(r.m.droppedFraction).toBe(0);
    expectAllClose(r.m.demand as number[], [2, 2]);
  });

  it('inference uses plain top-1 (no balancing) unless balanceInference', () => {
    const router = identityKernel(sinkhornRouter({numExperts: 2, epsilon: 0.1, iterations: 200}), 2);
    const r = read(router.route(tf.tensor3d(TOKENS), {training: false, capacity: 2}));
    // Everyone picks expert 0; it keeps t0, t1 and t2, t3 are dropped.
    expect(r.idx).toEqual([[[0, 1], [-1, -1]]]);
    expect(r.m.droppedFraction).toBe(0.5);
    const b = identityKernel(sinkhornRouter({numExperts: 2, epsilon: 0.1, iterations: 200, balanceInference: true}), 2);
    expect(read(b.route(tf.tensor3d(TOKENS), {training: false, capacity: 2})).idx).toEqual([[[0, 1], [2, 3]]]);
  });
});

describe('router registry and bad input', () => {
  it('resolves names and rejects unknown ones', () => {
    expect(getRouterClass('topk')).toBe(TopKRouter);
    expect(routerNames()).toEqual(expect.arrayContaining(['topk', 'expert-choice', 'sinkhorn']));
    expect(createRouter({name: 'topk', k: 2}, {numExperts: 4})).toBeInstanceOf(TopKRouter);
    const names = routerNames().map((n) => `'${n}'`).join(', ');
    expect(() => createRouter('nope', {numExperts: 4})).toThrow(ConfigError);
    expect(() => createRouter('nope', {numExperts: 4})).toThrow(`Expected router to be one of ${names}, but got "nope".`);
  });

  it('rejects bad arguments with pinned messages', () => {
    expect(() => topKRouter({numExperts: 0})).toThrow(InvalidArgumentError);
    expect(() => topKRouter({numExperts: 0})).toThrow('TopKRouter: Expected numExperts to be a positive integer, but got 0.');
    expect(() => topKRouter({numExperts: 2, k: 3})).toThrow('TopKRouter: Expected k to be an integer in [1, numExperts = 2], but got 3.');
    const router = identityKernel(topKRouter({numExperts: 2}), 2);
    const x = tf.tensor3d(TOKENS_4x2);
    expect(() => router.route(x, {training: false, capacity: 0})).toThrow(
      'TopKRouter: Expected capacity to be an integer in [1, groupSize = 4], but got 0.',
    );
    expect(() => router.route(x, {training: false, capacity: 2, mask: tf.ones([1, 3]) as tf.Tensor2D})).toThrow(ShapeError);
    expect(() => router.route(x, {training: false, capacity: 2, mask: tf.ones([1, 3]) as tf.Tensor2D})).toThrow(
      'TopKRouter: Expected mask to be a tensor of shape [1, 4], but got [1,3].',
    );
    expect(() => router.route(tf.zeros([4, 2]) as unknown as tf.Tensor3D, {training: false, capacity: 1})).toThrow(
      'TopKRouter: Expected tokens to be a rank-3 tensor [groups, groupSize, d], but got [4,2].',
    );
    expect(() => router.route(tf.zeros([1, 4, 3]) as tf.Tensor3D, {training: false, capacity: 1})).toThrow(
      'TopKRouter: Expected tokens to be a model dimension (last axis) of 2, but got [1,4,3].',
    );
    x.dispose();
  });
});
