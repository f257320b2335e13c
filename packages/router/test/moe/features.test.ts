/**
 * The MoE layer's knobs that MoE users expect (issue 12 items 3 and 6), each against a value
 * computed independently on the host (float64): gated experts (SwiGLU) and the 'silu' name,
 * shared experts, the residual expert, minCapacity, dropless training (dropTokens: false), per-token
 * router logits and expert indices as outputs, the auxiliary loss in History and val_loss, metrics
 * of training and validation kept apart, k / topK, capacity defaults per router, and what the
 * config saves (no run-time device choice) and loads (older configs).
 */
import * as tf from '@tensorflow/tfjs';
import {expectAllClose, useBackend} from '../helpers/backends';
import {ConfigError} from '../../src/core/errors';
import {moe, MoE, MoEArgs} from '../../src/moe/moe-layer';
import {auxiliaryLossMetric, withAuxiliaryLoss} from '../../src/moe/model-helpers';

const T = 5;
const D = 3;
const H = 4;
const E = 2;

const silu = (v: number) => v / (1 + Math.exp(-v));
const matVec = (v: number[], W: number[][]) => W[0].map((_, j) => v.reduce((s, vi, i) => s + vi * W[i][j], 0));
const add = (a: number[], b: number[]) => a.map((x, i) => x + b[i]);

/** A built layer whose every weight is a fixed pseudo-random tensor. */
function layerWith(args: Partial<MoEArgs>): MoE {
  const layer = moe({numExperts: E, hiddenDim: H, router: 'topk', dropTokens: false, normalizeCombineWeights: true, ...args});
  layer.build([null, T, D]);
  layer.setWeights(layer.weights.map((w, i) => tf.mul(tf.randomNormal(w.shape as number[], 0, 1, 'float32', 50 + i), 0.6)));
  return layer;
}

const named = (layer: MoE, name: string) => layer.weights.find((w) => w.originalName === name || w.originalName.endsWith(`/${name}`))!;
const weight = (layer: MoE, name: string) => named(layer, name).read().arraySync() as number[][][];

/** FFN n of a stacked set `<prefix>kernel_in` ...: act(v W1 + b1) [* (v Wg + bg)] W2 + b2. */
function ffn(layer: MoE, prefix: string, n: number, v: number[], act: (x: number) => number, gated: boolean): number[] {
  const W1 = weight(layer, `${prefix}kernel_in`)[n];
  const b1 = (weight(layer, `${prefix}bias_in`) as unknown as number[][])[n];
  let h = add(matVec(v, W1), b1).map(act);
  if (gated) {
    const g = add(matVec(v, weight(layer, `${prefix}kernel_gate`)[n]), (weight(layer, `${prefix}bias_gate`) as unknown as number[][])[n]);
    h = h.map((x, j) => x * g[j]);
  }
  return add(matVec(h, weight(layer, `${prefix}kernel_out`)[n]), (weight(layer, `${prefix}bias_out`) as unknown as number[][])[n]);
}

/** The top-1 expert of each token: argmax of v @ router kernel. */
function top1(layer: MoE, v: number[]): number {
  const logits = matVec(v, layer.router.kernel!.read().arraySync() as number[][]);
  return logits.indexOf(Math.max(...logits));
}

