/**
 * MoE.inspect: the per-token routing is the routing that call() uses. Oracle: the layer's output
 * rebuilt per token from inspect's combine weights and each expert's FFN computed on the host
 * (float64), for per-example and flat groups with padding, and inputs of rank 2 and 4; the
 * expert ranking on a hand-worked case; isMoELayer on MoE and non-MoE layers.
 */
import * as tf from '@tensorflow/tfjs';
import {expectAllClose, useBackend} from '../helpers/backends';
import {moe, MoE, MoEArgs} from '../../src/moe/moe-layer';
import {rankExperts} from '../../src/moe/inspect';
import {isMoELayer, moeLayers} from '../../src/moe/model-helpers';

const T = 6;
const D = 4;
const H = 5;
const E = 3;

function makeLayer(args: Partial<MoEArgs> = {}): MoE {
  const layer = moe({numExperts: E, hiddenDim: H, activation: 'relu', router: 'topk', ...args});
  layer.build([null, T, D]);
  layer.setWeights(layer.weights.map((w, i) => tf.mul(tf.randomNormal(w.shape as number[], 0, 1, 'float32', 200 + i), 0.7)));
  return layer;
}

/** FFN_e(v) = relu(v W1[e] + b1[e]) W2[e] + b2[e] on the host. */
function expertOut(layer: MoE, e: number, v: number[]): number[] {
  const W1 = layer.kernelIn!.read().arraySync() as number[][][];
  const b1 = layer.biasIn!.read().arraySync() as number[][];
  const W2 = layer.kernelOut!.read().arraySync() as number[][][];
  const b2 = layer.biasOut!.read().arraySync() as number[][];
  const h = b1[e].map((b, j) => Math.max(0, b + v.reduce((s, vi, i) => s + vi * W1[e][i][j], 0)));
  return b2[e].map((b, k) => b + h.reduce((s, hj, j) => s + hj * W2[e][j][k], 0));
}

