/**
 * Every decision a solver takes is taken per group (issue 9, item 1): a group's plan is the same,
 * bit for bit on one backend, whatever the batch around it (its size, its neighbours, their
 * order), for every solver, formulation, direction and `hostReads` setting. The oracle is the
 * group solved alone: a batched solve must reproduce it exactly (`toEqual` on the float32 bits).
 */
import * as tf from '@tensorflow/tfjs';
import {moe} from '../../src/moe/moe-layer';
import '../../src/routers';
import '../../src/routers/sparse-ot';
import {adam, alternating, newton, sinkhornSolver, sparseOTProblem, type SparseOTProblemSpec, type SparseOTSolver} from '../../src/ot';
import {describeBackends} from '../helpers/backends';

/** A seeded permutation of 0..n-1. */
function shuffled(n: number, seed: number): number[] {
  const p = [...Array(n).keys()];
  let s = seed;
  for (let i = n - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const j = s % (i + 1);
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** Plans `[groups][m * n]` of the groups `idx` of `cost`, solved as one batch. */
function plansOf(cost: tf.Tensor3D, idx: number[], spec: SparseOTProblemSpec, solver: SparseOTSolver): Float32Array[] {
  const sub = tf.gather(cost, idx);
  const problem = sparseOTProblem(sub, spec);
  const out = solver.solve(problem);
  const flat = out.plan.dataSync() as Float32Array;
  const size = flat.length / idx.length;
  const plans = idx.map((_, g) => flat.slice(g * size, (g + 1) * size));
  out.dispose();
  problem.dispose();
  sub.dispose();
  return plans;
}

const SOLVERS: Array<[string, () => SparseOTSolver]> = [
  ['alternating', () => alternating()],
  ['alternating (10 iterations, polish)', () => alternating({maxIterations: 10, tolerance: 1e-3})],
  ['alternating dual', () => alternating({formulation: 'dual'})],
  ['newton', () => newton({maxIterations: 12, checkEvery: 2})],
  ['newton dual', () => newton({maxIterations: 6, formulation: 'dual', checkEvery: 1})],
  ['adam', () => adam()],
  ['adam dual', () => adam({formulation: 'dual'})],
  ['sinkhorn', () => sinkhornSolver({epsilon: 0.1, maxIterations: 30, checkEvery: 5})],
];

describeBackends('batch independence, solver level', () => {
  // Groups of 8 tokens x 4 experts with gates of varied sharpness (some groups converge early,
  // some late), so that per-group stopping decisions differ between groups.
  const G = 300;
  let cost: tf.Tensor3D;
  beforeAll(() => {
    cost = tf.tidy(() => {
      const scale = tf.reshape(tf.linspace(0.2, 8, G), [G, 1, 1]);
      return tf.neg(tf.softmax(tf.mul(tf.randomNormal([G, 8, 4], 0, 1, 'float32', 11), scale))) as tf.Tensor3D;
    });
  });
  afterAll(() => cost.dispose());

  /** Asserts that groups `probe` solve as alone inside batches of the first `sizes` groups and of all of them shuffled. */
  function expectIndependent(spec: SparseOTProblemSpec, solver: SparseOTSolver, sizes: number[], probe: number[], total: number): void {
    const alone = probe.map((g) => plansOf(cost, [g], spec, solver)[0]);
    for (const size of sizes) {
      const plans = plansOf(cost, [...Array(size).keys()], spec, solver);
      probe.forEach((g, i) => {
        if (g < size) expect(plans[g]).toEqual(alone[i]);
      });
    }
    const perm = shuffled(total, 5);
    const plans = plansOf(cost, perm, spec, solver);
    probe.forEach((g, i) => expect(plans[perm.indexOf(g)]).toEqual(alone[i]));
  }

  test('the default solver (alternating): batch sizes 1, 2, 127, 128, 129, 300 and shuffled neighbours', () => {
    expectIndependent({k: 3}, alternating(), [2, 127, 128, 129, 300], [0, 1, 126, 127, 128, 299], G);
  });

  test.each(SOLVERS)('%s, column and row sparsity, with and without host reads: batch sizes 1, 2, 17, 40 and shuffled', (_name, make) => {
    for (const sparsity of ['column', 'row'] as const) {
      for (const hostReads of [true, false]) {
        expectIndependent({k: sparsity === 'column' ? 3 : 2, sparsity, hostReads}, make(), [2, 17, 40], [0, 1, 16, 39], 40);
      }
    }
  });
});

describeBackends('batch independence, through the moe layer (per-example groups)', (backend) => {
  test('64 tokens, 8 experts: each example\'s output is the lone example\'s, at batch sizes 1, 2, 127, 128, 129, 300 and shuffled', () => {
    expect(tf.getBackend()).toBe(backend);
    // 300 * 64 * 8 crosses the old batch-wide multi-start switch (groups * tokens * experts <= 65536).
    const B = 300;
    const d = 4;
    const layer = moe({numExperts: 8, hiddenDim: 4, router: 'sparse-ot' as never, groupingMode: 'per-example', capacityFactor: 1.25});
    const x = tf.randomNormal([B, 64, d], 0, 1, 'float32', 3) as tf.Tensor3D;
    const outputs = (idx: number[]): Float32Array[] => tf.tidy(() => {
      const y = layer.apply(tf.gather(x, idx), {training: false}) as tf.Tensor;
      const flat = y.dataSync() as Float32Array;
      const size = flat.length / idx.length;
      return idx.map((_, i) => flat.slice(i * size, (i + 1) * size));
    });
    const probe = [0, 1, 5, 126, 127, 128, 299];
    const alone = probe.map((g) => outputs([g])[0]);
    const check = (idx: number[]): void => {
      const got = outputs(idx);
      probe.forEach((g, i) => {
        const at = idx.indexOf(g);
        if (at >= 0) expect(got[at]).toEqual(alone[i]);
      });
    };
    for (const size of [2, 127, 128, 129, 300]) check([...Array(size).keys()]);
    check(shuffled(B, 9).slice(0, 129)); // shuffled neighbours drawn from the whole batch
    x.dispose();
    layer.weights.forEach((w) => w.dispose());
  });
});