describe('MoE layer features [cpu]', () => {
  beforeAll(() => useBackend('cpu'));
  const x = () => tf.randomNormal([2, T, D], 0, 1, 'float32', 5);

  it("gated experts with 'silu' are SwiGLU: (silu(x W1 + b1) * (x Wg + bg)) W2 + b2", () => {
    expect(tf.getBackend()).toBe('cpu');
    const layer = layerWith({gated: true, activation: 'silu'});
    const xs = x();
    const y = (layer.apply(xs) as tf.Tensor).arraySync() as number[][][];
    const ref = (xs.arraySync() as number[][][]).map((ex) => ex.map((v) => ffn(layer, '', top1(layer, v), v, silu, true)));
    expectAllClose(y, ref, 1e-5, 1e-5);
  });

  it('shared experts (DeepSeek-MoE) add their FFNs to every token; the residual expert mixes by a per-token softmax', () => {
    const shared = layerWith({numSharedExperts: 2, sharedHiddenDim: 3, activation: 'relu'});
    const xs = x();
    const relu = (v: number) => Math.max(0, v);
    const ys = (shared.apply(xs) as tf.Tensor).arraySync() as number[][][];
    const refS = (xs.arraySync() as number[][][]).map((ex) => ex.map((v) =>
      [0, 1].reduce((acc, s) => add(acc, ffn(shared, 'shared_', s, v, relu, false)), ffn(shared, '', top1(shared, v), v, relu, false))));
    expectAllClose(ys, refS, 1e-5, 1e-5);

    const residual = layerWith({residualExpert: true, activation: 'relu'});
    const yr = (residual.apply(xs) as tf.Tensor).arraySync() as number[][][];
    const Wc = weight(residual, 'residual_coef_kernel')[0];
    const bc = named(residual, 'residual_coef_bias').read().arraySync() as number[];
    const refR = (xs.arraySync() as number[][][]).map((ex) => ex.map((v) => {
      const z = add(matVec(v, Wc), bc);
      const c0 = 1 / (1 + Math.exp(z[1] - z[0]));
      const moeOut = ffn(residual, '', top1(residual, v), v, relu, false);
      const dense = ffn(residual, 'residual_', 0, v, relu, false);
      return moeOut.map((m, k) => c0 * m + (1 - c0) * dense[k]);
    }));
    expectAllClose(yr, refR, 1e-5, 1e-5);
  });

  it('minCapacity raises the slots per expert; dropTokens: false keeps every token in training', () => {
    const layer = moe({numExperts: 8, hiddenDim: 2, router: 'topk', minCapacity: 4});
    expect(layer.capacityFor(16, true)).toBe(4); // ceil(16 * 1.25 / 8) = 3 -> 4
    expect(layer.capacityFor(16, false)).toBe(4); // ceil(16 * 2 / 8) = 4
    expect(layer.capacityFor(3, true)).toBe(3); // at most the group
    // Every token asks for expert 0 (huge column 0, positive inputs): capacity ceil(5 * 1.25 / 2) = 4 drops 1 of 5.
    for (const dropTokens of [true, false]) {
      const l = moe({numExperts: E, hiddenDim: H, router: 'topk', dropTokens});
      l.build([null, T, D]);
      l.router.setWeights([tf.tensor2d([[5, 0], [5, 0], [5, 0]])]);
      tf.dispose(l.apply(tf.add(tf.abs(x()), 0.1), {training: true}) as tf.Tensor);
      expect(l.lastTrainingMetrics!.droppedFraction).toBeCloseTo(dropTokens ? 1 / 5 : 0, 6);
      expect(l.lastTrainingMetrics!.tokensPerExpert).toEqual(dropTokens ? [4, 0] : [5, 0]);
    }
  });

  it('outputRouterLogits: the layer also returns per-token router logits and expert indices', () => {
    const layer = layerWith({outputRouterLogits: true, router: {name: 'topk', k: 2}, dropTokens: true, capacityFactor: 0.5, evalCapacityFactor: 0.5});
    const xs = x();
    const [y, logits, experts] = layer.apply(xs) as tf.Tensor[];
    expect(y.shape).toEqual([2, T, D]);
    expect(logits.shape).toEqual([2, T, E]);
    expect(experts.shape).toEqual([2, T, E]);
    expect(experts.dtype).toBe('int32');
    const k = layer.router.kernel!.read().arraySync() as number[][];
    const refLogits = (xs.arraySync() as number[][][]).map((ex) => ex.map((v) => matVec(v, k)));
    expectAllClose(logits.arraySync() as number[][][], refLogits, 1e-5);
    // capacity ceil(5 * 0.5 * 2 / 2) = 3 per expert: 6 slots for 10 choices; each kept choice is listed.
    const kept = (experts.arraySync() as number[][][]).flat().flat().filter((e) => e >= 0).length;
    expect(kept).toBe(2 * 6);
    // Symbolic use: three outputs with the right shapes.
    const inp = tf.input({shape: [T, D]});
    const out = moe({numExperts: E, hiddenDim: H, router: 'topk', outputRouterLogits: true}).apply(inp) as tf.SymbolicTensor[];
    expect(out.map((o) => o.shape)).toEqual([[null, T, D], [null, T, E], [null, T, E]]);
  });

  it('fit: History holds auxiliary_loss and val_auxiliary_loss; withAuxiliaryLoss puts it in val_loss; metrics of training and validation stay apart', async () => {
    const inp = tf.input({shape: [T, D]});
    const layer = moe({numExperts: E, hiddenDim: H, router: {name: 'topk', loadBalanceLossWeight: 1}, capacityFactor: 2, evalCapacityFactor: 2});
    const model = tf.model({inputs: inp, outputs: layer.apply(inp) as tf.SymbolicTensor});
    layer.router.setWeights([tf.tensor2d([[5, -5], [5, -5], [5, -5]])]);
    // lr 0: the weights never move, so validation sees the same model that the numbers below use.
    model.compile({optimizer: tf.train.sgd(0), loss: withAuxiliaryLoss(model, 'meanSquaredError'), metrics: [auxiliaryLossMetric(model)]});
    const xTrain = tf.add(tf.abs(x()), 0.1); // every token -> expert 0
    const xVal = tf.neg(xTrain); // every token -> expert 1
    const yTrain = tf.zeros([2, T, D]);
    const h = await model.fit(xTrain, yTrain, {epochs: 1, batchSize: 2, validationData: [xVal, yTrain], verbose: 0});
    expect(layer.lastTrainingMetrics!.tokensPerExpert).toEqual([5, 0]);
    expect(layer.lastInferenceMetrics!.tokensPerExpert).toEqual([0, 5]);
    const predTrain = layer.apply(xTrain, {training: true}) as tf.Tensor;
    const auxTrain = layer.lastAuxiliaryLoss!.arraySync() as number;
    const predVal = layer.apply(xVal) as tf.Tensor;
    const auxVal = layer.lastAuxiliaryLoss!.arraySync() as number;
    expect(auxTrain).toBeGreaterThan(1.5); // Switch loss E * sum f_e p_e, all tokens on one expert: ~2
    expect(h.history.auxiliary_loss[0] as number).toBeCloseTo(auxTrain, 4);
    expect(h.history.val_auxiliary_loss[0] as number).toBeCloseTo(auxVal, 4);
    const mse = (p: tf.Tensor) => tf.mean(tf.square(p)).arraySync() as number;
    expect(h.history.loss[0] as number).toBeCloseTo(mse(predTrain) + auxTrain, 4);
    expect(h.history.val_loss[0] as number).toBeCloseTo(mse(predVal) + auxVal, 4);
  });

  it('k / topK set the experts per token; a router that cannot take k is a ConfigError', () => {
    expect(moe({numExperts: 4, hiddenDim: 2, router: 'topk', k: 2}).router.expertsPerToken).toBe(2);
    expect(moe({numExperts: 4, hiddenDim: 2, router: 'topk', topK: 3}).router.expertsPerToken).toBe(3);
    expect(moe({numExperts: 4, hiddenDim: 2, router: {name: 'topk'}, k: 2}).router.expertsPerToken).toBe(2);
    expect(moe({numExperts: 4, hiddenDim: 2, router: 'sparse-ot', k: 2}).router.expertsPerToken).toBe(2);
    expect(() => moe({numExperts: 4, hiddenDim: 2, router: 'expert-choice', k: 2})).toThrow(ConfigError);
    expect(() => moe({numExperts: 4, hiddenDim: 2, router: 'topk', k: 2, topK: 3})).toThrow('MoE: Expected topK to be equal to k = 2 (they are one setting), but got 3.');
  });

  it('capacity defaults per router: token choice 1.25 / 2.0, expert choice 2.0 / 2.0, sparse-OT 1.25 / 1.25', () => {
    const f = (router: MoEArgs['router'], extra: Partial<MoEArgs> = {}) => {
      const l = moe({numExperts: 4, hiddenDim: 2, router, ...extra});
      return [l.capacityFactor, l.evalCapacityFactor];
    };
    expect(f('topk')).toEqual([1.25, 2]);
    expect(f('sinkhorn')).toEqual([1.25, 2]);
    expect(f('expert-choice')).toEqual([2, 2]);
    expect(f('sparse-ot')).toEqual([1.25, 1.25]);
    expect(f('topk', {capacityFactor: 3})).toEqual([3, 3]);
    expect(f('topk', {capacityFactor: 1})).toEqual([1, 2]);
  });

  it('the config holds no run-time device choice; a config saved with one (older code) still loads', () => {
    const layer = moe({numExperts: E, hiddenDim: H, router: 'topk', expertMatMul: 'per-expert', compactDispatch: false});
    const config = layer.getConfig();
    expect('expertMatMul' in config).toBe(false);
    expect('compactDispatch' in config).toBe(false);
    expect((MoE.fromConfig(MoE, JSON.parse(JSON.stringify(config))) as MoE).compactDispatch).toBe('auto');
    const old = {...JSON.parse(JSON.stringify(config)), expertMatMul: 'per-expert', name: 'old_moe'};
    delete old.minCapacity;
    delete old.gated;
    const back = MoE.fromConfig(MoE, old) as MoE;
    expect(back.expertMatMul).toBe('per-expert');
    expect(back.minCapacity).toBe(1);
    const ot = moe({numExperts: E, hiddenDim: H, router: {name: 'sparse-ot', hostReads: false}});
    expect('hostReads' in (ot.getConfig().router as {config: object}).config).toBe(false);
  });
});
