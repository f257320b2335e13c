/**
 * k-sparse simplex projection: hand-worked cases, independent float64 fixtures
 * (test/fixtures/projection.json, gen_projection.py), sparsemax limit, k = 1 one-hot,
 * a randomized property test, autodiff on the support, errors and leaks.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'fs';
import * as path from 'path';
import {kSparseSimplexProjection, sparsemax} from '../../src/ot';
import {stopGradient} from '../../src/core/stop-gradient';
import {describeBackends, expectAllClose, expectNoLeaks} from '../helpers/backends';

interface ProjCase {name: string; k: number; radius: number; x: number[][]; y: number[][]; nnz: number[]}
const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, '../fixtures/projection.json'), 'utf8')) as {cases: ProjCase[]};

/** Deterministic pseudo-random numbers (LCG) so the property test is reproducible. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describeBackends('kSparseSimplexProjection', () => {
  it('hand-worked: x = [0.5, 0.4, -1], k = 2', () => {
    // top-2 = {0.5, 0.4}; tau = (0.5 + 0.4 - 1) / 2 = -0.05; y = [0.55, 0.45, 0]
    const y = kSparseSimplexProjection(tf.tensor1d([0.5, 0.4, -1]), 2);
    expectAllClose(y.dataSync(), [0.55, 0.45, 0], 1e-6);
    y.dispose();
  });

  it('hand-worked: support smaller than k, radius 2, along axis 0', () => {
    // column 0 = [3, 0, 1], k = 2, radius 2: top-2 {3, 1}: tau = (4 - 2) / 2 = 1 -> 1 - 1 = 0,
    // so rho = 1 (1 - (3 + 1 - 2) / 2 = 0 is not > 0): tau = 3 - 2 = 1, y = [2, 0, 0].
    // column 1 = [1, 2, 1.5]: top-2 {2, 1.5}: tau = (3.5 - 2) / 2 = 0.75 -> y = [0, 1.25, 0.75].
    const x = tf.tensor2d([[3, 1], [0, 2], [1, 1.5]]);
    const y = kSparseSimplexProjection(x, 2, {axis: 0, radius: 2});
    expectAllClose(y.dataSync(), [2, 0, 0, 1.25, 0, 0.75], 1e-6);
    tf.dispose([x, y]);
  });

  it('keeps at most k entries under ties (topk breaks them)', () => {
    // [1, 1, 1], k = 2: two of the equal entries get (2 - 1) / 2 + ... = 0.5 each, one gets 0.
    const y = kSparseSimplexProjection(tf.tensor1d([1, 1, 1]), 2);
    const v = Array.from(y.dataSync()).sort();
    expectAllClose(v, [0, 0.5, 0.5], 1e-6);
    y.dispose();
  });

  it('matches the float64 fixtures (projection.json)', () => {
    expect(fixture.cases.length).toBeGreaterThan(5);
    for (const c of fixture.cases) {
      const x = tf.tensor2d(c.x);
      const y = kSparseSimplexProjection(x, c.k, {radius: c.radius});
      expectAllClose(y.dataSync(), c.y.flat(), 2e-6, 2e-6);
      const nnz = tf.tidy(() => tf.sum(tf.cast(tf.greater(y, 0), 'int32'), 1));
      expect(Array.from(nnz.dataSync())).toEqual(c.nnz);
      tf.dispose([x, y, nnz]);
    }
  });

  it('equals sparsemax when k >= slice size, and sparsemax is the simplex projection', () => {
    // sparsemax([1, 0.2, 0.1]): sorted prefix sums 1, 1.2, 1.3; rho = 2 since
    // 0.2 - (1.2 - 1) / 2 = 0.1 > 0 and 0.1 - (1.3 - 1) / 3 = 0; tau = 0.1 -> [0.9, 0.1, 0].
    // [0.3, 0.2, 0.1]: tau = (0.6 - 1) / 3 = -0.1333 -> [0.4333, 0.3333, 0.2333]
    const x = tf.tensor2d([[1, 0.2, 0.1], [0.3, 0.2, 0.1]]);
    const a = kSparseSimplexProjection(x, 3);
    const s = sparsemax(x);
    expectAllClose(s.dataSync(), [0.9, 0.1, 0, 0.3 + 0.4 / 3, 0.2 + 0.4 / 3, 0.1 + 0.4 / 3], 1e-6);
    expectAllClose(a.dataSync(), s.dataSync(), 1e-7);
    tf.dispose([x, a, s]);
  });

  it('k = 1 gives radius times the one-hot of the argmax', () => {
    const x = tf.tensor2d([[0.1, 3, -2, 0.5], [-1, -0.5, -3, -0.7]]);
    const y = kSparseSimplexProjection(x, 1, {radius: 2.5});
    expectAllClose(y.dataSync(), [0, 2.5, 0, 0, 0, 2.5, 0, 0], 1e-6);
    tf.dispose([x, y]);
  });

  it('property: random slices land in the simplex with at most k nonzeros and are optimal', () => {
    const rnd = lcg(7);
    for (let trial = 0; trial < 20; trial++) {
      const d = 2 + Math.floor(rnd() * 14);
      const rows = 1 + Math.floor(rnd() * 4);
      const k = 1 + Math.floor(rnd() * d);
      const radius = 0.5 + rnd() * 3;
      const data = Array.from({length: rows * d}, () => (rnd() - 0.5) * 4);
      const x = tf.tensor2d(data, [rows, d]);
      const y = kSparseSimplexProjection(x, k, {radius});
      const yv = y.dataSync();
      for (let r = 0; r < rows; r++) {
        const slice = Array.from(yv.slice(r * d, (r + 1) * d));
        const xs = data.slice(r * d, (r + 1) * d);
        expect(Math.min(...slice)).toBeGreaterThanOrEqual(0);
        expect(slice.filter((v) => v > 0).length).toBeLessThanOrEqual(k);
        expect(Math.abs(slice.reduce((s, v) => s + v, 0) - radius)).toBeLessThan(1e-5 * radius + 1e-6);
        // Optimality (KKT): on the support x - y is a constant tau; off the support x <= tau,
        // unless the support is full (k entries), where only the kept entries matter.
        const supp = slice.map((v, i) => (v > 0 ? i : -1)).filter((i) => i >= 0);
        const tau = xs[supp[0]] - slice[supp[0]];
        for (const i of supp) expect(Math.abs(xs[i] - slice[i] - tau)).toBeLessThan(1e-5);
        if (supp.length < k) for (let i = 0; i < d; i++) if (slice[i] === 0) expect(xs[i]).toBeLessThanOrEqual(tau + 1e-5);
        // Kept entries are the largest ones.
        const minKept = Math.min(...supp.map((i) => xs[i]));
        const dropped = xs.filter((_, i) => slice[i] === 0);
        if (supp.length === k && dropped.length) expect(Math.max(...dropped)).toBeLessThanOrEqual(minKept + 1e-7);
      }
      tf.dispose([x, y]);
    }
  });

  it('autodiff differentiates on the support: d y / d x = P (v - mean over support)', () => {
    // x = [0.5, 0.4, -1], k = 2, support {0, 1}; L = <w, y>, w = [1, 2, 3]:
    // dL/dx = mask * (w - mean_S w) = [1 - 1.5, 2 - 1.5, 0] = [-0.5, 0.5, 0]
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(kSparseSimplexProjection(x, 2), tf.tensor1d([1, 2, 3]))));
    const x = tf.tensor1d([0.5, 0.4, -1]);
    const dx = g(x);
    expectAllClose(dx.dataSync(), [-0.5, 0.5, 0], 1e-6);
    tf.dispose([x, dx]);
  });

  it('stopGradient is the identity with a zero gradient', () => {
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(x, stopGradient(x))));
    const x = tf.tensor1d([3, -2]);
    const dx = g(x);
    // d/dx (x * const(x)) = const(x) = x
    expectAllClose(dx.dataSync(), [3, -2], 1e-7);
    tf.dispose([x, dx]);
  });

  it('rejects bad input with pinned messages', () => {
    const x = tf.tensor2d([[1, 2, 3]]);
    expect(() => kSparseSimplexProjection(x, 0)).toThrow(
      'kSparseSimplexProjection: Expected k to be a positive integer, but got 0.');
    expect(() => kSparseSimplexProjection(x, 2.5)).toThrow(
      'kSparseSimplexProjection: Expected k to be a positive integer, but got 2.5.');
    expect(() => kSparseSimplexProjection(x, 4)).toThrow(
      'kSparseSimplexProjection: Expected k to be at most the slice size 3, but got 4.');
    expect(() => kSparseSimplexProjection(x, 1, {radius: 0})).toThrow(
      'kSparseSimplexProjection: Expected radius to be a finite number > 0, but got 0.');
    expect(() => kSparseSimplexProjection(x, 1, {axis: 2})).toThrow(
      'kSparseSimplexProjection: Expected axis to be an integer in [-2, 1], but got 2.');
    x.dispose();
  });

  it('does not leak tensors', async () => {
    const x = tf.tensor2d([[0.3, 0.1, -0.2, 0.5], [1, 0, 0, 0]]);
    await expectNoLeaks(() => kSparseSimplexProjection(x, 2).dispose(), 10);
    await expectNoLeaks(() => tf.grad((t: tf.Tensor) => tf.sum(tf.square(kSparseSimplexProjection(t, 2))))(x).dispose(), 10);
    x.dispose();
  });
});
