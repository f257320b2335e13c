/**
 * The MoE layer: forward against a per-token reference built from the routing result, dropped and
 * masked tokens, grouping, gradients against finite differences, training (sequential, functional,
 * model.fit, custom loop) on cpu and wasm, serialization round trips, leaks and bad input.
 */
import * as tf from '@tensorflow/tfjs';
import {describeBackends, expectAllClose, expectNoLeaks, seeded, useBackend} from '../helpers/backends';
import {ConfigError, InvalidArgumentError, ShapeError} from '../../src/core/errors';
import {MoE, moe, MoEArgs} from '../../src/moe/moe-layer';
import {SparseOTRouter, topKRouter} from '../../src/routers';

const B = 2;
const T = 6;
const D = 4;
const H = 5;
const E = 3;

/** A built layer with deterministic weights. */
function makeLayer(args: Partial<MoEArgs> = {}): MoE {
  const layer = moe({numExperts: E, hiddenDim: H, activation: 'relu', router: 'topk', ...args});
  layer.build([null, T, D]);
  layer.setWeights(layer.weights.map((w, i) => seeded(w.shape as number[], 100 + i, 0.7)));
  return layer;
}

/**
 * Reference: y[b, t] = sum over slots (e, c) holding token t of w[e, c] * FFN_e(x[b, t]), with
 * FFN_e(v) = relu(v W1[e] + b1[e]) W2[e] + b2[e], computed per token on the host.
 */
function reference(layer: MoE, x: number[][][], idx: number[][][], w: number[][][]): number[][][] {
  const W1 = layer.kernelIn!.read().arraySync() as number[][][];
  const b1 = layer.biasIn!.read().arraySync() as number[][];
  const W2 = layer.kernelOut!.read().arraySync() as number[][][];
  const b2 = layer.biasOut!.read().arraySync() as number[][];
  const y = x.map((ex) => ex.map(() => new Array(D).fill(0)));
  idx.forEach((g, gi) => g.forEach((slots, e) => slots.forEach((t, c) => {
    if (t < 0) return;
    const v = x[gi][t];
    const hdn = b1[e].map((bias, j) => Math.max(0, bias + v.reduce((s, vi, i) => s + vi * W1[e][i][j], 0)));
    for (let k = 0; k < D; k++) y[gi][t][k] += w[gi][e][c] * (b2[e][k] + hdn.reduce((s, hj, j) => s + hj * W2[e][j][k], 0));
  })));
  return y;
}

