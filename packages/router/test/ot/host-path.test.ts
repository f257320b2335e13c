/**
 * The host path of the solvers (cpu, wasm: the iterations on host arrays, solvers/host*.ts)
 * against the tensor path (the reference, `setHostSolvers(false)`): the same algorithm, so the
 * same potentials, value, iterations and convergence flag to float32 rounding, and the same plan
 * up to the choice among exactly tied entries. Ties are real here: the alternating solver's row
 * best response puts a token exactly at a column's entry level, so several tokens can tie at a
 * full column's k-th place, and which one `tf.topk` keeps depends on float32 rounding (the
 * tensor path itself picks differently on cpu and on wasm there). The oracle for the plan: per
 * bounded line (a column, or a row for row sparsity), the sorted plan values agree, and every
 * entry whose membership in the support differs has a tie partner (an entry of the same line
 * whose `potential - cost` is equal to rounding and whose membership differs the other way).
 */
import * as tf from '@tensorflow/tfjs';
import {adam, alternating, newton, setHostSolvers, sparseOTProblem, type SparseOTProblemSpec, type SparseOTSolver} from '../../src/ot';
import type {SolverInit} from '../../src/ot/solvers/solver';
import {describeBackends, expectAllClose, expectNoLeaks} from '../helpers/backends';

interface Solved {plan: Float32Array; alpha: Float32Array; beta: Float32Array; value: Float32Array; iterations: number; converged: boolean; stats: number[]}

/** Solves `(cost, spec)` with `solver` on the host path (`host` true) or the tensor path. */
function solve(cost: tf.Tensor, spec: SparseOTProblemSpec, solver: SparseOTSolver, host: boolean, init?: () => SolverInit): Solved {
  const before = setHostSolvers(host);
  try {
    const problem = sparseOTProblem(cost, spec);
    const start = init?.();
    const out = solver.solve(problem, start);
    const stats = out.marginalStatsSync();
    const r = {
      plan: out.plan.dataSync() as Float32Array, alpha: out.potentials.alpha.dataSync() as Float32Array,
      beta: out.potentials.beta.dataSync() as Float32Array, value: out.value.dataSync() as Float32Array,
      iterations: out.iterations, converged: out.converged, stats: [stats.marginalError, stats.meanRowError, stats.droppedFraction],
    };
    out.dispose();
    problem.dispose();
    if (start) tf.dispose([start.alpha, start.beta].filter((t): t is tf.Tensor => t !== undefined));
    return r;
  } finally {
    setHostSolvers(before);
  }
}

/** Number of entries whose support membership differs, after checking that each has a tie partner. */
function expectSamePlanUpToTies(host: Solved, ref: Solved, cost: Float32Array, groups: number, m: number, n: number, column: boolean): number {
  let swaps = 0;
  const tieTol = 1e-5;
  for (let g = 0; g < groups; g++) {
    const lines = column ? n : m;
    const len = column ? m : n;
    for (let l = 0; l < lines; l++) {
      const at = (e: number): number => (column ? (g * m + e) * n + l : (g * m + l) * n + e);
      // z = the other side's potential minus the cost, from the reference's potentials.
      const z = (e: number): number => (column ? ref.alpha[g * m + e] : ref.beta[g * n + e]) - cost[at(e)];
      const hv = [...Array(len).keys()].map((e) => host.plan[at(e)]);
      const rv = [...Array(len).keys()].map((e) => ref.plan[at(e)]);
      expectAllClose([...hv].sort((x, y) => x - y), [...rv].sort((x, y) => x - y), 1e-5, 1e-4);
      for (let e = 0; e < len; e++) {
        if ((hv[e] > 1e-6) === (rv[e] > 1e-6)) continue;
        const partner = [...Array(len).keys()].some((f) => f !== e && (hv[f] > 1e-6) !== (rv[f] > 1e-6) && (hv[f] > 1e-6) === (rv[e] > 1e-6) &&
          Math.abs(z(f) - z(e)) <= tieTol * Math.max(1, Math.abs(z(e))));
        if (!partner) throw new Error(`group ${g}, line ${l}, entry ${e}: support differs (host ${hv[e]}, tensor ${rv[e]}) without a tie`);
        swaps++;
      }
    }
  }
  return swaps;
}