describe('MoE.inspect [cpu]', () => {
  beforeAll(() => useBackend('cpu'));

  it.each([
    ['per-example, groups of 4 (padded)', {groupSize: 4, capacityFactor: 0.5, evalCapacityFactor: 0.5}],
    ['flat, groups of 5 across examples (padded)', {groupSize: 5, groupingMode: 'flat' as const, router: {name: 'topk', k: 2}}],
    ['expert choice', {router: 'expert-choice'}],
  ])('per-token combine weights rebuild call()\'s output: %s', (_name, args) => {
    expect(tf.getBackend()).toBe('cpu');
    const layer = makeLayer(args as Partial<MoEArgs>);
    const x = tf.randomNormal([2, T, D], 0, 1, 'float32', 7);
    const y = (layer.apply(x) as tf.Tensor).arraySync() as number[][][];
    const r = layer.inspect(x);
    expect(r.combineWeights.shape).toEqual([2, T, E]);
    expect(r.routerLogits.shape).toEqual([2, T, E]);
    const w = r.combineWeights.arraySync() as number[][][];
    const m = r.dispatchMask.arraySync() as number[][][];
    const xs = x.arraySync() as number[][][];
    const ref = xs.map((ex, b) => ex.map((v, t) => {
      const out = new Array(D).fill(0);
      for (let e = 0; e < E; e++) {
        if (m[b][t][e] === 0) expect(w[b][t][e]).toBe(0);
        else expertOut(layer, e, v).forEach((o, k) => (out[k] += w[b][t][e] * o));
      }
      return out;
    }));
    expectAllClose(y, ref, 1e-4, 1e-4);
    // The same routing as the layer's own metrics report.
    const kept = m.flat().map((row) => row.some((v) => v > 0));
    const dropped = kept.filter((k) => !k).length / kept.length;
    expect(layer.lastMetrics!.droppedFraction as number).toBeCloseTo(dropped, 6);
    // Column 0 is the main expert: -1 exactly for dropped tokens.
    const main = (r.expertIndices.arraySync() as number[][][]).flat().map((row) => row[0]);
    main.forEach((e, i) => expect(e >= 0).toBe(kept[i]));
    // Router logits are tokens @ kernel.
    expectAllClose(r.routerLogits.arraySync() as number[][][], tf.matMul(x, tf.tile(tf.expandDims(layer.router.kernel!.read(), 0), [2, 1, 1])).arraySync() as number[][][], 1e-5);
    r.dispose();
  });

  it('grouped token positions follow the grouping, -1 for padding', () => {
    const layer = makeLayer({groupSize: 4, groupingMode: 'flat'});
    const r = layer.inspect(tf.zeros([2, T, D]));
    // 12 tokens in groups of 4: positions 0..11 in order, no padding.
    expect(r.grouped.tokenIndex.arraySync()).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]);
    r.dispose();
    const p = makeLayer({groupSize: 4});
    const q = p.inspect(tf.zeros([2, T, D]));
    // per example: [t0..t3], [t4, t5, pad, pad] for each of the 2 examples.
    expect(q.grouped.tokenIndex.arraySync()).toEqual([[0, 1, 2, 3], [4, 5, -1, -1], [6, 7, 8, 9], [10, 11, -1, -1]]);
    expect(q.grouped.mask!.arraySync()).toEqual([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]]);
    q.dispose();
  });

  it('inputs of any rank [..., tokens, d]: rank 4 and rank 2 route as the flattened rank 3', () => {
    const layer = makeLayer();
    const x = tf.randomNormal([2, 3, T, D], 0, 1, 'float32', 9);
    const y4 = layer.apply(x) as tf.Tensor;
    expect(y4.shape).toEqual([2, 3, T, D]);
    const y3 = layer.apply(tf.reshape(x, [6, T, D])) as tf.Tensor;
    expectAllClose(y4.dataSync(), y3.dataSync(), 0, 0);
    const y2 = layer.apply(tf.reshape(tf.slice(x, [0, 0, 0, 0], [1, 1, T, D]), [T, D])) as tf.Tensor;
    expect(y2.shape).toEqual([T, D]);
    expectAllClose(y2.dataSync(), tf.slice(y3, [0, 0, 0], [1, T, D]).dataSync(), 0, 0);
    const r = layer.inspect(x);
    expect(r.expertIndices.shape).toEqual([2, 3, T, E]);
    r.dispose();
  });

  it('rankExperts: dispatched experts by decreasing weight (weight 0 included), then -1', () => {
    // token 0: experts 0 (0.2) and 2 (0.7); token 1: expert 1 with weight 0; token 2: none.
    const mask = tf.tensor2d([[1, 0, 1], [0, 1, 0], [0, 0, 0]]);
    const w = tf.tensor2d([[0.2, 0, 0.7], [0, 0, 0], [0, 0, 0]]);
    expect(rankExperts(mask, w).arraySync()).toEqual([[2, 0, -1], [1, -1, -1], [-1, -1, -1]]);
  });

  it('inspect leaves no tensor behind and does not touch lastMetrics', () => {
    const layer = makeLayer();
    const x = tf.randomNormal([2, T, D], 0, 1, 'float32', 3);
    tf.dispose(layer.apply(x) as tf.Tensor);
    const metrics = layer.lastMetrics;
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) layer.inspect(x).dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(layer.lastMetrics).toBe(metrics);
  });

  it('isMoELayer / moeLayers: one test for MoE layers, nested models included', () => {
    const inp = tf.input({shape: [T, D]});
    const inner = tf.model({inputs: inp, outputs: moe({numExperts: 2, hiddenDim: 3, router: 'topk', name: 'inner_moe'}).apply(inp) as tf.SymbolicTensor});
    const outerIn = tf.input({shape: [T, D]});
    const dense = tf.layers.dense({units: D});
    const outer = tf.model({inputs: outerIn, outputs: dense.apply(inner.apply(outerIn) as tf.SymbolicTensor) as tf.SymbolicTensor});
    expect(isMoELayer(dense)).toBe(false);
    expect(isMoELayer({lastMetrics: null})).toBe(false);
    expect(moeLayers(outer).map((l) => l.name)).toEqual(['inner_moe']);
    expect(isMoELayer(moeLayers(outer)[0])).toBe(true);
  });
});