describeBackends('MoE layer', (backend) => {
  it('forward equals the per-token reference; dropped tokens give exactly 0', () => {
    // top-2 at capacity factor 0.5: capacity ceil(6 * 0.5 * 2 / 3) = 2 slots, demand 12 per example -> drops.
    const layer = makeLayer({router: {name: 'topk', k: 2}, capacityFactor: 0.5, evalCapacityFactor: 0.5});
    const x = seeded([B, T, D], 1) as tf.Tensor3D;
    const y = layer.apply(x) as tf.Tensor;
    expect(y.shape).toEqual([B, T, D]);
    const r = layer.router.route(x, {training: false, capacity: layer.capacityFor(T, false)});
    const idx = r.tokenIndices.arraySync();
    const ref = reference(layer, x.arraySync(), idx, r.combineWeights.arraySync());
    expectAllClose(y.arraySync() as number[][][], ref, 1e-4, 1e-4);
    const m = layer.lastMetrics!;
    expect(m.droppedFraction as number).toBeGreaterThan(0);
    const yArr = y.arraySync() as number[][][];
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        if (!idx[b].some((slots) => slots.includes(t))) expect(yArr[b][t]).toEqual([0, 0, 0, 0]);
      }
    }
    r.dispose();
  });

  it("expertMatMul 'per-expert' equals 'batched', forward and backward", () => {
    const a = makeLayer({activation: 'gelu', router: {name: 'topk', k: 2}});
    const b = makeLayer({activation: 'gelu', router: {name: 'topk', k: 2}, expertMatMul: 'per-expert'});
    b.setWeights(a.getWeights());
    const x = seeded([B, T, D], 15);
    const grad = (l: MoE) => tf.grad((xx: tf.Tensor) => tf.sum(tf.square(l.apply(xx, {training: true}) as tf.Tensor)))(x);
    expectAllClose((b.apply(x) as tf.Tensor).dataSync(), (a.apply(x) as tf.Tensor).dataSync(), 1e-5);
    expectAllClose(grad(b).dataSync(), grad(a).dataSync(), 1e-4, 1e-4);
  });

  it('compactDispatch (packed filled slots) equals the capacity layout, forward and every gradient', () => {
    for (const router of [{name: 'topk', k: 2}, {name: 'sparse-ot'}] as MoEArgs['router'][]) {
      const a = makeLayer({activation: 'gelu', router, compactDispatch: false});
      const b = makeLayer({activation: 'gelu', router, compactDispatch: true});
      expect(b.compactDispatch).toBe(true);
      b.setWeights(a.getWeights());
      const x = seeded([B, T, D], 17);
      // Gradients with respect to the input and every weight (experts and router).
      const grads = (l: MoE) => {
        const vars = l.trainableWeights.map((w) => (w as unknown as {val: tf.Variable}).val);
        const {grads: g} = tf.variableGrads(() => tf.sum(tf.square(l.apply(x, {training: true}) as tf.Tensor)) as tf.Scalar, vars);
        const gx = tf.grad((xx: tf.Tensor) => tf.sum(tf.square(l.apply(xx, {training: true}) as tf.Tensor)))(x);
        return [gx, ...vars.map((v) => g[v.name])];
      };
      expectAllClose((b.apply(x, {training: true}) as tf.Tensor).dataSync(), (a.apply(x, {training: true}) as tf.Tensor).dataSync(), 1e-6, 1e-5);
      const ga = grads(a);
      const gb = grads(b);
      expect(gb.length).toBe(ga.length);
      ga.forEach((g, i) => expectAllClose(gb[i].dataSync(), g.dataSync(), 1e-5, 1e-4));
    }
    expect(() => makeLayer({compactDispatch: 'yes' as unknown as boolean})).toThrow(InvalidArgumentError);
  });

  it('demand above capacity shows as drops; dropless inference keeps every token', () => {
    const layer = makeLayer({capacityFactor: 1.0, dropless: true});
    // Router kernel with a huge column 0 on an all-positive input: every token asks for expert 0.
    layer.router.setWeights([tf.tensor2d([[5, 0, 0], [5, 0, 0], [5, 0, 0], [5, 0, 0]])]);
    const x = tf.abs(seeded([B, T, D], 2)).add(0.1) as tf.Tensor3D;
    layer.apply(x, {training: true});
    // capacity ceil(6 / 3) = 2 per example: 4 of 6 tokens dropped.
    let m = layer.lastMetrics!;
    expectAllClose(m.demand as number[], [6, 0, 0]);
    expectAllClose(m.tokensPerExpert as number[], [2, 0, 0]);
    expect(m.droppedFraction as number).toBeCloseTo(4 / 6, 6);
    layer.apply(x, {training: false});
    m = layer.lastMetrics!;
    expect(m.droppedFraction).toBe(0);
    expectAllClose(m.tokensPerExpert as number[], [6, 0, 0]);
  });

  it('per-example groups: an example does not depend on the rest of the batch', () => {
    const layer = makeLayer({router: 'expert-choice'});
    const x = seeded([B, T, D], 3) as tf.Tensor3D;
    const both = layer.apply(x) as tf.Tensor;
    const alone = layer.apply(tf.slice(x, [0, 0, 0], [1, T, D])) as tf.Tensor;
    expectAllClose(alone.arraySync() as number[][][], tf.slice(both, [0, 0, 0], [1, T, D]).arraySync() as number[][][], 1e-6);
  });

  it('partial groups are padded with masked tokens; flat groups span examples', () => {
    // groupSize 4 over 6 tokens: groups [t0..t3] and [t4, t5, pad, pad] per example, dropless.
    const layer = makeLayer({groupSize: 4, dropless: true});
    const x = seeded([B, T, D], 4) as tf.Tensor3D;
    const y = layer.apply(x) as tf.Tensor;
    const part = (a: number, n: number) => layer.apply(tf.slice(x, [0, a, 0], [B, n, D])) as tf.Tensor;
    // Top-1 dropless routing of a token depends only on the token, so both must match chunk by chunk.
    expectAllClose(y.arraySync() as number[][][], tf.concat([part(0, 4), part(4, 2)], 1).arraySync() as number[][][], 1e-5);
    const flat = makeLayer({groupSize: 5, groupingMode: 'flat', dropless: true});
    flat.setWeights(layer.getWeights());
    expectAllClose((flat.apply(x) as tf.Tensor).arraySync() as number[][][], y.arraySync() as number[][][], 1e-5);
    expect(flat.lastMetrics!.droppedFraction).toBe(0);
  });

  it('masked tokens output 0 and do not influence the other tokens', () => {
    const layer = makeLayer({router: 'expert-choice', capacityFactor: 1.0});
    const x = seeded([1, T, D], 5) as tf.Tensor3D;
    const mask = tf.tensor2d([[1, 1, 0, 1, 0, 1]]);
    const y1 = (layer.apply([x, mask]) as tf.Tensor).arraySync() as number[][][];
    // Change the masked tokens drastically: the real tokens' outputs must not move.
    const x2 = tf.add(x, tf.mul(tf.reshape(tf.sub(1, mask), [1, T, 1]), 100));
    const y2 = (layer.apply([x2, mask]) as tf.Tensor).arraySync() as number[][][];
    expect(y1[0][2]).toEqual([0, 0, 0, 0]);
    expect(y1[0][4]).toEqual([0, 0, 0, 0]);
    expectAllClose(y2, y1, 1e-6);
  });

  it('gradients match central finite differences (fixed routing, smooth gelu experts)', () => {
    const layer = makeLayer({activation: 'gelu', router: {name: 'topk', k: 2, loadBalanceLossWeight: 0}, capacityFactor: 2});
    const x = seeded([1, T, D], 6) as tf.Tensor3D;
    const R = seeded([1, T, D], 7);
    const loss = () => tf.sum(tf.mul(layer.apply(x, {training: true}) as tf.Tensor, R)) as tf.Scalar;
    const vars = [layer.kernelIn!, layer.router.kernel!];
    const {grads} = tf.variableGrads(loss, vars.map((v) => v.read() as tf.Variable));
    const h = 1e-2;
    // A few entries of the expert kernel and of the router kernel (softmax combine weights).
    for (const [v, at] of [[vars[0], [1, 2, 3]], [vars[0], [0, 0, 0]], [vars[1], [2, 1]], [vars[1], [0, 0]]] as const) {
      const base = v.read().arraySync();
      const bump = (delta: number) => {
        const arr = JSON.parse(JSON.stringify(base));
        let ref = arr;
        for (let i = 0; i < at.length - 1; i++) ref = ref[at[i]];
        ref[at[at.length - 1]] += delta;
        v.write(tf.tensor(arr));
        const l = loss().arraySync() as number;
        return l;
      };
      const fd = (bump(h) - bump(-h)) / (2 * h);
      v.write(tf.tensor(base as number[]));
      let g = grads[(v.read() as tf.Variable).name].arraySync() as unknown as number[] | number;
      for (const i of at) g = (g as unknown as number[])[i] as unknown as number[];
      expect(Math.abs((g as unknown as number) - fd)).toBeLessThan(2e-3 + 1e-2 * Math.abs(fd));
    }
    tf.dispose(grads);
  });

  it(`trains in tf.sequential with model.fit, and the auxiliary loss is part of the fit loss [${backend}]`, async () => {
    expect(tf.getBackend()).toBe(backend);
    const model = tf.sequential();
    // Equal capacity factors: predict (inference) and fit (training) route alike here.
    model.add(moe({numExperts: E, hiddenDim: 8, router: {name: 'topk', loadBalanceLossWeight: 1}, capacityFactor: 1.25, evalCapacityFactor: 1.25, inputShape: [T, D]}));
    model.compile({optimizer: tf.train.adam(0.02), loss: 'meanSquaredError'});
    const x = seeded([8, T, D], 8);
    const y = tf.tanh(seeded([8, T, D], 9));
    const pred0 = model.predict(x) as tf.Tensor;
    const mse0 = tf.losses.meanSquaredError(y, pred0).arraySync() as number;
    const aux0 = (model.layers[0] as MoE).lastAuxiliaryLoss!.arraySync() as number;
    expect(aux0).toBeGreaterThanOrEqual(1 - 1e-5); // the Switch loss is >= 1
    const hist = await model.fit(x, y, {epochs: 12, batchSize: 8, shuffle: false, verbose: 0});
    const losses = hist.history.loss as number[];
    // First epoch loss is computed before the first update: MSE + 1 * load-balance loss.
    expect(losses[0]).toBeCloseTo(mse0 + aux0, 4);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
    expect(model.getWeights().length).toBe(5); // W1, W2, b1, b2 and the router kernel
  });

  it('trains in a functional residual model and in a custom loop with tf.variableGrads', () => {
    const input = tf.input({shape: [T, D]});
    const layer = moe({numExperts: E, hiddenDim: 8, router: {name: 'topk', k: 2}, capacityFactor: 1.25});
    const out = tf.layers.add().apply([input, layer.apply(input) as tf.SymbolicTensor]) as tf.SymbolicTensor;
    const model = tf.model({inputs: input, outputs: out});
    const x = seeded([4, T, D], 10);
    const target = tf.add(x, tf.tanh(seeded([4, T, D], 11)));
    const opt = tf.train.adam(0.02);
    const step = () => tf.tidy(() => {
      const {value, grads} = tf.variableGrads(() => {
        const pred = model.apply(x, {training: true}) as tf.Tensor;
        return tf.add(tf.losses.meanSquaredError(target, pred), layer.lastAuxiliaryLoss!) as tf.Scalar;
      });
      expect(Object.keys(grads)).toHaveLength(5);
      opt.applyGradients(grads as unknown as Record<string, tf.Variable>);
      return value.arraySync() as number;
    });
    const first = step();
    let last = first;
    for (let i = 0; i < 15; i++) last = step();
    expect(last).toBeLessThan(first);
    // The router learned too: its kernel moved.
    const {grads} = tf.variableGrads(() => tf.sum(tf.square(model.apply(x, {training: true}) as tf.Tensor)) as tf.Scalar);
    const routerGrad = grads[(layer.router.kernel!.read() as tf.Variable).name];
    expect(tf.norm(routerGrad).arraySync()).toBeGreaterThan(0);
    tf.dispose(grads);
  });

  it('no tensor leaks over 50 training steps (packed slots and the capacity layout)', async () => {
    for (const compactDispatch of [true, false]) {
      const layer = makeLayer({router: {name: 'topk', k: 2, jitterNoise: 0.1}, normalizeCombineWeights: true, groupSize: 4, compactDispatch});
      const x = seeded([B, T, D], 12);
      const opt = tf.train.sgd(0.01);
      await expectNoLeaks(() => {
        opt.minimize(() => tf.add(tf.mean(tf.square(layer.apply(x, {training: true}) as tf.Tensor)), layer.lastAuxiliaryLoss!) as tf.Scalar);
      }, 50);
    }
  });

  it('a built, called and disposed model leaves no tensor behind (weights and last-call metrics)', () => {
    const x = seeded([B, T, D], 14);
    const before = tf.memory().numTensors;
    const inp = tf.input({shape: [T, D]});
    const model = tf.model({inputs: inp, outputs: moe({numExperts: E, hiddenDim: H, router: 'topk'}).apply(inp) as tf.SymbolicTensor});
    tf.dispose(model.predict(x) as tf.Tensor);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  for (const kind of ['sequential', 'functional'] as const) {
    it(`save + loadLayersModel round trip gives identical outputs (${kind})`, async () => {
      const make = (): tf.LayersModel => {
        const l = moe({numExperts: E, hiddenDim: 8, router: {name: 'expert-choice', zLossWeight: 1e-3}, capacityFactor: 1.5, groupSize: 3, normalizeCombineWeights: true});
        if (kind === 'sequential') {
          const s = tf.sequential();
          s.add(tf.layers.dense({units: D, inputShape: [T, D]}));
          s.add(l);
          return s;
        }
        const inp = tf.input({shape: [T, D]});
        return tf.model({inputs: inp, outputs: tf.layers.add().apply([inp, l.apply(inp) as tf.SymbolicTensor]) as tf.SymbolicTensor});
      };
      const model = make();
      const x = seeded([B, T, D], 13);
      const before = (model.predict(x) as tf.Tensor).arraySync();
      let saved: tf.io.ModelArtifacts | undefined;
      await model.save(tf.io.withSaveHandler(async (a) => {
        saved = a;
        return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
      }));
      const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
      const moeLayer = loaded.layers.find((l) => l instanceof MoE) as MoE;
      const cfg = moeLayer.getConfig();
      expect((cfg.router as {className: string}).className).toBe('ExpertChoiceRouter');
      expect((cfg.router as {config: {zLossWeight: number}}).config.zLossWeight).toBe(1e-3);
      expect(moeLayer.router.weights).toHaveLength(1);
      expectAllClose((loaded.predict(x) as tf.Tensor).arraySync() as number[][][], before as number[][][], 0, 0);
    });
  }
});

