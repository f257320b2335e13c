/**
 * The own WebAssembly SIMD matMul kernels (gemm.wat) behind the fast wasm `BatchMatMul`:
 * - exactly the documented float32 summation order, against a JavaScript emulation of it
 *   (`Math.fround` after every multiply and add), on shapes that cover every tile edge (4 x 8 and
 *   2 x 4 tiles, their row / column remainders, k mod 4 tails, size-1 dims);
 * - within float32 rounding of a float64 reference, forward and gradient, batched and broadcast;
 * - a row's result is the same whatever else is in the call (batch independence);
 * - correct after the wasm heap grows; the XNNPACK fallback (`setWasmGemm(false)`) equals the
 *   stock kernel too; no tensor leaks; the assembled module in gemm-module.ts is gemm.wat's.
 */
import {execFileSync} from 'child_process';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError} from '../../src/core/errors';
import {registerFastKernels, setWasmGemm, unregisterFastKernels, wasmGemmActive} from '../../src/backend/fast-kernels';
import {expectAllClose, expectNoLeaks, useBackend} from '../helpers/backends';

const f = Math.fround;

/** Random float32 values in [-1, 1) from a small LCG (deterministic, independent of tfjs). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

/** The reader of a logical `[rows, cols]` matrix stored row-major, or transposed (stored `[cols, rows]`). */
const reader = (x: Float32Array, rows: number, cols: number, transposed: boolean) =>
  transposed ? (r: number, c: number) => x[c * rows + r] : (r: number, c: number) => x[r * cols + c];

/**
 * gemm.wat's summation order in JavaScript float32 arithmetic: `A B` and `A^T B` add the products
 * in k order; `A B^T` keeps four lane sums over k = 4q + l, adds them as (s0 + s1) + (s2 + s3),
 * then the k mod 4 tail in k order.
 */
function emulate(a: Float32Array, b: Float32Array, m: number, k: number, n: number, tA: boolean, tB: boolean): Float32Array {
  const A = reader(a, m, k, tA);
  const B = reader(b, k, n, tB);
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      if (!tB || tA) {
        // A^T B^T runs as (A^T) B^T after an explicit transpose of A: the nt order, below.
        if (!tB) {
          for (let p = 0; p < k; p++) s = f(s + f(A(i, p) * B(p, j)));
          out[i * n + j] = s;
          continue;
        }
      }
      const lanes = [0, 0, 0, 0];
      const k4 = k - (k % 4);
      for (let p = 0; p < k4; p++) lanes[p % 4] = f(lanes[p % 4] + f(A(i, p) * B(p, j)));
      s = f(f(lanes[0] + lanes[1]) + f(lanes[2] + lanes[3]));
      for (let p = k4; p < k; p++) s = f(s + f(A(i, p) * B(p, j)));
      out[i * n + j] = s;
    }
  }
  return out;
}

/** The float64 product. */
function exact(a: Float32Array, b: Float32Array, m: number, k: number, n: number, tA: boolean, tB: boolean): number[] {
  const A = reader(a, m, k, tA);
  const B = reader(b, k, n, tB);
  const out: number[] = [];
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let p = 0; p < k; p++) s += A(i, p) * B(p, j);
    out.push(s);
  }
  return out;
}

const COMBOS: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true]];
// [m, k, n]: below one tile, exact tiles, every remainder of 4 rows / 8 columns / 2 rows / 4
// columns, k = 1..5 (no full lane group, tails 1-3), an expert-sized product, and 4 / 12 columns
// (the 4 x 4 tiles: a router's logits over 4 experts).
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 5, 1], [3, 2, 7], [4, 8, 8], [5, 3, 9], [7, 4, 15], [8, 1, 16], [2, 6, 4],
  [9, 13, 17], [12, 7, 24], [33, 5, 31], [6, 19, 3], [16, 64, 40], [64, 192, 96], [37, 64, 4], [13, 9, 12],
];

