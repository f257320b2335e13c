/**
 * The OT core's objects: problem, solver, output (issue 8, item 1), the subpath export
 * `@tfjs-moe/router/ot`, the `sparseOTPlan` op, and the edge cases of the problem: a group of
 * padding only (issue 9, item 2), non-finite warm starts and integer costs (issue 13).
 */
import * as tf from '@tensorflow/tfjs';
import * as ot from '@tfjs-moe/router/ot';
import {InvalidArgumentError, NonFiniteError, ShapeError} from '../../src/core/errors';
import {UnknownOptionError} from '../../src/core/options';
import {
  adam, alternating, newton, sinkhornSolver, solveSparseOT, solverFromConfig, sparseOTPlan, sparseOTPlanVJP, sparseOTProblem,
  type SparseOTSolver,
} from '../../src/ot';
import {describeBackends, expectAllClose, expectNoLeaks} from '../helpers/backends';

const cost8x4 = (seed: number): tf.Tensor2D => tf.tidy(() => tf.neg(tf.softmax(tf.randomNormal([8, 4], 0, 1, 'float32', seed))) as tf.Tensor2D);

describe('the subpath export @tfjs-moe/router/ot', () => {
  test('exports the OT core (the same objects as the package index)', () => {
    expect(ot.sparseOTProblem).toBe(sparseOTProblem);
    expect(ot.alternating).toBe(alternating);
    expect(ot.solveSparseOT).toBe(solveSparseOT);
    expect(typeof ot.sparseOTPlan).toBe('function');
  });
});

describe('solver objects', () => {
  test('carry their defaults, reject unknown keys, and rebuild from getConfig()', () => {
    expect(alternating().config).toEqual({maxIterations: 3, tolerance: 1e-5, checkEvery: 2, polishRate: 3e-3, multiStart: 'auto', formulation: 'semidual'});
    expect(newton().config.maxIterations).toBe(30);
    expect(adam().config).toMatchObject({learningRate: 1e-2, maxIterations: 20});
    expect(sinkhornSolver().config).toMatchObject({epsilon: 0.05, maxIterations: 500});
    expect(() => newton({maxIteration: 5} as never)).toThrow(UnknownOptionError);
    expect(() => adam({learningRate: 0})).toThrow('adam: Expected learningRate to be a finite number > 0, but got 0.');
    for (const s of [adam({learningRate: 0.1}), newton({cgIterations: 4}), alternating({multiStart: true}), sinkhornSolver({epsilon: 0.2})] as SparseOTSolver[]) {
      const again = solverFromConfig(s.getConfig());
      expect(again.getConfig()).toEqual(s.getConfig());
      expect(again.name).toBe(s.name);
    }
  });
});

/** Oracle: the marginal statistics of an 8x4 plan (a = 1, b = 8/4 = 2) recomputed by hand. */
function expectStatsByHand(stats: {marginalError: number; meanRowError: number; droppedFraction: number}, plan: number[][]): void {
  const rowErr = plan.map((r) => Math.abs(r.reduce((s, v) => s + v, 0) - 1));
  const colErr = [0, 1, 2, 3].map((j) => Math.abs(plan.reduce((s, r) => s + r[j], 0) - 2) / 2);
  expect(stats.marginalError).toBeCloseTo(Math.max(...rowErr, ...colErr), 5);
  expect(stats.meanRowError).toBeCloseTo(rowErr.reduce((s, v) => s + v, 0) / 8, 5);
  expect(stats.droppedFraction).toBeCloseTo(plan.filter((r) => r.every((v) => v <= 0)).length / 8, 6);
}

