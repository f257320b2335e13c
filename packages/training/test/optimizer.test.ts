import * as tf from '@tensorflow/tfjs';
import {expectAllClose, expectNoLeaks, useBackend} from '../../router/test/helpers/backends';
import {AdamW, clipByGlobalNorm, warmupCosine} from '../src/train';

describe('warmupCosine', () => {
  const o = {peak: 1e-3, totalSteps: 100, warmupSteps: 10};
  it('warms up linearly, then follows a half cosine down to the end value', () => {
    expect(warmupCosine(0, o)).toBeCloseTo(1e-4, 15); // 1e-3 * 1 / 10
    expect(warmupCosine(9, o)).toBeCloseTo(1e-3, 15); // 1e-3 * 10 / 10
    expect(warmupCosine(10, o)).toBeCloseTo(1e-3, 15); // cosine at p = 0
    expect(warmupCosine(55, o)).toBeCloseTo(5e-4, 15); // p = 45 / 90 = 1/2: (1 + cos(pi/2)) / 2 = 1/2
    expect(warmupCosine(100, o)).toBeCloseTo(0, 15); // p = 1
    expect(warmupCosine(100, {...o, end: 1e-5})).toBeCloseTo(1e-5, 15);
    expect(warmupCosine(0, {peak: 1, totalSteps: 4})).toBe(1); // no warmup: starts at the peak
  });
  it('rejects bad settings', () => {
    expect(() => warmupCosine(0, {...o, peak: 0})).toThrow('Expected learningRate to be a finite number > 0, but got 0.');
    expect(() => warmupCosine(0, {...o, warmupSteps: -1})).toThrow('Expected warmupSteps to be an integer >= 0, but got -1.');
  });
});

