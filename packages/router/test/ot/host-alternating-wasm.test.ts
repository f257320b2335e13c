/**
 * The host alternating solver's group loop in WebAssembly (assembly/alternating.ts) against the
 * JavaScript group loop (host-alternating.ts, itself tested against the tensor path in
 * host-path.test.ts): the same float32 steps and summation order, so every output is the same
 * bit for bit (plan, potentials, value, statistics, iterations, convergence) on problems that
 * reach every branch: one and two starts, the cheapest-column start, warm starts, the polish
 * phase (its cosine and powers), exact ties (integer costs), a gamma that is not a float32
 * value, non-uniform and zero marginals, row sparsity, the rows' best-response shortcut (more
 * than 4 columns), the dual formulation, groups the module leaves to the JavaScript, and both of
 * its evaluations (four columns per SIMD instruction for up to 24 rows and a multiple of 4
 * columns, else column by column).
 */
import * as tf from '@tensorflow/tfjs';
import {execFileSync} from 'child_process';
import * as path from 'path';
import {InvalidArgumentError} from '../../src/core/errors';
import {alternating, setWasmSolver, sparseOTProblem, wasmSolverActive, type AlternatingSolverConfig, type SparseOTProblemSpec} from '../../src/ot';
import {prepareWasmSolve} from '../../src/ot/solvers/host-alternating-wasm';
import type {SolverInit} from '../../src/ot/solvers/solver';
import {describeBackends, expectNoLeaks} from '../helpers/backends';

/** A deterministic generator of floats in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Standard normal values (Box-Muller) from `rand`. */
function normals(rand: () => number, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()));
  return out;
}

interface Case {
  name: string;
  groups: number;
  m: number;
  n: number;
  spec: Omit<SparseOTProblemSpec, 'a' | 'b'> & {a?: number[]; b?: number[]};
  config?: AlternatingSolverConfig;
  /** 'softmax': -softmax(2 z) (routing costs); 'integer': round(2 z) (exact ties); 'scaled': one group scaled by 1e37. */
  cost?: 'softmax' | 'integer' | 'scaled' | 'normal';
  /** 'hugeBeta': a warm beta of 1e38 in the first group (its rows' best response overflows: the JavaScript solves it). */
  init?: 'alpha' | 'beta' | 'hugeBeta';
}

/** All outputs of one solve, as bytes. */
function solveBytes(c: Case, wasm: boolean): {bytes: Uint8Array[]; iterations: number; converged: boolean} {
  const before = setWasmSolver(wasm);
  try {
    const rand = rng(c.groups * 1000 + c.m * 10 + c.n);
    const z = normals(rand, c.groups * c.m * c.n);
    let values = z;
    if (c.cost === 'integer') values = z.map((v) => Math.round(2 * v));
    if (c.cost === 'scaled') values = z.map((v, i) => (i < c.m * c.n ? v * 1e37 : v));
    const raw = tf.tensor3d(values, [c.groups, c.m, c.n]);
    const cost = c.cost === undefined || c.cost === 'softmax' ? tf.tidy(() => tf.neg(tf.softmax(tf.mul(raw, 2)))) : raw.clone();
    const {a, b, ...rest} = c.spec;
    const spec: SparseOTProblemSpec = {...rest};
    if (a) spec.a = tf.tensor2d(a, [c.groups, c.m]);
    if (b) spec.b = tf.tensor2d(b, [c.groups, c.n]);
    const problem = sparseOTProblem(cost, spec);
    const column = (c.spec.sparsity ?? 'column') === 'column';
    const warmBeta = normals(rand, c.groups * (column ? c.n : c.m));
    if (c.init === 'hugeBeta') warmBeta[0] = 1e38;
    const init: SolverInit | undefined = c.init === 'beta' || c.init === 'hugeBeta'
      ? {beta: tf.tensor2d(warmBeta, [c.groups, column ? c.n : c.m])}
      : c.init === 'alpha' ? {alpha: tf.tensor2d(normals(rand, c.groups * (column ? c.m : c.n)), [c.groups, column ? c.m : c.n])} : undefined;
    const out = alternating(c.config).solve(problem, init);
    const stats = out.marginalStatsSync();
    const bytes = [out.plan, out.potentials.alpha, out.potentials.beta, out.value].map((t) => new Uint8Array((t.dataSync() as Float32Array).slice().buffer));
    bytes.push(new Uint8Array(Float64Array.from([stats.marginalError, stats.meanRowError, stats.droppedFraction]).buffer));
    const r = {bytes, iterations: out.iterations, converged: out.converged};
    out.dispose();
    problem.dispose();
    tf.dispose([raw, cost, spec.a as tf.Tensor, spec.b as tf.Tensor, init?.alpha, init?.beta].filter((t): t is tf.Tensor => t instanceof tf.Tensor));
    return r;
  } finally {
    setWasmSolver(before);
  }
}

