/**
 * The fast wasm kernels (registerFastKernels) against tfjs-backend-wasm's stock kernels: matMul
 * forward and gradient for every transpose combination, batch shapes (none, 1, n, broadcast one
 * side, rank 4, general broadcast that falls back), size-1 dimensions and products large enough to
 * take the per-batch XNNPACK path; row gathers on every axis, both dtypes, and the index check;
 * slices, unstacks and splits (contiguous and strided blocks, every rank 1-5, size-1 and empty
 * blocks, float32 / int32 / bool) and their gradients; sums over every block of adjacent axes;
 * identity sharing data safely.
 */
import * as tf from '@tensorflow/tfjs';
import {fastKernelsRegistered, registerFastKernels, unregisterFastKernels} from '../../src/backend/fast-kernels';
import {expectAllClose, expectNoLeaks, useBackend} from '../helpers/backends';

/** Runs `fn` with the stock kernels and with the fast ones; returns both results as arrays. */
function both<T>(fn: () => T): {stock: T; fast: T} {
  unregisterFastKernels();
  const stock = fn();
  registerFastKernels();
  const fast = fn();
  return {stock, fast};
}

function rand(shape: number[], seed: number): tf.Tensor {
  return tf.randomUniform(shape, -1, 1, 'float32', seed);
}

const COMBOS: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true]];
// [batch of a, batch of b, m, k, n]
const SHAPES: [number[], number[], number, number, number][] = [
  [[], [], 5, 7, 3],
  [[], [], 1, 1, 1],
  [[], [], 1, 6, 4],
  [[], [], 4, 1, 6],
  [[], [], 6, 4, 1],
  [[1], [1], 5, 7, 3],
  [[3], [3], 5, 7, 3],
  [[3], [], 5, 7, 3],
  [[], [3], 5, 7, 3],
  [[1], [3], 5, 7, 3],
  [[3], [1], 1, 7, 1],
  [[2, 3], [2, 3], 4, 5, 6],
  [[2, 3], [], 4, 5, 6],
  [[4], [4], 40, 33, 29], // per-batch XNNPACK path (m k n >= 16384)
  [[2], [], 40, 33, 29],
  [[], [2], 40, 33, 29],
  [[3], [3], 16, 40, 64], // few rows against a transposed right operand: the transposed product
  [[], [], 16, 40, 64],
  [[2, 2], [2, 2], 8, 40, 64],
];

