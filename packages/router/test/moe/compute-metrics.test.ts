/**
 * Routing metrics as a per-call switch (`Router.computeMetrics`, `MoE.computeMetrics`,
 * `withRoutingMetrics`): with metrics off no metric tensor is created and fewer kernels run, while
 * the routing, the outputs, the auxiliary loss and every gradient equal a metrics-on call of an
 * identical layer; `lastMetrics` keeps the values of the last call that computed metrics; no leaks.
 */
import * as tf from '@tensorflow/tfjs';
import {describeBackends, expectNoLeaks, seeded} from '../helpers/backends';
import {InvalidArgumentError} from '../../src/core/errors';
import {MoE, moe, MoEArgs} from '../../src/moe/moe-layer';
import {withRoutingMetrics} from '../../src/moe/model-helpers';
import {standardMetrics} from '../../src/routers/metrics';
import type {RouterSpec} from '../../src/routers/registry';

const B = 2;
const T = 8;
const D = 4;
const H = 5;
const E = 4;

/** A built layer with deterministic weights (two calls give two identical layers). */
function makeLayer(router: RouterSpec, args: Partial<MoEArgs> = {}): MoE {
  const layer = moe({numExperts: E, hiddenDim: H, activation: 'relu', router, ...args});
  layer.build([null, T, D]);
  layer.setWeights(layer.weights.map((w, i) => seeded(w.shape as number[], 200 + i, 0.7)));
  return layer;
}

/** Frees a layer's weights and kept tensors (`Layer.dispose` refuses layers never applied to symbolic inputs). */
function free(layer: MoE): void {
  layer.disposeLast();
  tf.dispose(layer.weights.map((w) => w.read()));
}

/** Loss = sum(y^2) + auxiliary loss; returns the output, the loss and the gradients of every weight, as arrays. */
function forwardBackward(layer: MoE, x: tf.Tensor): {y: number[]; loss: number; grads: number[][]} {
  let y: number[] = [];
  const vars = layer.trainableWeights.map((w) => w.read() as tf.Variable);
  const {value, grads} = tf.variableGrads(() => {
    const out = layer.apply(x, {training: true}) as tf.Tensor;
    y = Array.from(out.dataSync());
    return tf.add(tf.sum(tf.square(out)), layer.lastAuxiliaryLoss!) as tf.Scalar;
  }, vars);
  const result = {y, loss: value.dataSync()[0], grads: vars.map((v) => Array.from(grads[v.name].dataSync()))};
  tf.dispose([value, ...Object.values(grads)]);
  return result;
}

/** Routers with weighted auxiliary losses (load balance and z-loss both above 0), and the sparse-OT default. */
const ROUTERS: Array<[string, RouterSpec]> = [
  ['topk k=2, both losses weighted', {name: 'topk', k: 2, loadBalanceLossWeight: 0.01, zLossWeight: 0.001}],
  ['sparse-ot (default)', 'sparse-ot'],
  ['expert-choice, no loss weighted', 'expert-choice'],
];