describe('own wasm matMul kernels (gemm.wat)', () => {
  beforeAll(async () => {
    await useBackend('wasm');
    registerFastKernels();
  });
  afterAll(() => {
    setWasmGemm(true);
    unregisterFastKernels();
  });
  beforeEach(() => {
    expect(tf.getBackend()).toBe('wasm');
    setWasmGemm(true);
  });

  it('are active on the wasm backend once the fast kernels are registered, and can be switched off', () => {
    expect(wasmGemmActive()).toBe(true);
    expect(setWasmGemm(false)).toBe(true);
    expect(wasmGemmActive()).toBe(false);
    expect(setWasmGemm(true)).toBe(false);
    unregisterFastKernels();
    expect(wasmGemmActive()).toBe(false);
    registerFastKernels();
    expect(wasmGemmActive()).toBe(true);
  });

  it('setWasmGemm rejects a value that is not a boolean, naming it', () => {
    expect(() => setWasmGemm('yes' as unknown as boolean)).toThrow(InvalidArgumentError);
    expect(() => setWasmGemm(1 as unknown as boolean)).toThrow(/setWasmGemm: Expected enabled to be a boolean, but got 1/);
  });

  it.each(COMBOS)('sum in exactly the documented order (transposeA %s, transposeB %s)', (tA, tB) => {
    SHAPES.forEach(([m, k, n], s) => {
      const av = values(m * k, 7 + s);
      const bv = values(k * n, 101 + s);
      const y = tf.tidy(() => tf.matMul(tf.tensor(av, tA ? [k, m] : [m, k]), tf.tensor(bv, tB ? [n, k] : [k, n]), tA, tB).dataSync());
      expect(Array.from(y)).toEqual(Array.from(emulate(av, bv, m, k, n, tA, tB)));
    });
  });

  it.each(COMBOS)('batched and broadcast products, forward and gradient, are within float32 rounding of float64 (transposeA %s, transposeB %s)', (tA, tB) => {
    // [batch of a, batch of b, m, k, n]
    const cases: [number[], number[], number, number, number][] = [
      [[3], [3], 9, 300, 10], [[3], [], 5, 20, 11], [[], [3], 5, 20, 11], [[2, 2], [2, 2], 8, 17, 12], [[1], [1], 4, 8, 8],
    ];
    cases.forEach(([ba, bb, m, k, n], c) => {
      const batch = Math.max(ba.reduce((p, x) => p * x, 1), bb.reduce((p, x) => p * x, 1));
      const aSize = m * k;
      const bSize = k * n;
      const av = values(ba.reduce((p, x) => p * x, 1) * aSize, 3 + c);
      const bv = values(bb.reduce((p, x) => p * x, 1) * bSize, 40 + c);
      const a = tf.tensor(av, [...ba, ...(tA ? [k, m] : [m, k])]);
      const b = tf.tensor(bv, [...bb, ...(tB ? [n, k] : [k, n])]);
      const y = tf.tidy(() => tf.matMul(a, b, tA, tB).dataSync());
      const want: number[] = [];
      for (let i = 0; i < batch; i++) {
        const ai = ba.length ? av.subarray(i * aSize, (i + 1) * aSize) : av;
        const bi = bb.length ? bv.subarray(i * bSize, (i + 1) * bSize) : bv;
        want.push(...exact(ai, bi, m, k, n, tA, tB));
      }
      expectAllClose(Array.from(y), want, 1e-5, 2e-6 * k);
      if (ba.join() === bb.join()) {
        // Gradients: dA and dB are products of the other two layouts; compare with the stock kernel's.
        const dy = tf.tensor(values(batch * m * n, 77 + c), [...ba, m, n]);
        const grads = () => tf.tidy(() => tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, w, tA, tB), dy)))([a, b]).map((g) => Array.from(g.dataSync())));
        const fast = grads();
        unregisterFastKernels();
        const stock = grads();
        registerFastKernels();
        expectAllClose(fast[0], stock[0], 1e-5, 2e-6 * n);
        expectAllClose(fast[1], stock[1], 1e-5, 2e-6 * m);
        dy.dispose();
      }
      tf.dispose([a, b]);
    });
  });

  it('give each row the same result whatever else is in the call (batch independence)', () => {
    const m = 11;
    const k = 37;
    const n = 29;
    for (const [tA, tB] of COMBOS) {
      const a = tf.tensor(values(m * k, 5), tA ? [k, m] : [m, k]);
      const b = tf.tensor(values(k * n, 6), tB ? [n, k] : [k, n]);
      const all = tf.tidy(() => tf.matMul(a, b, tA, tB).arraySync()) as number[][];
      for (const i of [0, 3, 4, 10]) {
        const row = tf.tidy(() => {
          const ai = tA ? tf.slice(a, [0, i], [k, 1]) : tf.slice(a, [i, 0], [1, k]);
          return tf.matMul(ai, b, tA, tB).arraySync() as number[][];
        });
        expect(row[0]).toEqual(all[i]);
      }
      tf.dispose([a, b]);
    }
  });

  it('stay correct after the wasm heap grows', () => {
    const memory = (tf.backend() as unknown as {wasm: {asm: {memory: WebAssembly.Memory}}}).wasm.asm.memory;
    const before = memory.buffer.byteLength;
    const big: tf.Tensor[] = [];
    while (memory.buffer.byteLength === before) big.push(tf.fill([4 * 1024 * 1024], 1));
    const av = values(20 * 30, 1);
    const bv = values(30 * 12, 2);
    const y = tf.tidy(() => tf.matMul(tf.tensor(av, [20, 30]), tf.tensor(bv, [30, 12])).dataSync());
    expect(Array.from(y)).toEqual(Array.from(emulate(av, bv, 20, 30, 12, false, false)));
    tf.dispose(big);
  });

  it.each(COMBOS)('the XNNPACK fallback (setWasmGemm(false)) equals the stock kernel (transposeA %s, transposeB %s)', (tA, tB) => {
    setWasmGemm(false);
    for (const [ba, bb, m, k, n] of [[[3], [3], 40, 33, 29], [[], [], 16, 40, 64], [[2], [], 9, 8, 7]] as [number[], number[], number, number, number][]) {
      const a = tf.tensor(values((ba[0] ?? 1) * m * k, 9), [...ba, ...(tA ? [k, m] : [m, k])]);
      const b = tf.tensor(values((bb[0] ?? 1) * k * n, 10), [...bb, ...(tB ? [n, k] : [k, n])]);
      const fast = tf.tidy(() => Array.from(tf.matMul(a, b, tA, tB).dataSync()));
      unregisterFastKernels();
      const stock = tf.tidy(() => Array.from(tf.matMul(a, b, tA, tB).dataSync()));
      registerFastKernels();
      expectAllClose(fast, stock, 1e-5, 1e-5);
      tf.dispose([a, b]);
    }
  });

  it('leak no tensors, forward and gradient, on every layout', async () => {
    const a = tf.tensor(values(3 * 13 * 9, 1), [3, 13, 9]);
    const b = tf.tensor(values(3 * 9 * 10, 2), [3, 9, 10]);
    for (const [tA, tB] of COMBOS) {
      const x = tA ? tf.transpose(a, [0, 2, 1]) : a;
      const w = tB ? tf.transpose(b, [0, 2, 1]) : b;
      await expectNoLeaks(() => tf.tidy(() => tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.matMul(p, q, tA, tB)))([x, w])).forEach((t) => t.dispose()), 5);
      if (x !== a) x.dispose();
      if (w !== b) w.dispose();
    }
    tf.dispose([a, b]);
  });

  it('are the assembly of gemm.wat (gemm-module.ts is not stale)', () => {
    const script = path.join(__dirname, '../../scripts/assemble-gemm.mjs');
    expect(execFileSync(process.execPath, [script, '--check'], {encoding: 'utf8'})).toMatch(/matches/);
  });
});
