/**
 * Gradients through the k-sparse plan: the implicit VJP (ot/implicit.ts) and the unrolled solver
 * (ot/unrolled.ts). Every test names its regime:
 * - smooth: k >= m (or an optimum that meets the row marginals): the plan is differentiable and
 *   the implicit VJP is its exact derivative;
 * - fixed-support: the routing case k < m, where the VJP is the derivative on the fixed support.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';

import {InvalidArgumentError, ShapeError} from '../../src/core/errors';
import {alternating, conjugateGradient, newton, sparseOTPlan, sparseOTPlanVJP} from '../../src/ot';
import {noGrad, stopGradient} from '../../src/core/stop-gradient';
import {kSparseProjectionFixedSupport, solveSparseOT, unrolledSparseOT} from '../../src/ot';
import {describeBackends, expectAllClose, expectNoLeaks} from '../helpers/backends';

/** A cost like the router's: `-softmax(logits)` with seeded normal logits. */
function negSoftmaxCost(m: number, n: number, seed: number, scale = 1): tf.Tensor2D {
  return tf.tidy(() => tf.neg(tf.softmax(tf.mul(tf.randomNormal([m, n], 0, 1, 'float32', seed), scale)))) as tf.Tensor2D;
}

function flat(t: tf.Tensor): number[] {
  return Array.from(t.dataSync());
}

/** Converged differentiable plan (Newton from zero, 12 line-searched steps). */
function unrolledLoss(cost: tf.Tensor, w: tf.Tensor, k: number, gamma: number): tf.Scalar {
  const {plan, alpha} = unrolledSparseOT(cost, {k, gamma, iterations: 12});
  alpha.dispose();
  const l = tf.sum(tf.mul(plan, w)) as tf.Scalar;
  plan.dispose();
  return l;
}

describeBackends('conjugateGradient', () => {
  test('solves a hand-worked SPD system: diag(2, 4) x = [2, 2] gives x = [1, 0.5]', () => {
    const d = tf.tensor2d([[2, 4]]);
    const x = conjugateGradient((v) => tf.mul(d, v) as tf.Tensor2D, tf.tensor2d([[2, 2]]), {iterations: 3});
    expectAllClose(flat(x), [1, 0.5], 1e-6, 1e-6);
    tf.dispose([d, x]);
  });

  test('a singular consistent system: the path Laplacian [[1,-1],[-1,1]] x = [1,-1] gives the minimum-norm x = [0.5,-0.5]', () => {
    // Started from 0, CG stays in range(L) = span([1, -1]); L [0.5, -0.5] = [1, -1].
    const apply = (v: tf.Tensor2D): tf.Tensor2D => tf.tidy(() => {
      const [a, b] = tf.split(v, 2, 1);
      return tf.concat([tf.sub(a, b), tf.sub(b, a)], 1) as tf.Tensor2D;
    });
    const x = conjugateGradient(apply, tf.tensor2d([[1, -1]]), {iterations: 5});
    expectAllClose(flat(x), [0.5, -0.5], 1e-6, 1e-6);
    x.dispose();
  });
});

describeBackends('stopGradient / noGrad', () => {
  test('d/dx [x * stopGradient(x)] at 3 is 3 (not 6)', () => {
    const g = tf.grad((x: tf.Tensor) => tf.mul(x, stopGradient(x)))(tf.scalar(3));
    expect(g.dataSync()[0]).toBe(3);
    g.dispose();
  });

  test('a comparison inside noGrad does not break tf.grad: d/dx relu-by-mask = mask', () => {
    const positive = noGrad((x: tf.Tensor) => tf.cast(tf.greater(x, 0), 'float32'));
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(x, positive(x))))(tf.tensor1d([-1, 2]));
    expectAllClose(flat(g), [0, 1], 0, 0);
    g.dispose();
  });
});