describeBackends('problem, solver, output', (backend) => {
  test('the output: plan, potentials, value, and marginal statistics read asynchronously, without dataSync', async () => {
    expect(tf.getBackend()).toBe(backend);
    const cost = cost8x4(1);
    const problem = sparseOTProblem(cost, {k: 2});
    const out = alternating().solve(problem);
    expect(out.plan.shape).toEqual([8, 4]);
    expect(out.potentials.alpha.shape).toEqual([8]);
    expect(out.potentials.beta.shape).toEqual([4]);
    expect(out.value.shape).toEqual([]);
    const proto = tf.Tensor.prototype as unknown as {dataSync: () => unknown};
    const saved = proto.dataSync;
    let reads = 0;
    proto.dataSync = function (this: tf.Tensor) {
      reads++;
      return saved.call(this);
    };
    const stats = await out.marginalStats();
    proto.dataSync = saved;
    expect(reads).toBe(0);
    const plan = out.plan.arraySync() as number[][];
    expectStatsByHand(stats, plan);
    // Columns hold at most k = 2 tokens.
    for (let j = 0; j < 4; j++) expect(plan.filter((r) => r[j] > 0).length).toBeLessThanOrEqual(2);
    out.dispose();
    await expect(out.marginalStats()).resolves.toEqual(stats); // read once, kept
    problem.dispose();
    cost.dispose();
  });

  test("solveSparseOT's result reads the same statistics asynchronously (marginalStats) as by hand", async () => {
    expect(tf.getBackend()).toBe(backend);
    const cost = cost8x4(2);
    const r = solveSparseOT(cost, {k: 2});
    expectStatsByHand(await r.marginalStats(), r.plan.arraySync() as number[][]);
    r.dispose();
    cost.dispose();
  });

  test('a disposed cost or marginal is a typed error naming it, not a TypeError from inside tfjs', () => {
    expect(tf.getBackend()).toBe(backend);
    const cost = cost8x4(3);
    const a = tf.ones([8]);
    a.dispose();
    expect(() => sparseOTProblem(cost, {k: 2, a})).toThrow(/Expected a to be a tensor that is not disposed, but got "?a disposed tensor of shape \[8\]/);
    cost.dispose();
    expect(() => sparseOTProblem(cost, {k: 2})).toThrow(/Expected cost to be a tensor that is not disposed, but got "?a disposed tensor of shape \[8, 4\]/);
    expect(() => solveSparseOT(cost, {k: 2})).toThrow(InvalidArgumentError);
  });

  test('one problem serves several solvers and is validated once; no leaks', async () => {
    expect(tf.getBackend()).toBe(backend);
    const cost = cost8x4(2);
    await expectNoLeaks(() => {
      const problem = sparseOTProblem(cost, {k: 8, gamma: 0.5});
      for (const s of [adam(), newton(), alternating(), sinkhornSolver({maxIterations: 20})] as SparseOTSolver[]) s.solve(problem).dispose();
      problem.dispose();
    }, 3);
    cost.dispose();
  });

  test('sparseOTPlan is an op whose gradient is sparseOTPlanVJP of the saved plan', () => {
    expect(tf.getBackend()).toBe(backend);
    const cost = cost8x4(3);
    const w = tf.randomNormal([8, 4], 0, 1, 'float32', 4);
    const spec = {k: 8, gamma: 0.5};
    const grad = tf.grad((c: tf.Tensor) => tf.sum(tf.mul(sparseOTPlan(c, spec, newton()), w)))(cost);
    const plan = sparseOTPlan(cost, spec, newton());
    const vjp = sparseOTPlanVJP(plan, w, {gamma: 0.5});
    expectAllClose(grad.dataSync(), vjp.dataSync(), 1e-6, 1e-6);
    expect(() => sparseOTPlan(cost, spec, sinkhornSolver())).toThrow("Expected solver to be a k-sparse solver with a formulation (not 'sinkhorn')");
    tf.dispose([cost, w, grad, plan, vjp]);
  });
});

describeBackends('a group of padding only (a = 0, b = 0)', (backend) => {
  const solvers: Array<[string, () => SparseOTSolver]> = [
    ['alternating', () => alternating()], ['newton', () => newton()], ['adam', () => adam()], ['sinkhorn', () => sinkhornSolver({maxIterations: 30})],
  ];
  test.each(solvers)('%s: zero plan for it, the other groups unchanged, the same with and without host reads', (_name, make) => {
    expect(tf.getBackend()).toBe(backend);
    const cost = tf.stack([cost8x4(5), cost8x4(6), cost8x4(7)]) as tf.Tensor3D;
    const a = tf.tensor2d([[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0]]);
    const b = tf.tensor2d([[2, 2, 2, 2], [0, 0, 0, 0], [1, 1, 1, 1]]);
    const runs = [true, false].map((hostReads) => {
      const problem = sparseOTProblem(cost, {k: 3, a, b, hostReads});
      const out = make().solve(problem);
      const plan = out.plan.arraySync() as number[][][];
      out.dispose();
      problem.dispose();
      return plan;
    });
    // With host reads, cpu/wasm run the host path (newton's CG in float64 there): equal to
    // float32 rounding; without, the tensor path.
    expectAllClose(runs[1].flat(2), runs[0].flat(2), 1e-5, 1e-5);
    expect(runs[0][1].flat().every((v) => v === 0)).toBe(true);
    expect(runs[1][1].flat().every((v) => v === 0)).toBe(true);
    // The real groups route as they do alone.
    for (const g of [0, 2]) {
      const problem = sparseOTProblem(tf.slice(cost, [g], [1]), {k: 3, a: tf.slice(a, [g], [1]), b: tf.slice(b, [g], [1])});
      const out = make().solve(problem);
      expect((out.plan.arraySync() as number[][][])[0]).toEqual(runs[0][g]);
      out.dispose();
      problem.dispose();
    }
    tf.dispose([cost, a, b]);
  });

  test('solveSparseOT accepts it (no throw)', () => {
    expect(tf.getBackend()).toBe(backend);
    const r = solveSparseOT(tf.zeros([4, 2]), {k: 2, a: [0, 0, 0, 0], b: [0, 0]});
    expect(Array.from(r.plan.dataSync())).toEqual(new Array(8).fill(0));
    r.dispose();
  });
});

describeBackends('bad warm starts and integer costs', (backend) => {
  test('a NaN or Infinity warm start is rejected with NonFiniteError naming it', () => {
    expect(tf.getBackend()).toBe(backend);
    const cost = cost8x4(8);
    const nan = tf.tensor1d([0, NaN, 0, 0]);
    expect(() => solveSparseOT(cost, {k: 2, init: {beta: nan}})).toThrow(NonFiniteError);
    expect(() => solveSparseOT(cost, {k: 2, init: {beta: nan}})).toThrow('solveSparseOT: Expected init.beta to be finite (no NaN or Infinity), but got NaN.');
    const inf = tf.fill([8], -Infinity);
    expect(() => alternating().solve(sparseOTProblem(cost, {k: 2}), {alpha: inf})).toThrow('sparseOTProblem: Expected init.alpha to be finite (no NaN or Infinity), but got -Infinity.');
    expect(() => solveSparseOT(cost, {k: 2, init: {beta: tf.zeros([3])}})).toThrow(ShapeError);
    tf.dispose([cost, nan, inf]);
  });

  test('an int32 cost (negative entries) is accepted and solved as its float32 values', () => {
    expect(tf.getBackend()).toBe(backend);
    const values = [[-3, 1], [2, -5], [0, 4], [-1, -1]];
    const asInt = solveSparseOT(tf.tensor2d(values, [4, 2], 'int32'), {k: 2, gamma: 2});
    const asFloat = solveSparseOT(tf.tensor2d(values, [4, 2], 'float32'), {k: 2, gamma: 2});
    expect(Array.from(asInt.plan.dataSync())).toEqual(Array.from(asFloat.plan.dataSync()));
    asInt.dispose();
    asFloat.dispose();
  });
});