describeBackends('routing metrics switch', (backend) => {
  for (const [label, spec] of ROUTERS) {
    it(`${label}: metrics off gives the same output, auxiliary loss and gradients as metrics on`, () => {
      expect(tf.getBackend()).toBe(backend);
      const on = makeLayer(spec);
      const off = makeLayer(spec);
      off.computeMetrics = false;
      const x = seeded([B, T, D], 1);
      // Two steps each, so that any router state (warm starts) evolves alike.
      for (let i = 0; i < 2; i++) {
        const a = forwardBackward(on, x);
        const b = forwardBackward(off, x);
        expect(b.y).toEqual(a.y);
        expect(b.loss).toBe(a.loss);
        expect(b.grads).toEqual(a.grads);
      }
      expect(on.lastMetrics).not.toBeNull();
      expect(off.lastMetrics).toBeNull(); // never computed
      [on, off].forEach(free);
      x.dispose();
    });
  }

  it('a route() call without metrics creates only the four result tensors and skips at least the standard metrics\' kernels', async () => {
    expect(tf.getBackend()).toBe(backend);
    const layer = makeLayer({name: 'topk', k: 2, loadBalanceLossWeight: 0.01});
    const router = layer.router;
    const tokens = seeded([B, T, D], 2) as tf.Tensor3D;
    const route = () => router.route(tokens, {training: true, capacity: 4});
    // Kernels of the standard metrics alone, on this call's routing.
    const ref = route();
    const gates = tf.softmax(ref.routerLogits) as tf.Tensor3D;
    // (tf.profile returns one shared record: read each count before the next profile.)
    const kernelsStandard = (await tf.profile(() => tf.dispose(Object.values(standardMetrics({tokenIndices: ref.tokenIndices, gates}))))).kernels.length;
    expect(kernelsStandard).toBeGreaterThan(20);
    const kernelsOn = (await tf.profile(() => route().dispose())).kernels.length;
    router.computeMetrics = false;
    const before = tf.memory().numTensors;
    const r = route();
    expect(Object.keys(r.metrics)).toEqual([]);
    expect(tf.memory().numTensors - before).toBe(4); // tokenIndices, combineWeights, routerLogits, auxiliaryLoss
    expect(Array.from(r.tokenIndices.dataSync())).toEqual(Array.from(ref.tokenIndices.dataSync()));
    expect(Array.from(r.combineWeights.dataSync())).toEqual(Array.from(ref.combineWeights.dataSync()));
    expect(r.auxiliaryLoss.dataSync()[0]).toBe(ref.auxiliaryLoss.dataSync()[0]);
    expect(r.auxiliaryLoss.dataSync()[0]).toBeGreaterThan(0);
    r.dispose();
    const kernelsOff = (await tf.profile(() => route().dispose())).kernels.length;
    expect(kernelsOff).toBeLessThanOrEqual(kernelsOn - kernelsStandard);
    router.computeMetrics = true;
    tf.dispose([gates, tokens]);
    ref.dispose();
    free(layer);
  });

  it('with both loss weights 0 and metrics off, the auxiliary loss is exactly 0', () => {
    expect(tf.getBackend()).toBe(backend);
    const layer = makeLayer('expert-choice');
    layer.computeMetrics = false;
    const x = seeded([B, T, D], 3);
    tf.dispose(layer.apply(x, {training: true}) as tf.Tensor);
    expect(layer.lastAuxiliaryLoss!.dataSync()[0]).toBe(0);
    free(layer);
    x.dispose();
  });

  it('lastMetrics keeps the values of the last call that computed metrics; per mode likewise', () => {
    expect(tf.getBackend()).toBe(backend);
    const layer = makeLayer({name: 'topk', k: 1}, {capacityFactor: 0.5, evalCapacityFactor: 2});
    const xa = seeded([B, T, D], 4);
    const xb = tf.abs(seeded([B, T, D], 5));
    tf.dispose(layer.apply(xa, {training: true}) as tf.Tensor);
    const logged = layer.lastMetrics;
    expect(logged).not.toBeNull();
    expect(layer.lastCallTraining).toBe(true);
    layer.computeMetrics = false;
    tf.dispose(layer.apply(xb, {training: false}) as tf.Tensor);
    expect(layer.lastCallTraining).toBe(false); // the mode of the last call
    expect(layer.lastMetrics).toEqual(logged); // the metrics of the last call that computed them
    expect(layer.lastInferenceMetrics).toBeNull();
    layer.computeMetrics = true;
    tf.dispose(layer.apply(xb, {training: false}) as tf.Tensor);
    expect(layer.lastInferenceMetrics).not.toBeNull();
    expect(layer.lastMetrics).toEqual(layer.lastInferenceMetrics);
    expect(layer.lastTrainingMetrics).toEqual(logged);
    free(layer);
    tf.dispose([xa, xb]);
  });

  it('no tensor leaks over training steps that alternate metrics off and on', async () => {
    expect(tf.getBackend()).toBe(backend);
    const layer = makeLayer('sparse-ot');
    const x = seeded([B, T, D], 6);
    const opt = tf.train.sgd(0.01);
    let i = 0;
    await expectNoLeaks(() => {
      layer.computeMetrics = i++ % 3 === 0;
      opt.minimize(() => tf.add(tf.mean(tf.square(layer.apply(x, {training: true}) as tf.Tensor)), layer.lastAuxiliaryLoss!) as tf.Scalar);
    }, 12);
    layer.computeMetrics = false;
    await expectNoLeaks(() => tf.dispose(layer.apply(x, {training: true}) as tf.Tensor), 10);
    free(layer);
    x.dispose();
  });
});

describe('withRoutingMetrics [cpu]', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    expect(tf.getBackend()).toBe('cpu');
  });

  /** A functional model with two MoE layers, one inside a nested model. */
  function twoLayerModel(): {model: tf.LayersModel; layers: MoE[]} {
    const a = moe({numExperts: E, hiddenDim: H, router: 'topk'});
    const b = moe({numExperts: E, hiddenDim: H, router: 'topk'});
    const innerIn = tf.input({shape: [T, D]});
    const inner = tf.model({inputs: innerIn, outputs: b.apply(innerIn) as tf.SymbolicTensor});
    const input = tf.input({shape: [T, D]});
    const model = tf.model({inputs: input, outputs: inner.apply(a.apply(input) as tf.SymbolicTensor) as tf.SymbolicTensor});
    return {model, layers: [a, b]};
  }

  it('switches every MoE layer (nested models too) inside the scope and restores each previous setting', async () => {
    expect(tf.getBackend()).toBe('cpu');
    const {model, layers: [a, b]} = twoLayerModel();
    b.computeMetrics = false;
    const x = seeded([B, T, D], 7);
    const seen = withRoutingMetrics(model, true, () => {
      tf.dispose(model.apply(x, {training: true}) as tf.Tensor);
      return [a.computeMetrics, b.computeMetrics];
    });
    expect(seen).toEqual([true, true]);
    expect([a.computeMetrics, b.computeMetrics]).toEqual([true, false]);
    expect(b.lastMetrics).not.toBeNull(); // b computed metrics inside the scope
    expect(() => withRoutingMetrics(model, false, () => {
      throw new Error('step failed');
    })).toThrow('step failed');
    expect([a.computeMetrics, b.computeMetrics]).toEqual([true, false]);
    const pending = withRoutingMetrics(model, false, async () => {
      await Promise.resolve();
      return a.computeMetrics;
    });
    expect(a.computeMetrics).toBe(false); // still inside the scope until the promise settles
    expect(await pending).toBe(false);
    expect(a.computeMetrics).toBe(true);
    model.dispose();
    x.dispose();
  });

  it('bad arguments are typed errors naming them', () => {
    expect(tf.getBackend()).toBe('cpu');
    const {model, layers: [a]} = twoLayerModel();
    expect(() => withRoutingMetrics(model, 'no' as unknown as boolean, () => 1)).toThrow(InvalidArgumentError);
    expect(() => withRoutingMetrics(model, false, 3 as unknown as () => number)).toThrow(/fn/);
    expect(() => {
      a.computeMetrics = 1 as unknown as boolean;
    }).toThrow(/computeMetrics/);
    expect(a.computeMetrics).toBe(true);
    model.dispose();
  });
});