describeBackends('kSparseProjectionFixedSupport', () => {
  test('hand-worked column: [0.5, 0.3, -1], k = 2: tau = (0.5 + 0.3 - 1) / 2 = -0.1, y = [0.6, 0.4, 0]', () => {
    const y = kSparseProjectionFixedSupport(tf.tensor3d([[[0.5], [0.3], [-1]]]), 2);
    expectAllClose(flat(y), [0.6, 0.4, 0], 1e-6, 0);
    y.dispose();
  });

  test('k = 1 keeps the argmax with mass 1: column [0.2, 0.9, 0.5] -> [0, 1, 0]', () => {
    const y = kSparseProjectionFixedSupport(tf.tensor3d([[[0.2], [0.9], [0.5]]]), 1);
    expectAllClose(flat(y), [0, 1, 0], 1e-7, 0);
    y.dispose();
  });

  test('its Jacobian on the support is P(v) = v - mean over the support (here support {0, 1})', () => {
    // y = x - tau on the support, tau = (x0 + x1 - 1) / 2: d(sum w*y)/dx = w - mean(w) on S.
    const w = tf.tensor3d([[[3], [1], [7]]]);
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(kSparseProjectionFixedSupport(x as tf.Tensor3D, 2), w)))(
      tf.tensor3d([[[0.5], [0.3], [-1]]]));
    expectAllClose(flat(g), [1, -1, 0], 1e-6, 0);
    tf.dispose([w, g]);
  });
});

interface ProjectionCase {
  name: string;
  k: number;
  radius: number;
  x: number[][];
  y: number[][];
}

const projections = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'projection.json'), 'utf8')) as {cases: ProjectionCase[]};

describeBackends('kSparseProjectionFixedSupport vs exact float64 projections (fixtures/projection.json)', () => {
  // The fixture projects rows onto {y >= 0, sum y = radius, ||y||_0 <= k}; ours projects columns
  // onto the unit simplex, so we feed x^T / radius and compare radius * y^T. The supports are
  // unambiguous by construction (margins >= 1e-6), so float32 finds the same ones; values
  // compare at float32 precision (1e-6 absolute on entries <= radius 4, plus 1e-5 relative).
  for (const c of projections.cases) {
    test(`${c.name} (k ${c.k}, radius ${c.radius})`, () => {
      const x = tf.tidy(() => tf.expandDims(tf.div(tf.transpose(tf.tensor2d(c.x)), c.radius), 0)) as tf.Tensor3D;
      const y = tf.tidy(() => tf.transpose(tf.squeeze(tf.mul(kSparseProjectionFixedSupport(x, c.k), c.radius), [0])));
      expectAllClose(y.arraySync() as number[][], c.y, 1e-6, 1e-5);
      tf.dispose([x, y]);
    });
  }
});