function expectAgree(host: Solved, ref: Solved, costHost: Float32Array, groups: number, m: number, n: number, column: boolean): number {
  expect(host.iterations).toBe(ref.iterations);
  expect(host.converged).toBe(ref.converged);
  expectAllClose(host.alpha, ref.alpha, 1e-5, 1e-5);
  expectAllClose(host.beta, ref.beta, 1e-5, 1e-5);
  expectAllClose(host.value, ref.value, 1e-5, 1e-5);
  expectAllClose(host.stats.slice(0, 1), ref.stats.slice(0, 1), 1e-5, 1e-4);
  return expectSamePlanUpToTies(host, ref, costHost, groups, m, n, column);
}

/** Newton's agreement (see the Newton cases below). */
function expectNewtonAgree(host: Solved, ref: Solved, groups: number, m: number, n: number): void {
  expect(host.iterations).toBe(ref.iterations);
  expect(host.converged).toBe(ref.converged);
  expectAllClose(host.value, ref.value, 1e-5, 1e-5);
  expectAllClose(host.plan, ref.plan, 2e-3, 1e-3);
  for (let g = 0; g < groups; g++) {
    const ah = host.alpha.slice(g * m, (g + 1) * m);
    const ar = ref.alpha.slice(g * m, (g + 1) * m);
    const c = ah.reduce((s, v, i) => s + v - ar[i], 0) / m;
    expectAllClose(ah.map((v) => v - c), ar, 2e-3, 1e-3);
    expectAllClose(host.beta.slice(g * n, (g + 1) * n).map((v) => v + c), ref.beta.slice(g * n, (g + 1) * n), 2e-3, 1e-3);
  }
}

/** `-softmax(scale * N(0, 1))`: the router's cost, sharp or flat. */
function gateCost(groups: number, m: number, n: number, seed: number, scale = 2): tf.Tensor3D {
  return tf.tidy(() => tf.neg(tf.softmax(tf.mul(tf.randomNormal([groups, m, n], 0, 1, 'float32', seed), scale))) as tf.Tensor3D);
}

interface Case {name: string; groups: number; m: number; n: number; spec: SparseOTProblemSpec; solver: () => SparseOTSolver; cost?: () => tf.Tensor3D}

const CASES: Case[] = [
  {name: 'routing shape (17 tokens, 4 experts, k 5), default solver', groups: 64, m: 17, n: 4, spec: {k: 5}, solver: () => alternating()},
  {name: '1 group, 1 token, 1 expert', groups: 1, m: 1, n: 1, spec: {k: 1}, solver: () => alternating()},
  {name: '1 token, 3 experts', groups: 2, m: 1, n: 3, spec: {k: 1}, solver: () => alternating()},
  {name: 'k = 1', groups: 5, m: 9, n: 3, spec: {k: 1}, solver: () => alternating({maxIterations: 6})},
  {name: 'k = m (smooth)', groups: 4, m: 6, n: 3, spec: {k: 6}, solver: () => alternating({maxIterations: 5})},
  {name: 'constant cost (ties everywhere)', groups: 3, m: 8, n: 4, spec: {k: 2}, solver: () => alternating(), cost: () => tf.fill([3, 8, 4], -0.25) as tf.Tensor3D},
  {name: 'dual formulation', groups: 6, m: 12, n: 4, spec: {k: 4}, solver: () => alternating({formulation: 'dual'})},
  {name: 'row sparsity (tokens choose 2 of 6)', groups: 5, m: 8, n: 6, spec: {k: 2, sparsity: 'row'}, solver: () => alternating()},
  {name: 'one start, polish phase (10 iterations, tolerance 1e-3)', groups: 8, m: 16, n: 4, spec: {k: 5}, solver: () => alternating({maxIterations: 10, tolerance: 1e-3, multiStart: false})},
  {name: 'two starts, gamma 0.3, 64 tokens x 8 experts', groups: 6, m: 64, n: 8, spec: {k: 10, gamma: 0.3}, solver: () => alternating({multiStart: true, maxIterations: 4})},
  {name: 'many experts (n 20 > MAX_ACTIVE 16)', groups: 2, m: 30, n: 20, spec: {k: 2}, solver: () => alternating()},
  {name: 'E 32: 64 tokens x 32 experts, capacity 2 (the MoE benchmark\'s layer)', groups: 4, m: 64, n: 32, spec: {k: 2}, solver: () => alternating()},
  {name: 'E 64: 64 tokens x 64 experts, capacity 1', groups: 2, m: 64, n: 64, spec: {k: 1}, solver: () => alternating()},
  {name: 'E 32, cost on a grid of 1/8 (exact ties within rows and columns)', groups: 3, m: 64, n: 32, spec: {k: 2}, solver: () => alternating(), cost: () => tf.tidy(() => tf.div(tf.round(tf.mul(gateCost(3, 64, 32, 21, 4), 8)), 8)) as tf.Tensor3D},
  {name: 'E 32, constant cost', groups: 2, m: 64, n: 32, spec: {k: 2}, solver: () => alternating(), cost: () => tf.fill([2, 64, 32], -1 / 32) as tf.Tensor3D},
  {name: 'adam (the released router: 20 steps, semi-dual)', groups: 16, m: 17, n: 4, spec: {k: 8}, solver: () => adam()},
  {name: 'adam on the dual', groups: 6, m: 12, n: 4, spec: {k: 4}, solver: () => adam({formulation: 'dual', maxIterations: 12})},
  {name: 'adam, row sparsity, k = 1', groups: 4, m: 8, n: 6, spec: {k: 1, sparsity: 'row'}, solver: () => adam({learningRate: 0.05})},
  {name: 'adam, gamma 0.3 and a cost in [-2, 0] (step in units of max(gamma, max |C|), per group)', groups: 4, m: 16, n: 4, spec: {k: 5, gamma: 0.3}, solver: () => adam(), cost: () => tf.tidy(() => tf.mul(gateCost(4, 16, 4, 5), 2)) as tf.Tensor3D},
  {name: 'adam, cost and gamma scaled by 1e20', groups: 3, m: 16, n: 4, spec: {k: 5, gamma: 1e20}, solver: () => adam(), cost: () => tf.tidy(() => tf.mul(gateCost(3, 16, 4, 11), 1e20)) as tf.Tensor3D},
];

