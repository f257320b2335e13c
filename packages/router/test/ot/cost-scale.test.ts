/**
 * Issue 13 item 5: the sparse-OT plan at huge cost scales. Scaling the cost and gamma together
 * leaves the problem (and its plan) unchanged, so the plan of `(s * C, gamma = s)` must equal the
 * plan of `(C, gamma = 1)` for every s up to 1e30 (the oracle: the same problem at scale 1), with
 * no NaN, full mass and exact column marginals. Newton and the default (alternating) solver are
 * scale-free by construction; Adam takes its step in units of gamma, which makes its whole ascent
 * scale with the problem.
 */
import * as tf from '@tensorflow/tfjs';
import {solveSparseOT} from '../../src';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const SCALES = [1e8, 1e12, 1e20, 1e30];

function planAt(solver: 'auto' | 'newton' | 'adam', scale: number): number[][] {
  return tf.tidy(() => {
    const base = tf.randomNormal([32, 4], 0, 1, 'float32', 7);
    const r = solveSparseOT(tf.mul(base, scale), {k: 2, solver, gamma: scale});
    const plan = r.plan.arraySync() as number[][];
    r.dispose();
    return plan;
  });
}

function expectSamePlan(solver: 'auto' | 'newton' | 'adam'): void {
  expect(tf.getBackend()).toBe('cpu');
  const reference = planAt(solver, 1);
  for (const s of SCALES) {
    const plan = planAt(solver, s);
    expect(plan.flat().every(Number.isFinite)).toBe(true);
    const columns = [0, 1, 2, 3].map((e) => plan.reduce((a, row) => a + row[e], 0));
    for (const c of columns) expect(c).toBeCloseTo(32 / 4, 4);
    const diff = Math.max(...plan.flat().map((v, i) => Math.abs(v - reference.flat()[i])));
    expect(diff).toBeLessThan(1e-4);
  }
}

describe('sparse-OT plan under a shared scale of cost and gamma (|C|/gamma fixed, |C| up to 1e30)', () => {
  it('default solver: the plan of the scale-1 problem at every scale', () => expectSamePlan('auto'));
  it('newton: the plan of the scale-1 problem at every scale', () => expectSamePlan('newton'));
  it('adam: the plan of the scale-1 problem at every scale', () => expectSamePlan('adam'));
});