/** Positive row masses with some padding rows (0), and column masses of the same total per group. */
function marginals(groups: number, m: number, n: number, seed: number): {a: number[]; b: number[]} {
  const rand = rng(seed);
  const a: number[] = [];
  const b: number[] = [];
  for (let g = 0; g < groups; g++) {
    let total = 0;
    for (let i = 0; i < m; i++) {
      const v = g === groups - 1 ? 0 : i % 5 === 4 ? 0 : 0.5 + rand();
      a.push(v);
      total += v;
    }
    const w = Array.from({length: n}, () => 0.5 + rand());
    const sw = w.reduce((s, x) => s + x, 0);
    for (const x of w) b.push((total * x) / sw);
  }
  return {a, b};
}

const POLISH: AlternatingSolverConfig = {maxIterations: 12, checkEvery: 2, tolerance: 1e-2};

const CASES: Case[] = [
  {name: 'main-job layer: 17 tokens x 4 experts, k 6', groups: 24, m: 17, n: 4, spec: {k: 6}, config: {maxIterations: 3}},
  {name: 'the same with a warm beta (the router\'s warm start)', groups: 24, m: 17, n: 4, spec: {k: 6}, config: {maxIterations: 3}, init: 'beta'},
  {name: 'warm alpha, polish phase', groups: 12, m: 17, n: 4, spec: {k: 5}, config: POLISH, init: 'alpha'},
  {name: 'integer costs (exact ties), polish phase', groups: 16, m: 17, n: 4, spec: {k: 6}, config: POLISH, cost: 'integer'},
  {name: 'gamma 0.1 (not a float32 value)', groups: 8, m: 16, n: 4, spec: {k: 5, gamma: 0.1}, config: {maxIterations: 6}},
  {name: 'gamma 3.7, normal costs, k = m', groups: 6, m: 12, n: 3, spec: {k: 12, gamma: 3.7}, cost: 'normal', config: {maxIterations: 5}},
  {name: '8 experts (best-response shortcut), cf 1.25', groups: 6, m: 64, n: 8, spec: {k: 10}, config: {maxIterations: 8, checkEvery: 3}},
  {name: '8 experts, 20 tokens (two blocks of four columns), polish phase', groups: 8, m: 20, n: 8, spec: {k: 4}, config: POLISH},
  {name: '12 experts, 24 tokens, integer costs', groups: 6, m: 24, n: 12, spec: {k: 3}, config: {maxIterations: 6}, cost: 'integer'},
  {name: '32 experts, cf 1.0 (zero start only)', groups: 4, m: 64, n: 32, spec: {k: 2}, config: {maxIterations: 4}},
  {name: '32 experts, cf 1.5, cold (cheapest-column start)', groups: 4, m: 64, n: 32, spec: {k: 3}, config: {maxIterations: 4}},
  {name: 'multiStart true', groups: 6, m: 40, n: 20, spec: {k: 3}, config: {multiStart: true, maxIterations: 5}},
  {name: 'multiStart false, tolerance 0', groups: 6, m: 17, n: 4, spec: {k: 6}, config: {multiStart: false, tolerance: 0, maxIterations: 7}},
  {name: 'non-uniform marginals, padding rows, an empty group', groups: 6, m: 20, n: 5, spec: {k: 7, ...marginals(6, 20, 5, 7)}, config: {maxIterations: 6}},
  {name: 'row sparsity', groups: 5, m: 6, n: 18, spec: {k: 4, sparsity: 'row'}, config: {maxIterations: 5}},
  {name: 'dual formulation', groups: 6, m: 17, n: 4, spec: {k: 6}, config: {formulation: 'dual', maxIterations: 4}},
  {name: 'one expert', groups: 3, m: 5, n: 1, spec: {k: 5}, config: {maxIterations: 3}},
  {name: 'one token per group', groups: 3, m: 1, n: 3, spec: {k: 1}, config: {maxIterations: 3}},
  {name: 'a warm beta whose best response overflows in one group', groups: 4, m: 17, n: 4, spec: {k: 6, gamma: 1e-3}, config: {maxIterations: 3}, init: 'hugeBeta'},
  {name: 'a group the module leaves to the JavaScript (x overflows)', groups: 4, m: 17, n: 4, spec: {k: 6, gamma: 1e-3}, cost: 'scaled', config: {maxIterations: 3}},
];