describeBackends('implicit VJP of the plan', () => {
  // Tolerances. The VJP is a float32 computation of a linear solve whose condition number on
  // these supports is below ~1e2: entries of size ~1 carry relative errors ~1e2 * 6e-8 plus CG's
  // residual (frozen at 1e-6 relative), so 2e-4 absolute leaves a 10x margin.
  const ATOL = 2e-4;

  test('smooth regime (k = m = 12, n = 3, gamma 2): implicit VJP equals autodiff through the converged unrolled solver', () => {
    const cost = negSoftmaxCost(12, 3, 3);
    const w = tf.randomNormal([12, 3], 0, 1, 'float32', 4);
    const unrolled = tf.grad((c: tf.Tensor) => unrolledLoss(c, w, 12, 2))(cost);
    const {plan, alpha} = unrolledSparseOT(cost, {k: 12, gamma: 2, iterations: 12});
    // The plan meets the row marginals (the smooth regime's defining property).
    expectAllClose(flat(tf.sum(plan, 1)), new Array(12).fill(1), 1e-5, 0);
    const implicit = sparseOTPlanVJP(plan, w, {gamma: 2});
    expectAllClose(flat(implicit), flat(unrolled), ATOL, 1e-3);
    // A non-trivial gradient (not a vacuous agreement of zeros).
    expect(Math.max(...flat(implicit).map(Math.abs))).toBeGreaterThan(0.1);
    tf.dispose([cost, w, unrolled, plan, alpha, implicit]);
  });

  test('smooth regime (k = m): the semi-dual and dual systems, and CG on experts vs on tokens, give the same VJP', () => {
    // Independent linear systems: the Laplacian D - M S^+ M^T (semi-dual) and the signless
    // Laplacian [[D, M], [M^T, S]] (dual) must give the same derivative of the same plan.
    const cost = negSoftmaxCost(12, 3, 5);
    const w = tf.randomNormal([12, 3], 0, 1, 'float32', 6);
    const {plan, alpha} = unrolledSparseOT(cost, {k: 12, gamma: 2, iterations: 12});
    const semiExperts = sparseOTPlanVJP(plan, w, {gamma: 2});
    const semiTokens = sparseOTPlanVJP(plan, w, {gamma: 2, space: 'tokens'});
    const dualExperts = sparseOTPlanVJP(plan, w, {gamma: 2, formulation: 'dual'});
    const dualTokens = sparseOTPlanVJP(plan, w, {gamma: 2, formulation: 'dual', space: 'tokens'});
    for (const other of [semiTokens, dualExperts, dualTokens]) expectAllClose(flat(other), flat(semiExperts), ATOL, 1e-3);
    tf.dispose([cost, w, plan, alpha, semiExperts, semiTokens, dualExperts, dualTokens]);
  });

  test('fixed-support regime (m 12, n 3, k 6): CG on experts and on tokens agree, and the VJP is zero off the support', () => {
    const cost = negSoftmaxCost(12, 3, 7);
    const w = tf.randomNormal([12, 3], 0, 1, 'float32', 8);
    const r = solveSparseOT(cost, {k: 6, gamma: 1});
    const a = sparseOTPlanVJP(r.plan, w, {gamma: 1});
    const b = sparseOTPlanVJP(r.plan, w, {gamma: 1, space: 'tokens'});
    expectAllClose(flat(a), flat(b), ATOL, 1e-3);
    const p = flat(r.plan);
    flat(a).forEach((v, i) => {
      if (p[i] === 0) expect(Math.abs(v)).toBe(0);
    });
    tf.dispose([cost, w, a, b]);
    r.dispose();
  });

  test('integral plan (fixed-support; m 12, n 3, k = m / n = 4, gamma 0.01): the plan is 0/1 and its VJP is exactly 0', () => {
    // Token i costs -1 on expert i % 3 and 0 elsewhere: every expert has exactly 4 = k tokens that
    // prefer it, so the optimum puts T = 1 on those pairs (plan cost -12 + (0.01 / 2) * 12).
    // Every token has degree 1, so H = (1/gamma)(I - blockwise means) and u = (1/gamma) P(G):
    // w = G_ij on each token's single column solves H w = u, w - G_j vanishes on the support and
    // dL/dC = (1/gamma) P_j(w - G_j) = 0: the row constraint pins T_ij = 1 whatever C does.
    const costs: number[][] = [];
    for (let i = 0; i < 12; i++) costs.push([0, 1, 2].map((j) => (j === i % 3 ? -1 : 0)));
    const cost = tf.tensor2d(costs);
    const w = tf.randomNormal([12, 3], 0, 1, 'float32', 10);
    const r = solveSparseOT(cost, {k: 4, gamma: 0.01});
    const values = flat(r.plan);
    values.forEach((v, i) => expect(Math.abs(v - (i % 3 === Math.floor(i / 3) % 3 ? 1 : 0))).toBeLessThan(1e-5));
    const g = sparseOTPlanVJP(r.plan, w, {gamma: 0.01});
    expect(Math.max(...flat(g).map(Math.abs))).toBeLessThan(1e-3);
    tf.dispose([cost, w, g]);
    r.dispose();
  });

  test('Danskin, inner max at any k (k in 1, 3, 6, 12): dS(alpha, C)/dC at fixed alpha is the plan', () => {
    // S(alpha, C) = <alpha, a> - sum_j b_j max_k(alpha - C_j; b_j) and d max_k / dx = y*, so
    // dS/dC_j = b_j y*_j = T_j (exactly; the derivative of y* drops out by its optimality).
    const m = 12;
    const n = 3;
    const cost = negSoftmaxCost(m, n, 22);
    for (const k of [1, 3, 6, 12]) {
      const r = solveSparseOT(cost, {k, gamma: 1});
      const alpha = r.alpha;
      const S = (c: tf.Tensor): tf.Scalar => tf.tidy(() => {
        const b = m / n;
        const x = tf.div(tf.sub(tf.expandDims(alpha, 1), c), b); // gamma = 1
        const y = kSparseProjectionFixedSupport(tf.expandDims(x, 0) as tf.Tensor3D, k).squeeze([0]);
        const maxK = tf.sub(tf.sum(tf.mul(y, tf.sub(tf.expandDims(alpha, 1), c)), 0), tf.mul(b / 2, tf.sum(tf.square(y), 0)));
        return tf.sub(tf.sum(alpha), tf.mul(b, tf.sum(maxK))) as tf.Scalar;
      });
      const g = tf.grad(S)(cost);
      expectAllClose(flat(g), flat(r.plan), 1e-5, 1e-5);
      g.dispose();
      r.dispose();
    }
    cost.dispose();
  });

  test('Danskin, optimal value (smooth regime k = m = 12, gamma 2): central differences of V(C) equal <T, D>', () => {
    const m = 12;
    const n = 3;
    const gamma = 2;
    const cost = negSoftmaxCost(m, n, 11);
    const solve = (c: tf.Tensor): {value: number; plan: tf.Tensor} => {
      const {plan, alpha} = unrolledSparseOT(c, {k: m, gamma, iterations: 12});
      const value = tf.tidy(() => tf.add(tf.sub(tf.sum(alpha), tf.sum(tf.mul(plan, tf.sub(tf.expandDims(alpha, 1), c)))),
        tf.mul(gamma / 2, tf.sum(tf.square(plan)))));
      const v = value.dataSync()[0];
      tf.dispose([value, alpha]);
      return {value: v, plan};
    };
    const base = solve(cost);
    const dir = tf.randomNormal([m, n], 0, 1, 'float32', 12);
    const h = 1e-2;
    const plus = tf.add(cost, tf.mul(dir, h));
    const minus = tf.sub(cost, tf.mul(dir, h));
    const up = solve(plus);
    const down = solve(minus);
    const fd = (up.value - down.value) / (2 * h);
    const exact = tf.sum(tf.mul(base.plan, dir)).dataSync()[0];
    // |V| ~ 3 in float32 carries ~3e-7 rounding per value: / (2h) gives ~3e-5. V is piecewise
    // quadratic with curvature ~ 1/gamma, so the central difference is exact on one piece; the
    // support does not change at h = 1e-2 here (all 36 entries stay positive). Hence 1e-3.
    expect(Math.abs(fd - exact)).toBeLessThan(1e-3);
    expect(Math.abs(exact)).toBeGreaterThan(0.05);
    tf.dispose([cost, dir, plus, minus, base.plan, up.plan, down.plan]);
  });

  test('sparseOTPlan: tf.grad through the solver equals sparseOTPlanVJP on its plan (fixed-support, k 6)', () => {
    const cost = negSoftmaxCost(12, 3, 13);
    const w = tf.randomNormal([12, 3], 0, 1, 'float32', 14);
    const g = tf.grad((c: tf.Tensor) => tf.sum(tf.mul(sparseOTPlan(c, {k: 6, gamma: 1}, alternating()), w)))(cost); // the solver solveSparseOT picks (k < m)
    const r = solveSparseOT(cost, {k: 6, gamma: 1});
    const direct = sparseOTPlanVJP(r.plan, w, {gamma: 1});
    expectAllClose(flat(g), flat(direct), 1e-6, 1e-5);
    tf.dispose([cost, w, g, direct]);
    r.dispose();
  });

  test('batched over groups: each group equals its own VJP', () => {
    const c0 = negSoftmaxCost(8, 2, 15);
    const c1 = negSoftmaxCost(8, 2, 16);
    const w = tf.randomNormal([2, 8, 2], 0, 1, 'float32', 17);
    const p0 = unrolledSparseOT(c0, {k: 8, gamma: 2});
    const p1 = unrolledSparseOT(c1, {k: 8, gamma: 2});
    const both = sparseOTPlanVJP(tf.stack([p0.plan, p1.plan]), w, {gamma: 2});
    const [w0, w1] = tf.unstack(w);
    const g0 = sparseOTPlanVJP(p0.plan, w0, {gamma: 2});
    const g1 = sparseOTPlanVJP(p1.plan, w1, {gamma: 2});
    expectAllClose(flat(both), [...flat(g0), ...flat(g1)], 1e-5, 1e-4);
    tf.dispose([c0, c1, w, p0.plan, p0.alpha, p1.plan, p1.alpha, both, w0, w1, g0, g1]);
  });

  test('row sparsity is the transposed problem', () => {
    const cost = negSoftmaxCost(6, 4, 18);
    const w = tf.randomNormal([6, 4], 0, 1, 'float32', 19);
    const {plan, alpha} = unrolledSparseOT(cost, {k: 2, gamma: 1, sparsity: 'row'});
    const rowG = sparseOTPlanVJP(plan, w, {gamma: 1, sparsity: 'row'});
    const colG = sparseOTPlanVJP(plan.transpose(), w.transpose(), {gamma: 1});
    expectAllClose(flat(rowG), flat(colG.transpose()), 1e-6, 1e-5);
    tf.dispose([cost, w, plan, alpha, rowG, colG]);
  });

  test('scale: the VJP is linear in the upstream gradient, also for tiny upstream values (1e-12)', () => {
    // CG solves for the unit-norm right-hand side and scales back, so a tiny loss scale neither
    // freezes CG at an absolute floor nor underflows.
    const cost = negSoftmaxCost(12, 3, 23);
    const w = tf.randomNormal([12, 3], 0, 1, 'float32', 24);
    const r = solveSparseOT(cost, {k: 6});
    const g = sparseOTPlanVJP(r.plan, w);
    const tiny = sparseOTPlanVJP(r.plan, tf.mul(w, 1e-12));
    expectAllClose(flat(tf.mul(tiny, 1e12)), flat(g), 1e-5, 1e-4);
    tf.dispose([cost, w, g, tiny]);
    r.dispose();
  });

  test('fixed-support regime (m 64, n 4, k 20): autodiff through unrolled steps warm-started at the solver potentials is finite', () => {
    // Regression: a rejected line-search step (size 0) multiplied a CG derivative whose
    // denominators had underflowed, and 0 * inf gave NaN.
    const cost = tf.tidy(() => tf.neg(tf.softmax(tf.randomNormal([4, 64, 4], 0, 0.1, 'float32', 2))));
    const w = tf.randomNormal([4, 64, 4], 0, 1, 'float32', 9);
    const r = solveSparseOT(cost, {k: 20, gamma: 1});
    const g = tf.grad((c: tf.Tensor) => {
      const u = unrolledSparseOT(c, {k: 20, gamma: 1, init: r.alpha, iterations: 3});
      u.alpha.dispose();
      return tf.sum(tf.mul(u.plan, w));
    })(cost);
    expect(flat(g).every(Number.isFinite)).toBe(true);
    tf.dispose([cost, w, g]);
    r.dispose();
  });

  test('no leaks: the VJP and a gradient through sparseOTPlan', async () => {
    const cost = negSoftmaxCost(12, 3, 20);
    const w = tf.randomNormal([12, 3], 0, 1, 'float32', 21);
    const r = solveSparseOT(cost, {k: 6});
    await expectNoLeaks(() => tf.dispose(sparseOTPlanVJP(r.plan, w)), 5);
    await expectNoLeaks(() => tf.dispose(tf.grad((c: tf.Tensor) => tf.sum(tf.mul(sparseOTPlan(c, {k: 6}, alternating()), w)))(cost)), 3);
    await expectNoLeaks(() => tf.dispose(tf.grad((c: tf.Tensor) => unrolledLoss(c, w, 6, 1))(cost)), 3);
    tf.dispose([cost, w]);
    r.dispose();
  });

  test('bad input: typed errors that name the argument and echo the value', () => {
    const p = tf.zeros([4, 2]);
    expect(() => sparseOTPlanVJP(p, tf.zeros([4, 3]))).toThrow(ShapeError);
    expect(() => sparseOTPlanVJP(p, tf.zeros([4, 3]))).toThrow(
      "sparseOTPlanVJP: Expected upstream to be a tensor of the plan's shape [4,2], but got [4,3].");
    expect(() => sparseOTPlanVJP(p, p, {gamma: -1})).toThrow('sparseOTPlanVJP: Expected gamma to be a finite number > 0, but got -1.');
    expect(() => sparseOTPlanVJP(p, p, {space: 'rows' as never})).toThrow(InvalidArgumentError);
    expect(() => sparseOTPlanVJP(p, p, {space: 'rows' as never})).toThrow(
      "sparseOTPlanVJP: Expected space to be one of 'experts', 'tokens', but got \"rows\".");
    expect(() => unrolledSparseOT(p, {k: 0})).toThrow('unrolledSparseOT: Expected k to be a positive integer, but got 0.');
    expect(() => sparseOTPlanVJP(tf.zeros([4]), tf.zeros([4]))).toThrow(
      'sparseOTPlanVJP: Expected plan to be a tensor of rank 2 [m, n] or rank 3 [groups, m, n], but got [4].');
    tf.dispose(p);
  });
});

