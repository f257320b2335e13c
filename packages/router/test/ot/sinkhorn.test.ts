/** Log-domain Sinkhorn against an independent float64 scaling-form Sinkhorn and closed forms. */
import * as tf from '@tensorflow/tfjs';
import {sinkhorn} from '../../src/ot';
import {describeBackends, expectAllClose, expectNoLeaks} from '../helpers/backends';

/** Classic scaling-form Sinkhorn in float64 (K = exp(-C / eps), u = a / Kv, v = b / K^T u). */
function scalingSinkhorn(C: number[][], a: number[], b: number[], eps: number, iters = 5000): number[][] {
  const m = C.length;
  const n = C[0].length;
  const K = C.map((r) => r.map((c) => Math.exp(-c / eps)));
  let u = a.map(() => 1);
  let v = b.map(() => 1);
  for (let t = 0; t < iters; t++) {
    u = a.map((ai, i) => ai / K[i].reduce((s, kij, j) => s + kij * v[j], 0));
    v = b.map((bj, j) => bj / K.reduce((s, row, i) => s + row[j] * u[i], 0));
  }
  return Array.from({length: m}, (_, i) => Array.from({length: n}, (_, j) => u[i] * K[i][j] * v[j]));
}

describeBackends('sinkhorn', () => {
  const Cv = [[0.2, 0.9, 0.4], [0.7, 0.1, 0.5], [0.3, 0.6, 0.8], [0.9, 0.4, 0.2]];
  const a = [1, 1, 1, 1];
  const b = [4 / 3, 4 / 3, 4 / 3];

  it('matches a float64 scaling-form Sinkhorn (epsilon 0.2) and meets the marginals', () => {
    const C = tf.tensor2d(Cv);
    const r = sinkhorn(C, {epsilon: 0.2, tolerance: 1e-6, maxIterations: 2000});
    expect(r.converged).toBe(true);
    expectAllClose(r.plan.dataSync(), scalingSinkhorn(Cv, a, b, 0.2).flat(), 2e-5, 1e-4);
    expect(r.marginalError).toBeLessThan(1e-5);
    // value = <P, C> + eps * sum P log P at the optimum
    const P = r.plan.arraySync() as number[][];
    let primal = 0;
    P.forEach((row, i) => row.forEach((p, j) => { primal += p * Cv[i][j] + 0.2 * p * Math.log(p); }));
    expect(Math.abs(r.value.dataSync()[0] - primal)).toBeLessThan(1e-4);
    C.dispose();
    r.dispose();
  });

  it('stays finite for a small epsilon (log domain), and a constant cost gives a b^T / sum(a)', () => {
    const C = tf.tensor2d(Cv);
    const r = sinkhorn(C, {epsilon: 1e-3, maxIterations: 300, tolerance: 1e-5});
    expect(Array.from(r.plan.dataSync()).every(Number.isFinite)).toBe(true);
    // After the last g update the columns are exact, even where a plain exp(-C / eps) underflows.
    const cols = tf.sum(r.plan, 0);
    expectAllClose(cols.dataSync(), b, 1e-4, 1e-4);
    cols.dispose();
    const flat = tf.fill([2, 4, 3], 0.7);
    const rf = sinkhorn(flat, {epsilon: 0.05});
    expect(rf.plan.shape).toEqual([2, 4, 3]);
    expectAllClose(rf.plan.dataSync(), new Array(24).fill(1 / 3), 1e-5);
    tf.dispose([C, flat]);
    r.dispose();
    rf.dispose();
  });

  it('does not leak', async () => {
    const C = tf.tensor2d(Cv);
    await expectNoLeaks(() => sinkhorn(C, {epsilon: 0.1, maxIterations: 20}).dispose(), 10);
    C.dispose();
  });
});