describeBackends('the WebAssembly group loop of the alternating solver', () => {
  it('is active in Node', () => {
    expect(wasmSolverActive()).toBe(true);
  });

  it.each(CASES.map((c) => [c.name, c]))('equals the JavaScript loop bit for bit: %s', (_name, c) => {
    const js = solveBytes(c as Case, false);
    const wasm = solveBytes(c as Case, true);
    expect(wasm.iterations).toBe(js.iterations);
    expect(wasm.converged).toBe(js.converged);
    for (let t = 0; t < js.bytes.length; t++) expect(Buffer.from(wasm.bytes[t]).equals(Buffer.from(js.bytes[t]))).toBe(true);
  });

  it('gives the same results after its memory grew for a larger problem', () => {
    const small = CASES[0];
    const first = solveBytes(small, true);
    solveBytes({...small, groups: 256, m: 64, n: 8, spec: {k: 10}}, true);
    const again = solveBytes(small, true);
    for (let t = 0; t < first.bytes.length; t++) expect(Buffer.from(again.bytes[t]).equals(Buffer.from(first.bytes[t]))).toBe(true);
  });

  it('leaks no tensors', async () => {
    await expectNoLeaks(() => solveBytes(CASES[1], true), 5);
  });
});

describe('the WebAssembly group loop, directly', () => {
  it('leaves a group with a non-finite cost or a capacity of -0 to the JavaScript and solves the others', () => {
    const groups = 3;
    const mi = 5;
    const ni = 2;
    const run = prepareWasmSolve({
      groups, mi, ni, k: 3, gamma: 1, f32Sums: true, maxIterations: 3, checkEvery: 2, tolerance: 1e-5, polishRate: 3e-3,
      adam: {b1: Math.fround(0.9), b1c: Math.fround(0.1), b2: Math.fround(0.999), b2c: Math.fround(0.001), eps: Math.fround(1e-8)},
    });
    expect(run).not.toBeNull();
    const w = run!.buffers;
    const rand = rng(3);
    for (let g = 0; g < groups; g++) {
      for (let i = 0; i < mi; i++) {
        for (let j = 0; j < ni; j++) {
          const c = -rand();
          w.costRows[(g * mi + i) * ni + j] = c;
          w.costT[(g * ni + j) * mi + i] = c;
        }
        w.a[g * mi + i] = 1;
        w.alpha0[g * mi + i] = 0;
      }
      for (let j = 0; j < ni; j++) w.b[g * ni + j] = mi / ni;
      w.mode[g] = 0;
    }
    w.costRows[(1 * mi + 2) * ni + 1] = NaN;
    w.costT[(1 * ni + 1) * mi + 2] = NaN;
    w.b[2 * ni] = -0;
    expect(run!.run()).toBe(2);
    expect([...w.status].map((s) => s & 1)).toEqual([0, 1, 1]);
    // Group 0's plan meets its row marginals to the solver's accuracy (3 iterations).
    for (let i = 0; i < mi; i++) expect(w.planT[i] + w.planT[mi + i]).toBeGreaterThan(0.5);
  });

  it('rejects a non-boolean switch, naming the argument', () => {
    expect(() => setWasmSolver('yes' as unknown as boolean)).toThrow(InvalidArgumentError);
    expect(() => setWasmSolver('yes' as unknown as boolean)).toThrow(/enabled.*yes/);
  });

  it('is the compilation of assembly/alternating.ts (alternating-module.ts is not stale)', () => {
    const script = path.join(__dirname, '../../scripts/build-alternating-wasm.mjs');
    expect(execFileSync(process.execPath, [script, '--check'], {encoding: 'utf8'})).toMatch(/matches/);
  });
});