describe('AdamW and clipping [cpu]', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('matches hand-computed Adam steps', async () => {
    const p = tf.variable(tf.tensor1d([1, 1]), true, 'adam_test_p');
    const opt = new AdamW([p]);
    const g = tf.tensor1d([0.5, -2]);
    // Step 1: m = 0.1 g, v = 0.001 g^2; bias-corrected m / sqrt(v) = g / |g| = [1, -1]: p = 1 - 0.1 [1, -1].
    opt.apply({[p.name]: g}, 0.1);
    expectAllClose(await p.data(), [0.9, 1.1], 1e-6);
    // Step 2 with the same g: m = 0.9 * 0.1 g + 0.1 g = 0.19 g, corrected by 1 - 0.81 = 0.19 -> g;
    // v = (0.999 * 0.001 + 0.001) g^2 = 0.001999 g^2, corrected by 1 - 0.998001 = 0.001999 -> g^2. Same step again.
    opt.apply({[p.name]: g}, 0.1);
    expectAllClose(await p.data(), [0.8, 1.2], 1e-5);
    expect(opt.step).toBe(2);
    // The state round-trips: a fresh optimizer with the saved state takes the same third step.
    const state = opt.getState();
    const q = tf.variable(p.clone(), true, 'adam_test_q');
    const opt2 = new AdamW([q]);
    opt2.setState(state);
    opt.apply({[p.name]: g}, 0.1);
    opt2.apply({[q.name]: g}, 0.1);
    expect(Array.from(await q.data())).toEqual(Array.from(await p.data()));
    tf.dispose([p, q, g, ...state.m, ...state.v]);
    opt.dispose();
    opt2.dispose();
  });

  it('applies decoupled weight decay to matrices only', async () => {
    const w = tf.variable(tf.tensor2d([[1]]), true, 'adam_test_w');
    const b = tf.variable(tf.tensor1d([1]), true, 'adam_test_b');
    const opt = new AdamW([w, b], {weightDecay: 0.5});
    // Zero gradients: the Adam part is 0, so w = 1 - lr * wd * 1 = 1 - 0.1 * 0.5; the bias is not decayed.
    opt.apply({[w.name]: tf.zeros([1, 1]), [b.name]: tf.zeros([1])}, 0.1);
    expectAllClose(await w.data(), [0.95], 1e-7);
    expectAllClose(await b.data(), [1], 0);
    tf.dispose([w, b]);
    opt.dispose();
  });

  it('clips by the global norm', async () => {
    const grads = {a: tf.tensor1d([3]), b: tf.tensor1d([4])}; // global norm 5
    const clipped = clipByGlobalNorm(grads, 1);
    expectAllClose(await clipped.norm.data(), [5]);
    expectAllClose(await clipped.grads.a.data(), [0.6]);
    expectAllClose(await clipped.grads.b.data(), [0.8]);
    const loose = clipByGlobalNorm(grads, 10);
    expectAllClose(await loose.grads.b.data(), [4]);
    await expectNoLeaks(() => {
      const c = clipByGlobalNorm(grads, 1);
      tf.dispose([c.norm, ...Object.values(c.grads)]);
    });
    tf.dispose([...Object.values(grads), clipped.norm, ...Object.values(clipped.grads), loose.norm, ...Object.values(loose.grads)]);
  });
  it('applyClipped equals clipping then applying, variable by variable, and leaks nothing', async () => {
    // Reference: the per-variable AdamW formula on clipped gradients, written out here.
    const shapes = [[2, 3], [3], [1, 1], [4]];
    const vars = shapes.map((s, i) => tf.variable(tf.randomUniform(s, -1, 1, 'float32', i), true, `adam_flat_${i}`));
    const start = vars.map((x) => x.arraySync());
    const opt = new AdamW(vars, {weightDecay: 0.1});
    const grads = Object.fromEntries(vars.map((x, i) => [x.name, tf.randomUniform(x.shape, -3, 3, 'float32', 10 + i)]));
    const norm = opt.applyClipped(grads, 0.01, 1);
    const gs = vars.map((x) => Array.from(grads[x.name].dataSync()));
    const n = Math.sqrt(gs.reduce((s, g) => s + g.reduce((a, b) => a + b * b, 0), 0));
    expectAllClose(await norm.data(), [n], 1e-4, 1e-5);
    const scale = Math.min(1, 1 / n);
    vars.forEach((x, i) => {
      const p0 = (start[i] as number[] | number[][]).flat() as number[];
      const expected = p0.map((p, j) => {
        const g = gs[i][j] * scale;
        const m = 0.1 * g / (1 - 0.9);
        const v = 0.001 * g * g / (1 - 0.999);
        return p - 0.01 * (m / (Math.sqrt(v) + 1e-8) + (x.rank >= 2 ? 0.1 * p : 0));
      });
      expectAllClose(x.dataSync(), expected, 1e-5, 1e-5);
    });
    // The state comes back per variable, in variable shapes.
    const state = opt.getState();
    expect(state.m.map((t) => t.shape)).toEqual(shapes);
    tf.dispose([norm, ...state.m, ...state.v]);
    await expectNoLeaks(() => opt.applyClipped(grads, 0.01, 1).dispose(), 5);
    await expectNoLeaks(() => new AdamW(vars, {weightDecay: 0.1}).dispose(), 3);
    tf.dispose([...vars, ...Object.values(grads)]);
    opt.dispose();
  });

  it('leaves a variable without a gradient, and its moments, unchanged', async () => {
    const a = tf.variable(tf.tensor1d([1, 2]), true, 'adam_missing_a');
    const b = tf.variable(tf.tensor1d([3]), true, 'adam_missing_b');
    const opt = new AdamW([a, b]);
    opt.apply({[a.name]: tf.tensor1d([1, 1]), [b.name]: tf.tensor1d([1])}, 0.1);
    const before = opt.getState();
    opt.apply({[a.name]: tf.tensor1d([1, 1])}, 0.1);
    expectAllClose(await b.data(), [2.9], 1e-6);
    const after = opt.getState();
    expectAllClose(await after.m[1].data(), await before.m[1].data(), 0);
    expectAllClose(await after.v[1].data(), await before.v[1].data(), 0);
    expectAllClose(await a.data(), [0.8, 1.8], 1e-5);
    tf.dispose([a, b, ...before.m, ...before.v, ...after.m, ...after.v]);
    opt.dispose();
  });

  it('costs a number of kernels independent of the number of variables (beyond reshape and split)', async () => {
    const kernelsFor = async (count: number) => {
      const vars = Array.from({length: count}, (_, i) => tf.variable(tf.ones([2, 2]), true, `adam_count_${count}_${i}`));
      const opt = new AdamW(vars, {weightDecay: 0.1});
      const grads = Object.fromEntries(vars.map((x) => [x.name, tf.ones([2, 2])]));
      const info = await tf.profile(() => opt.applyClipped(grads, 0.01, 1));
      tf.dispose([...vars, ...Object.values(grads)]);
      opt.dispose();
      return info.kernels.filter((k) => !['Reshape', 'Slice', 'SplitV', 'Identity'].includes(k.name)).length;
    };
    expect(await kernelsFor(20)).toBe(await kernelsFor(2));
  });
});