describeBackends('host path = tensor path', (backend) => {
  test.each(CASES.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    expect(tf.getBackend()).toBe(backend);
    const cost = c.cost ? c.cost() : gateCost(c.groups, c.m, c.n, c.m * 31 + c.n);
    const solver = c.solver();
    const host = solve(cost, c.spec, solver, true);
    const ref = solve(cost, c.spec, solver, false);
    expectAgree(host, ref, cost.dataSync() as Float32Array, c.groups, c.m, c.n, c.spec.sparsity !== 'row');
    cost.dispose();
  });

  test('padding: a group with all-zero marginals gets a zero plan, the others are unchanged', () => {
    expect(tf.getBackend()).toBe(backend);
    const cost = gateCost(3, 6, 3, 5);
    const a = tf.tensor2d([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]);
    const b = tf.tensor2d([[4 / 3, 4 / 3, 4 / 3], [0, 0, 0], [2, 2, 2]]);
    const spec = {k: 2, a, b};
    const host = solve(cost, spec, alternating(), true);
    const ref = solve(cost, spec, alternating(), false);
    expectAgree(host, ref, cost.dataSync() as Float32Array, 3, 6, 3, true);
    expect(Array.from(host.plan.slice(18, 36)).every((v) => v === 0)).toBe(true);
    tf.dispose([cost, a, b]);
  });

  test('warm starts (alpha, beta; alternating and dual adam) and the single cheapest-column start of large groups', () => {
    expect(tf.getBackend()).toBe(backend);
    const cost = gateCost(4, 12, 4, 8);
    const warmAlpha = (): SolverInit => ({alpha: tf.randomNormal([4, 12], 0, 0.2, 'float32', 1)});
    const warmBeta = (): SolverInit => ({beta: tf.randomNormal([4], 0, 0.2, 'float32', 2)});
    for (const init of [warmAlpha, warmBeta]) {
      for (const solver of [alternating(), adam({formulation: 'dual'})]) {
        const host = solve(cost, {k: 4}, solver, true, init);
        const ref = solve(cost, {k: 4}, solver, false, init);
        expectAgree(host, ref, cost.dataSync() as Float32Array, 4, 12, 4, true);
      }
    }
    cost.dispose();
    // m * n > 65536 entries: one start, per group zero (k near b) or the cheapest column (k >= 1.125 b).
    const big = gateCost(1, 520, 128, 4, 4);
    for (const k of [5, 6]) {
      const host = solve(big, {k}, alternating({maxIterations: 2}), true);
      const ref = solve(big, {k}, alternating({maxIterations: 2}), false);
      expectAgree(host, ref, big.dataSync() as Float32Array, 1, 520, 128, true);
    }
    big.dispose();
  });

  test('identical supports on well-separated problems (tokens with distinct preferences, spare capacity)', () => {
    expect(tf.getBackend()).toBe(backend);
    // Each token prefers one expert strongly; capacity 3 > 8 / 4 = 2 tokens per expert on average.
    const cost = tf.tidy(() => tf.neg(tf.softmax(tf.mul(tf.oneHot(tf.tensor1d([0, 1, 2, 3, 0, 1, 2, 3], 'int32'), 4), 3).add(tf.randomUniform([8, 4], 0, 0.1, 'float32', 3)))));
    const host = solve(cost, {k: 3}, alternating(), true);
    const ref = solve(cost, {k: 3}, alternating(), false);
    expect(expectAgree(host, ref, cost.dataSync() as Float32Array, 1, 8, 4, true)).toBe(0);
    expect(Array.from(host.plan).map((v) => v > 0)).toEqual(Array.from(ref.plan).map((v) => v > 0));
    cost.dispose();
  });

  // Newton: CG runs in float64 on the host and in the backend's float32 matMuls on the device,
  // so the iterates agree to rounding, not bit for bit; the stopping rule is on the value, so the
  // plans agree to the convergence tolerance. The semi-dual is invariant to alpha + c, beta - c
  // (balanced marginals): potentials are compared after removing that shift.
  const NEWTON: Case[] = [
    {name: 'k = m, 17 tokens x 4 experts', groups: 16, m: 17, n: 4, spec: {k: 17}, solver: () => newton()},
    {name: 'k = m, 1 token x 3 experts', groups: 2, m: 1, n: 3, spec: {k: 1}, solver: () => newton()},
    {name: 'k = m, dual formulation', groups: 3, m: 12, n: 4, spec: {k: 12}, solver: () => newton({formulation: 'dual'})},
    {name: 'row sparsity, k = n', groups: 4, m: 8, n: 6, spec: {k: 6, sparsity: 'row'}, solver: () => newton()},
    {name: 'k < m, fixed budget (12 iterations, check every 2)', groups: 6, m: 16, n: 4, spec: {k: 5}, solver: () => newton({maxIterations: 12, checkEvery: 2})},
    {name: 'constant cost', groups: 2, m: 6, n: 3, spec: {k: 6}, solver: () => newton(), cost: () => tf.fill([2, 6, 3], -1 / 3) as tf.Tensor3D},
  ];
  test.each(NEWTON.map((c) => [c.name, c] as const))('newton: %s', (_name, c) => {
    expect(tf.getBackend()).toBe(backend);
    const cost = c.cost ? c.cost() : gateCost(c.groups, c.m, c.n, c.m * 17 + c.n);
    const solver = c.solver();
    for (const init of [undefined, () => ({beta: tf.randomNormal([c.n], 0, 0.1, 'float32', 4)})]) {
      const host = solve(cost, c.spec, solver, true, init);
      const ref = solve(cost, c.spec, solver, false, init);
      expectNewtonAgree(host, ref, c.groups, c.m, c.n);
    }
    cost.dispose();
  });

  test('newton: padding (a group with zero marginals) and a warm alpha', () => {
    expect(tf.getBackend()).toBe(backend);
    const cost = gateCost(3, 6, 3, 9);
    const a = tf.tensor2d([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]);
    const b = tf.tensor2d([[4 / 3, 4 / 3, 4 / 3], [0, 0, 0], [2, 2, 2]]);
    const init = (): SolverInit => ({alpha: tf.randomNormal([3, 6], 0, 0.1, 'float32', 5)});
    const host = solve(cost, {k: 6, a, b}, newton(), true, init);
    const ref = solve(cost, {k: 6, a, b}, newton(), false, init);
    expectNewtonAgree(host, ref, 3, 6, 3);
    expect(Array.from(host.plan.slice(18, 36)).every((v) => v === 0)).toBe(true);
    tf.dispose([cost, a, b]);
  });

  test('no tensor leaks on the host path', async () => {
    expect(tf.getBackend()).toBe(backend);
    const cost = gateCost(3, 10, 4, 2);
    const beta = tf.zeros([4]);
    await expectNoLeaks(() => {
      const p = sparseOTProblem(cost, {k: 3});
      alternating().solve(p).dispose();
      alternating({formulation: 'dual'}).solve(p, {beta}).dispose();
      newton({maxIterations: 4}).solve(p, {beta}).dispose();
      adam({formulation: 'dual', maxIterations: 3}).solve(p, {beta}).dispose();
      p.dispose();
    }, 3);
    tf.dispose([cost, beta]);
  });
});