describe('fast wasm kernels', () => {
  beforeAll(async () => {
    await useBackend('wasm');
  });
  afterAll(() => {
    unregisterFastKernels();
  });
  beforeEach(() => expect(tf.getBackend()).toBe('wasm'));

  it('register and unregister are idempotent and report what they did', () => {
    unregisterFastKernels();
    expect(fastKernelsRegistered()).toBe(false);
    expect(registerFastKernels()).toBe(true);
    expect(registerFastKernels()).toBe(false);
    expect(fastKernelsRegistered()).toBe(true);
    expect(unregisterFastKernels()).toBe(true);
    expect(unregisterFastKernels()).toBe(false);
  });

  it.each(COMBOS)('matMul equals the stock kernel, forward and gradient (transposeA %s, transposeB %s)', (tA, tB) => {
    SHAPES.forEach(([ba, bb, m, k, n], i) => {
      const a = rand([...ba, ...(tA ? [k, m] : [m, k])], 10 + i);
      const b = rand([...bb, ...(tB ? [n, k] : [k, n])], 50 + i);
      const run = () => tf.tidy(() => {
        const y = tf.matMul(a, b, tA, tB);
        // tfjs-core 4.22's BatchMatMul gradient does not reduce broadcast batch axes: equal batches only.
        if (ba.join() !== bb.join()) return {shape: y.shape, y: y.arraySync(), da: [], db: [], daShape: a.shape, dbShape: b.shape};
        const dy = rand(y.shape, 90 + i);
        const [da, db] = tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, w, tA, tB), dy)))([a, b]);
        return {shape: y.shape, y: y.arraySync(), da: da.arraySync(), db: db.arraySync(), daShape: da.shape, dbShape: db.shape};
      });
      const {stock, fast} = both(run);
      expect(fast.shape).toEqual(stock.shape);
      expect(fast.daShape).toEqual(a.shape);
      expect(fast.dbShape).toEqual(b.shape);
      expectAllClose(fast.y as number[], stock.y as number[], 1e-5, 1e-5);
      expectAllClose(fast.da as number[], stock.da as number[], 1e-5, 1e-5);
      expectAllClose(fast.db as number[], stock.db as number[], 1e-5, 1e-5);
      tf.dispose([a, b]);
    });
  });

  it('matMul keeps the stock error for mismatched inner sizes and leaks no tensors', async () => {
    registerFastKernels();
    expect(() => tf.matMul(tf.zeros([2, 3, 4]), tf.zeros([2, 5, 6]))).toThrow(/inner shapes/);
    const a = rand([3, 40, 33], 1);
    const b = rand([3, 29, 33], 2);
    await expectNoLeaks(() => tf.tidy(() => tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.matMul(x, w, false, true)))([a, b])).forEach((t) => t.dispose()), 5);
    // Few rows against a transposed right operand (the transposed-product path).
    const c = rand([3, 16, 40], 3);
    const e = rand([3, 64, 40], 4);
    await expectNoLeaks(() => tf.tidy(() => tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.matMul(x, w, false, true)))([c, e])).forEach((t) => t.dispose()), 5);
    tf.dispose([a, b, c, e]);
  });

  it.each([0, 1, 2, -1])('gather equals the stock kernel on axis %s (float32 and int32, repeated indices)', (axis) => {
    const x = rand([4, 5, 9], 3);
    const xi = tf.cast(tf.mul(x, 100), 'int32');
    const dim = x.shape[axis < 0 ? axis + 3 : axis];
    const idx = tf.tensor1d([dim - 1, 0, 2, 2, 0], 'int32');
    const idx2 = tf.tensor2d([[1, 0], [dim - 1, 1]], [2, 2], 'int32');
    const run = () => [x, xi].flatMap((t) => [idx, idx2].map((i) => tf.tidy(() => {
      const g = tf.gather(t, i, axis);
      return {shape: g.shape, dtype: g.dtype, v: g.arraySync()};
    })));
    const {stock, fast} = both(run);
    fast.forEach((f, j) => {
      expect(f.shape).toEqual(stock[j].shape);
      expect(f.dtype).toBe(stock[j].dtype);
      expect(f.v).toEqual(stock[j].v);
    });
    tf.dispose([x, xi, idx, idx2]);
  });

  // [shape, begin, size]: whole tensor, leading rows (one run), a middle block of every rank,
  // single elements, size-1 axes, an empty block, -1 sizes.
  const SLICES: [number[], number[], number[]][] = [
    [[7], [2], [3]],
    [[7], [0], [7]],
    [[5, 6], [1, 0], [3, 6]],
    [[5, 6], [1, 2], [3, 3]],
    [[5, 6], [4, 5], [1, 1]],
    [[257, 12], [0, 0], [256, 12]],
    [[4, 5, 6], [1, 2, 3], [2, 2, 2]],
    [[4, 5, 6], [0, 0, 1], [4, 5, 4]],
    [[4, 1, 6], [1, 0, 0], [2, 1, 6]],
    [[3, 4, 5, 6], [1, 0, 2, 1], [2, 4, 2, 4]],
    [[2, 3, 4, 5, 3], [1, 1, 0, 2, 0], [1, 2, 4, 2, 3]],
    [[4, 5], [2, 1], [0, 3]],
    [[4, 5, 6], [1, 1, 1], [-1, 2, -1]],
  ];

  it.each(SLICES)('slice equals the stock kernel (shape %j, begin %j, size %j), float32 / int32 / bool, and its gradient', (shape, begin, sz) => {
    const x = rand(shape, 7);
    const xi = tf.cast(tf.mul(x, 100), 'int32');
    const xb = tf.greater(x, 0);
    const run = () => tf.tidy(() => {
      const out = [x, xi, xb].map((t) => {
        const y = tf.slice(t, begin, sz);
        return {shape: y.shape, dtype: y.dtype, v: Array.from(y.dataSync())};
      });
      const dy = rand(tf.slice(x, begin, sz).shape, 8);
      const dx = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.slice(v, begin, sz), dy)))(x);
      return {out, dx: Array.from(dx.dataSync())};
    });
    const {stock, fast} = both(run);
    expect(fast).toEqual(stock);
    tf.dispose([x, xi, xb]);
  });

  it.each([0, 1, 2, -1])('unstack and split equal the stock kernels on axis %s, with gradients', (axis) => {
    const x = rand([4, 3, 6], 9);
    const xi = tf.cast(tf.mul(x, 100), 'int32');
    const dim = x.shape[axis < 0 ? axis + 3 : axis];
    const sizes = dim === 3 ? [1, 2] : [1, dim - 3, 2];
    const run = () => tf.tidy(() => {
      const values = [x, xi].flatMap((t) => [...tf.unstack(t, axis), ...tf.split(t, sizes, axis), ...tf.split(t, dim === 3 ? 3 : 2, axis)])
        .map((y) => ({shape: y.shape, dtype: y.dtype, v: Array.from(y.dataSync())}));
      const gu = tf.grad((v: tf.Tensor) => tf.addN(tf.unstack(v, axis).map((y, i) => tf.mul(tf.sum(y), i + 1))))(x);
      const gs = tf.grad((v: tf.Tensor) => tf.addN(tf.split(v, sizes, axis).map((y, i) => tf.mul(tf.sum(tf.square(y)), i + 1))))(x);
      return {values, gu: Array.from(gu.dataSync()), gs: Array.from(gs.dataSync())};
    });
    const {stock, fast} = both(run);
    expect(fast).toEqual(stock);
    tf.dispose([x, xi]);
  });

  it('slice, unstack and split leak no tensors', async () => {
    registerFastKernels();
    const x = rand([6, 5, 4], 11);
    await expectNoLeaks(() => tf.tidy(() => tf.addN([tf.sum(tf.slice(x, [1, 1, 0], [3, 2, 4])), ...tf.unstack(x, 1).map((y) => tf.sum(y)), ...tf.split(x, 2, 2).map((y) => tf.sum(y))])).dispose(), 5);
    x.dispose();
  });

  it('sum over every block of adjacent axes equals the stock kernel (keepDims, size-1 axes, ragged columns, int32)', () => {
    const shapes = [[5, 3], [4, 7, 9], [3, 1, 6, 2], [2, 3, 1, 5, 4], [1, 6, 1], [130, 5], [2, 257, 6]];
    shapes.forEach((shape, i) => {
      const x = rand(shape, 200 + i);
      const xi = tf.cast(tf.mul(x, 10), 'int32');
      const blocks: number[][] = [];
      for (let a = 0; a < shape.length; a++) for (let b = a; b < shape.length; b++) blocks.push(Array.from({length: b - a + 1}, (_, j) => a + j));
      blocks.push([0, shape.length - 1]); // not adjacent: the stock kernel
      blocks.push([-1]);
      for (const axes of blocks) {
        for (const keepDims of [false, true]) {
          const run = () => [tf.sum(x, axes, keepDims), tf.sum(xi, axes, keepDims)].map((t) => {
            const r = {shape: t.shape, dtype: t.dtype, values: Array.from(t.dataSync())};
            t.dispose();
            return r;
          });
          const {stock, fast} = both(run);
          fast.forEach((f, j) => {
            expect(f.shape).toEqual(stock[j].shape);
            expect(f.dtype).toBe(stock[j].dtype);
            expectAllClose(f.values, stock[j].values, 1e-5, 1e-6);
          });
        }
      }
      tf.dispose([x, xi]);
    });
    // The bias gradient of a batched expert product: [E, n, h] summed over n.
    const g = rand([4, 768, 128], 7);
    const {stock, fast} = both(() => tf.tidy(() => tf.grad((b: tf.Tensor) => tf.sum(tf.square(tf.add(g, b))))(tf.zeros([4, 1, 128])).arraySync()));
    expectAllClose(fast as number[][][], stock as number[][][], 1e-4, 1e-5);
    g.dispose();
  });

  it('identity shares the data: clones outlive their source and keep their values across assign, without leaks', async () => {
    registerFastKernels();
    const x = rand([3, 4], 8);
    const want = x.arraySync();
    const c = tf.clone(x);
    x.dispose();
    expect(c.arraySync()).toEqual(want);
    const v = tf.variable(c);
    const cv = tf.clone(v);
    v.assign(tf.zeros([3, 4]));
    expect(cv.arraySync()).toEqual(want);
    expect(v.arraySync()).toEqual([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]);
    tf.dispose([c, v, cv]);
    const memory = tf.memory();
    const y = rand([5, 6], 9);
    await expectNoLeaks(() => tf.dispose([tf.clone(y), tf.tidy(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(t, t)))(y))]), 5);
    y.dispose();
    expect(tf.memory().numBytes).toBe(memory.numBytes);
    expect((tf.memory() as {numDataBuffers: number}).numDataBuffers).toBe((memory as {numDataBuffers: number}).numDataBuffers);
    // Strings keep the stock kernel.
    const s = tf.tensor1d(['a', 'b'], 'string');
    const sc = tf.clone(s);
    expect(sc.arraySync()).toEqual(['a', 'b']);
    tf.dispose([s, sc]);
  });

  it('gather rejects an out-of-range index, as the stock kernel does, without leaking', async () => {
    registerFastKernels();
    const x = rand([4, 3], 4);
    const before = tf.memory().numTensors;
    expect(() => tf.gather(x, tf.tensor1d([0, 4], 'int32'))).toThrow(/index value 4 is not in \[0, 3\]/);
    expect(() => tf.gather(x, tf.tensor1d([-1], 'int32'))).toThrow(/index value -1/);
    expect(tf.memory().numTensors).toBeLessThanOrEqual(before + 2); // the two index tensors
    await expectNoLeaks(() => tf.tidy(() => tf.gather(x, tf.tensor1d([3, 1], 'int32'))).dispose(), 5);
    x.dispose();
  });
});
