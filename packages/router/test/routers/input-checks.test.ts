/**
 * Issue 13 items 2 and 4: a router called directly, or through the MoE layer, rejects NaN /
 * Infinity in what it routes and an input with no token, with a typed error that names the
 * input (the router's `tokens`, the layer's `inputs`) and echoes the value or shape; nothing is
 * routed silently and a failing call leaks no tensor.
 */
import * as tf from '@tensorflow/tfjs';
import {describeBackends} from '../helpers/backends';
import {InvalidArgumentError, NonFiniteError, ShapeError} from '../../src/core/errors';
import {expertChoiceRouter, Router, setRouterInputChecks, sinkhornRouter, sparseOTRouter, topKRouter} from '../../src/routers';
import {moe} from '../../src/moe/moe-layer';

const MAKERS: Array<[string, string, () => Router]> = [
  ['topk', 'TopKRouter', () => topKRouter({numExperts: 4})],
  ['expert-choice', 'ExpertChoiceRouter', () => expertChoiceRouter({numExperts: 4})],
  ['sinkhorn', 'SinkhornRouter', () => sinkhornRouter({numExperts: 4})],
  ['sparse-ot', 'SparseOTRouter', () => sparseOTRouter({numExperts: 4})],
];

/** The error `run` throws, and the tensors it left behind (fails when it throws none). */
function failure(run: () => unknown): {error: Error; leaked: number} {
  const before = tf.memory().numTensors;
  try {
    run();
  } catch (e) {
    return {error: e as Error, leaked: tf.memory().numTensors - before};
  }
  throw new Error('expected an error, got none');
}

describeBackends('routers reject non-finite and empty tokens', () => {
  // One group of 3 tokens of dimension 4; token 1 holds the bad value.
  const tokensWith = (bad: number) => tf.tensor3d([[[0.1, 0.2, 0.3, 0.4], [0.5, bad, 0.1, 0.2], [0.3, 0.1, 0.4, 0.2]]]);

  describe.each(MAKERS)('%s', (_short, className, make) => {
    it.each([[NaN, 'NaN'], [Infinity, 'Infinity'], [-Infinity, '-Infinity']])('tokens holding %s: NonFiniteError naming tokens', (bad, shown) => {
      const router = make();
      router.build([null, null, 4]); // the kernel is not a leak of the call
      const x = tokensWith(bad);
      for (const training of [false, true]) {
        const {error, leaked} = failure(() => router.route(x, {capacity: 2, training}));
        expect(error).toBeInstanceOf(NonFiniteError);
        expect((error as NonFiniteError).argument).toBe('tokens');
        expect(error.message).toBe(`${className}: Expected tokens to be finite (no NaN or Infinity), but got ${shown}.`);
        expect(leaked).toBe(0);
      }
      x.dispose();
    });

    it('finite tokens but a NaN in the router kernel: NonFiniteError naming the router logits', () => {
      const router = make();
      const x = tokensWith(0.7);
      router.build(x.shape);
      const kernel = tf.buffer([4, 4], 'float32', new Float32Array(16).fill(0.1));
      kernel.set(NaN, 2, 1);
      router.setWeights([kernel.toTensor(), ...router.getWeights().slice(1)]);
      const {error, leaked} = failure(() => router.route(x, {capacity: 2, training: false}));
      expect(error).toBeInstanceOf(NonFiniteError);
      expect((error as NonFiniteError).argument).toBe('router logits');
      expect(error.message).toMatch(new RegExp(`^${className}: Expected router logits to be finite \\(the tokens are finite: the router kernel or bias holds NaN`));
      expect(leaked).toBe(0);
      x.dispose();
    });

    it.each([[[0, 3, 4]], [[2, 0, 4]]] as Array<[[number, number, number]]>)('tokens of shape %j (no token): ShapeError naming tokens and the shape', (shape) => {
      const router = make();
      router.build([null, null, 4]);
      const x = tf.zeros(shape) as tf.Tensor3D;
      const {error, leaked} = failure(() => router.route(x, {capacity: 1, training: false}));
      expect(error).toBeInstanceOf(ShapeError);
      expect(error.message).toBe(`${className}: Expected tokens to be non-empty [groups, groupSize, d] (at least one token), but got [${shape.join(',')}].`);
      expect(leaked).toBe(0);
      x.dispose();
    });

    it('finite tokens still route (the check reads, but changes nothing)', () => {
      const router = make();
      const x = tokensWith(0.7);
      const r = router.route(x, {capacity: 2, training: true});
      expect(r.tokenIndices.shape).toEqual([1, 4, 2]);
      expect(Array.from(r.combineWeights.dataSync()).every(Number.isFinite)).toBe(true);
      r.dispose();
      x.dispose();
    });
  });

  it("setRouterInputChecks('never') turns the check off (top-k then routes the NaN: the documented trade)", () => {
    const before = setRouterInputChecks('never');
    try {
      const router = topKRouter({numExperts: 4});
      const x = tokensWith(NaN);
      const r = router.route(x, {capacity: 2, training: false});
      expect(Array.from(r.routerLogits.dataSync()).some(Number.isNaN)).toBe(true);
      r.dispose();
      x.dispose();
    } finally {
      setRouterInputChecks(before);
    }
    expect(setRouterInputChecks('auto')).toBe('auto');
    expect(() => setRouterInputChecks('sometimes' as never)).toThrow(InvalidArgumentError);
    expect(() => setRouterInputChecks('sometimes' as never)).toThrow(
      "setRouterInputChecks: Expected value to be one of 'auto', 'always', 'never', but got \"sometimes\".");
  });
});

describeBackends('the MoE layer names its inputs', () => {
  describe.each(MAKERS)('%s', (short) => {
    it('NaN in the inputs: NonFiniteError naming the layer, inputs and their shape', () => {
      const layer = moe({numExperts: 4, hiddenDim: 8, router: short as never, name: `moe_nan_${short}`});
      const x = tf.tensor3d([[[0.1, 0.2, 0.3, 0.4], [0.5, NaN, 0.1, 0.2]]]);
      tf.dispose(layer.apply(tf.ones([1, 2, 4])) as tf.Tensor); // built
      const {error, leaked} = failure(() => layer.apply(x));
      expect(error).toBeInstanceOf(NonFiniteError);
      expect((error as NonFiniteError).argument).toBe('inputs');
      expect(error.message).toBe(`MoE 'moe_nan_${short}': Expected inputs to be finite (no NaN or Infinity; shape [1, 2, 4]), but got NaN.`);
      expect(leaked).toBe(0);
      x.dispose();
      layer.dispose();
    });

    it.each([[[0, 3, 4]], [[2, 0, 4]], [[2, 3, 0, 4]]])('inputs of shape %j (no token): ShapeError naming the inputs and shape', (shape) => {
      const layer = moe({numExperts: 4, hiddenDim: 8, router: short as never, name: `moe_empty_${short}`});
      tf.dispose(layer.apply(tf.ones([1, 2, 4])) as tf.Tensor); // built
      const x = tf.zeros(shape);
      const {error, leaked} = failure(() => layer.apply(x));
      expect(error).toBeInstanceOf(ShapeError);
      expect(error.message).toBe(
        `MoE 'moe_empty_${short}': Expected inputs to be a non-empty tensor [..., tokens, d] (at least one token), but got [${shape.join(',')}].`);
      expect(leaked).toBe(0);
      x.dispose();
      layer.dispose();
    });
  });
});