/** Group g's slice of a `[groups, len]` flat result. */
const groupSlice = (x: Float32Array, g: number, groups: number): Float32Array => x.slice((g * x.length) / groups, ((g + 1) * x.length) / groups);

describeBackends("multiStart 'auto': one start only for groups of >= 32 experts at capacity factor 1, per group, on both paths", (backend) => {
  // [name, tokens m, experts n, k, two starts under 'auto', maxIterations].
  const RULE: Array<[string, number, number, number, boolean, number?]> = [
    ['1024 x 32, k 32 (capacity factor 1), a budget of 1 iteration (below 3: two starts)', 1024, 32, 32, true, 1],
    ['64 x 32, k 2 (capacity factor 1, the MoE benchmark layer at E 32)', 64, 32, 2, false],
    ['64 x 64, k 1 (capacity factor 1)', 64, 64, 1, false],
    ['64 x 32, k 3 (capacity factor 1.5)', 64, 32, 3, true],
    ['64 x 32, k 1 (capacity factor 0.5)', 64, 32, 1, true],
    ['64 x 8, k 8 (capacity factor 1, few experts)', 64, 8, 8, true],
    ['64 x 4, k 16 (capacity factor 1, few experts)', 64, 4, 16, true],
  ];
  test.each(RULE)("%s: 'auto' = the forced one-start or two-start run, bit for bit; host = tensor", (_name, m, n, k, twoStarts, maxIterations = 3) => {
    expect(tf.getBackend()).toBe(backend);
    const groups = m >= 1024 ? 1 : 3;
    const cost = gateCost(groups, m, n, m * 7 + n, 3);
    const byPath = [true, false].map((host) => {
      const auto = solve(cost, {k}, alternating({maxIterations}), host);
      const one = solve(cost, {k}, alternating({multiStart: false, maxIterations}), host);
      const two = solve(cost, {k}, alternating({multiStart: true, maxIterations}), host);
      const ref = twoStarts ? two : one;
      for (const key of ['plan', 'alpha', 'beta', 'value'] as const) expect(auto[key]).toEqual(ref[key]);
      expect(auto.converged).toBe(ref.converged);
      // Where 'auto' runs one start, the second start would not have ended higher on these problems.
      if (!twoStarts) expectAllClose(auto.value, two.value, 0, 0);
      // The budget case is informative: there the second start does change the result.
      if (maxIterations < 3) expect(two.value).not.toEqual(one.value);
      return auto;
    });
    expectAgree(byPath[0], byPath[1], cost.dataSync() as Float32Array, groups, m, n, true);
    cost.dispose();
  });

  test('a mixed batch (masked tokens put groups at capacity factor 1, below and above it): each group runs its own rule; host = tensor; no leaks', async () => {
    expect(tf.getBackend()).toBe(backend);
    // 4 groups of up to 72 tokens, 32 experts, k 2: active tokens 64, 72, 56, 64 (b = tokens / 32):
    // capacity factor 1, 0.89, 1.14, 1 -> one start for groups 0 and 3 only.
    const [groups, m, n, k] = [4, 72, 32, 2];
    const active = [64, 72, 56, 64];
    const twoStarts = active.map((t) => k !== t / n);
    const cost = gateCost(groups, m, n, 41, 3);
    const a = tf.tensor2d(active.map((t) => Array.from({length: m}, (_, i) => (i < t ? 1 : 0))));
    const b = tf.tensor2d(active.map((t) => Array(n).fill(t / n)));
    const spec = {k, a, b};
    const byPath = [true, false].map((host) => {
      const auto = solve(cost, spec, alternating(), host);
      const one = solve(cost, spec, alternating({multiStart: false}), host);
      const two = solve(cost, spec, alternating({multiStart: true}), host);
      for (let g = 0; g < groups; g++) {
        const ref = twoStarts[g] ? two : one;
        for (const key of ['plan', 'alpha', 'beta', 'value'] as const) expect(groupSlice(auto[key], g, groups)).toEqual(groupSlice(ref[key], g, groups));
      }
      return auto;
    });
    expectAgree(byPath[0], byPath[1], cost.dataSync() as Float32Array, groups, m, n, true);
    // No leaks on the tensor path (it batches both starts and selects per group) nor on the host path.
    for (const host of [false, true]) {
      const before = setHostSolvers(host);
      try {
        await expectNoLeaks(() => {
          const p = sparseOTProblem(cost, spec);
          alternating().solve(p).dispose();
          p.dispose();
        }, 3);
      } finally {
        setHostSolvers(before);
      }
    }
    tf.dispose([cost, a, b]);
  });
});
