/**
 * The host path of the rebalancing step and of the plan's own dispatch (routers/rebalance.ts,
 * cpu and wasm) against their tensor path (`hostReads: false`): the same slots, exactly, on plans from the solver (support dispatch
 * at capacity factors 1 and 1.25), with padding tokens, an all-padding group, tied plan values
 * and tied gates (a constant cost, where the relaxation gives every expert the same tokens and
 * most tokens are unserved), and capacities too small for every token.
 */
import * as tf from '@tensorflow/tfjs';
import {alternating, sparseOTProblem} from '../../src/ot';
import {planDispatch, rebalanceAssignment} from '../../src/routers/rebalance';
import {describeBackends, expectNoLeaks} from '../helpers/backends';

/** The support dispatch of a plan `[G, S, E]`: each expert's top `capacity` tokens with plan > 0 and mask 1, else -1. */
function supportDispatch(plan: Float32Array, mask: Float32Array, G: number, S: number, E: number, capacity: number): tf.Tensor3D {
  const out = new Int32Array(G * E * capacity).fill(-1);
  for (let g = 0; g < G; g++) {
    for (let e = 0; e < E; e++) {
      const order = [...Array(S).keys()].sort((p, q) => (plan[(g * S + q) * E + e] - plan[(g * S + p) * E + e]) || p - q);
      order.slice(0, capacity).forEach((s, c) => {
        if (plan[(g * S + s) * E + e] > 0 && mask[g * S + s] > 0) out[(g * E + e) * capacity + c] = s;
      });
    }
  }
  return tf.tensor3d(out, [G, E, capacity], 'int32');
}

interface Inputs {idx: tf.Tensor3D; plan: tf.Tensor3D; gates: tf.Tensor3D; mask: tf.Tensor2D}

/** Gates, a padding mask, the solver's plan (padding masked out) and its support dispatch. */
function inputs(G: number, S: number, E: number, capacity: number, seed: number, opts: {constant?: boolean; padding?: boolean} = {}): Inputs {
  const gates = opts.constant ? tf.fill([G, S, E], 1 / E) as tf.Tensor3D
    : tf.tidy(() => tf.softmax(tf.mul(tf.randomNormal([G, S, E], 0, 1, 'float32', seed), 2)) as tf.Tensor3D);
  const maskHost = new Float32Array(G * S).fill(1);
  if (opts.padding) {
    for (let g = 0; g < G; g++) for (let s = S - (g % 4); s < S; s++) maskHost[g * S + s] = 0;
    maskHost.fill(0, 0, S); // group 0: padding only
  }
  const mask = tf.tensor2d(maskHost, [G, S]);
  const planT = tf.tidy(() => {
    const cost = tf.add(tf.mul(tf.neg(gates), tf.expandDims(mask, 2)), tf.mul(tf.sub(1, tf.expandDims(mask, 2)), 1e4));
    const real = tf.sum(mask, 1, true);
    const a = tf.where(tf.equal(real, 0), tf.onesLike(mask), mask);
    const b = tf.tile(tf.div(tf.sum(a, 1, true), E), [1, E]);
    const problem = sparseOTProblem(cost, {k: capacity, a, b});
    const out = alternating().solve(problem);
    const plan = tf.mul(out.plan, tf.expandDims(mask, 2));
    out.dispose();
    problem.dispose();
    return plan as tf.Tensor3D;
  });
  const idx = supportDispatch(planT.dataSync() as Float32Array, maskHost, G, S, E, capacity);
  return {idx, plan: planT, gates, mask};
}

describeBackends('rebalance: host path = tensor path', (backend) => {
  const cases: Array<[string, number, number, number, number, {constant?: boolean; padding?: boolean}]> = [
    ['routing shape 17 x 4, capacity 5 (cf 1.0)', 64, 17, 4, 5, {}],
    ['17 x 4, capacity 6 (cf 1.25), padding and an all-padding group', 24, 17, 4, 6, {padding: true}],
    ['64 x 8, capacity 8', 6, 64, 8, 8, {}],
    ['constant gates, capacity 2 (ties everywhere, most tokens unserved by the plan)', 3, 8, 4, 2, {constant: true}],
    ['capacity 1 of 9 tokens x 3 experts (too small: drops)', 5, 9, 3, 1, {}],
    ['1 token, 1 expert', 2, 1, 1, 1, {}],
    ['E 32: 64 tokens, capacity 2 (cf 1.0), padding', 4, 64, 32, 2, {padding: true}],
    ['E 64: 64 tokens, capacity 1', 2, 64, 64, 1, {}],
    ['E 32, constant gates, capacity 2', 2, 64, 32, 2, {constant: true}],
  ];
  test.each(cases)('%s', (_name, G, S, E, capacity, opts) => {
    expect(tf.getBackend()).toBe(backend);
    const x = inputs(G, S, E, capacity, G * 7 + S, opts);
    const host = rebalanceAssignment(x.idx, x.plan, x.gates, x.mask, true);
    const ref = rebalanceAssignment(x.idx, x.plan, x.gates, x.mask, false);
    expect(Array.from(host.dataSync())).toEqual(Array.from(ref.dataSync()));
    expect(host.shape).toEqual(ref.shape);
    // The plan's own dispatch: host = tensor path, and both = the independent supportDispatch above.
    for (const dispatch of ['support', 'top-capacity'] as const) {
      const h = planDispatch(x.plan, x.mask, capacity, dispatch, true);
      const r = planDispatch(x.plan, x.mask, capacity, dispatch, false);
      expect(Array.from(h.dataSync())).toEqual(Array.from(r.dataSync()));
      if (dispatch === 'support') expect(Array.from(h.dataSync())).toEqual(Array.from(x.idx.dataSync()));
      tf.dispose([h, r]);
    }
    tf.dispose([host, ref, x.idx, x.plan, x.gates, x.mask]);
  });

  test('no leaks', async () => {
    expect(tf.getBackend()).toBe(backend);
    const x = inputs(4, 8, 4, 2, 3);
    await expectNoLeaks(() => {
      rebalanceAssignment(x.idx, x.plan, x.gates, x.mask, true).dispose();
      planDispatch(x.plan, x.mask, 2, 'support', true).dispose();
    }, 3);
    tf.dispose([x.idx, x.plan, x.gates, x.mask]);
  });
});