describe('MoE default router', () => {
  it("defaults to 'sparse-ot' and routes no expert above its capacity", async () => {
    await useBackend('cpu');
    const layer = moe({numExperts: E, hiddenDim: H});
    expect(layer.router).toBeInstanceOf(SparseOTRouter);
    const y = layer.apply(seeded([B, T, D], 14)) as tf.Tensor;
    expect(y.shape).toEqual([B, T, D]);
    const cap = layer.capacityFor(T, false);
    expect(layer.lastMetrics!.tokensPerExpertMax as number).toBeLessThanOrEqual(cap);
  });
});

describe('MoE bad input', () => {
  let layer: MoE;
  beforeAll(async () => {
    await useBackend('cpu');
    layer = makeLayer();
  });
  it('pins the messages of bad inputs and bad configs', () => {
    expect(() => layer.apply(tf.zeros([4]))).toThrow(ShapeError);
    expect(() => layer.apply(tf.zeros([4]))).toThrow('MoE: Expected inputs to be a tensor [..., tokens, d] of rank >= 2, but got [4].');
    expect(() => layer.apply(tf.zeros([2, 3, 7]))).toThrow('MoE: Expected inputs to be a model dimension (last axis) of 4, but got [2,3,7].');
    expect(() => layer.apply([tf.zeros([2, 3, 4]), tf.ones([2, 2])])).toThrow('MoE: Expected mask to be a tensor of shape [2, 3], but got [2,2].');
    expect(() => moe({numExperts: 0, hiddenDim: 4, router: 'topk'})).toThrow(InvalidArgumentError);
    expect(() => moe({numExperts: 0, hiddenDim: 4, router: 'topk'})).toThrow('MoE: Expected numExperts to be a positive integer, but got 0.');
    expect(() => moe({numExperts: 2, hiddenDim: 4, router: 'nope'})).toThrow(ConfigError);
    expect(() => moe({numExperts: 2, hiddenDim: 4, router: {name: 'nope'}})).toThrow(/Expected router to be one of .*'topk'.*, but got "nope"\.$/);
    expect(() => moe({numExperts: 2, hiddenDim: 4, router: 'topk', capacityFactor: 0})).toThrow(
      'MoE: Expected capacityFactor to be a finite number > 0, but got 0.',
    );
    expect(() => moe({numExperts: 2, hiddenDim: 4, router: topKRouter({numExperts: 3})})).toThrow(
      'MoE: Expected router to be a router with numExperts = 2, but got "TopKRouter with numExperts = 3".',
    );
    expect(() => moe({numExperts: 2, hiddenDim: 4, router: 'topk', groupingMode: 'rows' as never})).toThrow(
      "MoE: Expected groupingMode to be one of 'per-example', 'flat', but got \"rows\".",
    );
    expect(() => moe({numExperts: 2, hiddenDim: 4, router: 'topk', activation: 'softsign' as never})).toThrow(/Expected activation to be one of 'gelu'/);
  });
});