interface GradientCase {
  name: string;
  regime: 'smooth' | 'fixed-support';
  m: number;
  n: number;
  k: number;
  gamma: number;
  C: number[][];
  G: number[][];
  plan: number[][];
  support: number[][];
  vjpFiniteDifference: number[][];
  valueGradient: {finiteDifference: number[][]; expected: number[][]};
}

const gradients = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'gradients.json'), 'utf8')) as {cases: GradientCase[]};

describeBackends('implicit VJP vs float64 central differences of exact re-solves (fixtures/gradients.json)', () => {
  // Tolerance: the plan and G enter in float32 (relative rounding 6e-8); the support solve on
  // these graphs has a condition number below ~1e3, so the float32 VJP carries relative errors
  // up to ~6e-5 on entries of size <= ~2, plus CG's residual floor (1e-6 relative). 2e-4
  // absolute + 1e-3 relative covers that with margin; the fixtures' own FD-vs-formula gap is
  // <= 1.8e-9, so the tolerance is all float32.
  const ATOL = 2e-4;
  const RTOL = 1e-3;
  for (const c of gradients.cases) {
    test(`${c.regime} regime, ${c.name}: VJP on the fixture's plan equals the float64 finite differences`, () => {
      const plan = tf.tensor2d(c.plan);
      const g = tf.tensor2d(c.G);
      const support = tf.tensor2d(c.support);
      const vjp = sparseOTPlanVJP(plan, g, {gamma: c.gamma, support});
      expectAllClose(vjp.arraySync() as number[][], c.vjpFiniteDifference, ATOL, RTOL);
      // Without the explicit support (plan > 0 in float32) the result is the same.
      const vjp2 = sparseOTPlanVJP(plan, g, {gamma: c.gamma});
      expectAllClose(vjp2.arraySync() as number[][], c.vjpFiniteDifference, ATOL, RTOL);
      tf.dispose([plan, g, support, vjp, vjp2]);
    });
    if (c.regime === 'smooth') {
      test(`smooth regime, ${c.name}: end to end, tf.grad through sparseOTPlan (Newton) equals the finite differences`, () => {
        const cost = tf.tensor2d(c.C);
        const g = tf.tensor2d(c.G);
        // Smooth regime (k = m): the solver solveSparseOT picks is Newton.
        const solver = newton({maxIterations: 100, tolerance: 1e-7});
        const grad = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(sparseOTPlan(x, {k: c.k, gamma: c.gamma}, solver), g)))(cost);
        expectAllClose(grad.arraySync() as number[][], c.vjpFiniteDifference, ATOL, RTOL);
        // Danskin: our solver's plan is the gradient of the optimal value, whose float64 central
        // differences the fixture holds (float32 plan of entries <= ~2: 1e-4 absolute).
        const r = solveSparseOT(cost, {k: c.k, gamma: c.gamma, maxIterations: 100, tolerance: 1e-7});
        expectAllClose(r.plan.arraySync() as number[][], c.valueGradient.finiteDifference, 1e-4, 0);
        r.dispose();
        tf.dispose([cost, g, grad]);
      });
    }
  }
});
