/**
 * The host path's fast kernels against their plain definitions, bit for bit (Object.is on every
 * output): the alternating solver's row best response (host-alternating.ts: the first four ranks
 * and the bound that skips the rest, register ranking) against the full loop over
 * `K = min(n, 16)` entry points ranked by `topKPositions`; the semi-dual evaluation
 * (host-evaluate.ts: the finite-column pass over the support only, its top k in one pass with the
 * shift for k = 1, 2, up to 64 and above) against the general loop over
 * every entry with `projectSlice`. Inputs are built to tie: values on a coarse grid, constant
 * rows, zero marginals, one column or one row, n at and around the ranking sizes (4, 5, 16, 17),
 * E 32 and 64, negative `ell` (no bound), NaN and infinite values, float32 and float64 sums.
 * No backend is involved (host arrays only).
 */
import type {HostProblem} from '../../src/ot/solvers/host';
import {RowScratch, rowBestResponseHost} from '../../src/ot/solvers/host-alternating';
import {HostSemidualEval} from '../../src/ot/solvers/host-evaluate';
import {ProjectionScratch, projectSlice, topKPositions} from '../../src/ot/solvers/host-projection';

const f32 = Math.fround;

/** A seeded uniform generator on [0, 1). */
function generator(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** The row best response as lifted-dual.ts defines it: K ranked entry points, every rank tested. */
function rowBestResponseReference(hp: HostProblem, g: number, beta: Float32Array, ell: Float32Array, out: Float32Array): void {
  const {mi, ni, gamma} = hp;
  const K = Math.min(ni, 16);
  const negEntry = new Float64Array(ni);
  const order = new Int32Array(ni);
  for (let i = 0; i < mi; i++) {
    const c0 = (g * mi + i) * ni;
    for (let j = 0; j < ni; j++) negEntry[j] = f32(f32(beta[j] - ell[j]) - hp.costRows[c0 + j]);
    topKPositions(negEntry, 0, ni, K, order);
    const ga = f32(hp.a[g * mi + i] * gamma);
    let cs = 0;
    let count = 0;
    let csR = 0;
    let minNes = Infinity;
    for (let r = 0; r < K; r++) {
      const nes = negEntry[order[r]];
      const w = f32(ell[order[r]] + nes);
      cs = f32(cs + w);
      if (f32(f32(ga + f32(r * nes)) - f32(cs - w)) > 0) {
        count++;
        csR = hp.f32Sums ? f32(csR + w) : csR + w;
        if (nes < minNes) minNes = nes;
      }
    }
    out[i] = count > 0 ? Math.max(-minNes, f32(f32(ga - f32(csR)) / count)) : f32(-negEntry[order[0]] - gamma);
  }
}

/** The semi-dual evaluation of one group over every entry (semidual.ts, in float32 steps). */
function evaluateReference(hp: HostProblem, g: number, alpha: Float32Array): {planT: Float64Array; support: Uint8Array; tau: Float64Array; grad: Float64Array; value: number} {
  const {mi, ni, k, gamma} = hp;
  const add = (s: number, x: number): number => (hp.f32Sums ? f32(s + x) : s + x);
  const planT = new Float64Array(ni * mi);
  const support = new Uint8Array(ni * mi);
  const tau = new Float64Array(ni);
  const grad = new Float64Array(mi);
  const x = new Float64Array(mi);
  const scratch = new ProjectionScratch(mi);
  let sAlpha = 0;
  for (let i = 0; i < mi; i++) sAlpha = add(sAlpha, f32(alpha[i] * hp.a[g * mi + i]));
  let sPlanZ = 0;
  let sSquare = 0;
  for (let j = 0; j < ni; j++) {
    const bj = hp.b[g * ni + j];
    const den = f32((bj > 0 ? bj : 1) * gamma);
    const c0 = (g * ni + j) * mi;
    for (let i = 0; i < mi; i++) x[i] = f32(f32(alpha[i] - hp.costT[c0 + i]) / den);
    tau[j] = projectSlice(hp, x, mi, k, scratch, planT, j * mi, support);
    for (let i = 0; i < mi; i++) {
      const p = f32(bj * planT[j * mi + i]);
      planT[j * mi + i] = p;
      if (p !== 0) {
        sPlanZ = add(sPlanZ, f32(p * f32(alpha[i] - hp.costT[c0 + i])));
        sSquare = add(sSquare, f32(p * p));
        grad[i] = add(grad[i], p);
      }
    }
  }
  for (let i = 0; i < mi; i++) grad[i] = f32(hp.a[g * mi + i] - f32(grad[i]));
  return {planT, support, tau, grad, value: f32(f32(f32(sAlpha) - f32(sPlanZ)) + f32(f32(gamma / 2) * f32(sSquare)))};
}

function expectSameBits(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) throw new Error(`${what}[${i}]: ${actual[i]}, expected ${expected[i]}`);
  }
}

/** A random problem of `groups` groups, `mi x ni`, with values on a grid of `1 / grid` (0: no grid). */
function problem(rand: () => number, groups: number, mi: number, ni: number, k: number, grid: number, f32Sums: boolean): HostProblem {
  const q = (v: number): number => f32(grid > 0 ? Math.round(v * grid) / grid : v);
  const costT = new Float32Array(groups * ni * mi);
  const costRows = new Float32Array(groups * mi * ni);
  const constant = rand() < 0.1;
  for (let g = 0; g < groups; g++) {
    for (let i = 0; i < mi; i++) {
      for (let j = 0; j < ni; j++) {
        const c = constant ? -0.25 : q(-rand());
        costRows[(g * mi + i) * ni + j] = c;
        costT[(g * ni + j) * mi + i] = c;
      }
    }
  }
  const a = Float32Array.from({length: groups * mi}, () => (rand() < 0.1 ? 0 : 1));
  const b = Float32Array.from({length: groups * ni}, () => (rand() < 0.05 ? 0 : f32(mi / ni)));
  const gamma = [1, 0.3, 2][Math.floor(rand() * 3)];
  return {groups, mi, ni, k, gamma, costT, costRows, a, b, f32Sums};
}

const SHAPES: Array<[number, number]> = [[1, 1], [1, 5], [7, 1], [9, 3], [12, 4], [12, 5], [20, 6], [30, 16], [30, 17], [64, 32], [64, 64], [40, 20], [100, 3]];

describe('host kernels = their plain definitions, bit for bit', () => {
  test('row best response: shapes around the ranking sizes, ties, zero marginals, negative ell, non-finite values', () => {
    const rand = generator(11);
    let rows = 0;
    for (let trial = 0; trial < 360; trial++) {
      const [mi, ni] = SHAPES[trial % SHAPES.length];
      const grid = [0, 8, 64][trial % 3];
      const hp = problem(rand, 2, mi, ni, 2, grid, trial % 2 === 0);
      const q = (v: number): number => f32(grid > 0 ? Math.round(v * grid) / grid : v);
      const rs = new RowScratch(ni);
      for (let j = 0; j < ni; j++) {
        rs.beta[j] = q((rand() - 0.7) * (trial % 5 === 0 ? 2 : 0.3));
        rs.ell[j] = rand() < 0.3 ? 0 : q(rand() * 0.2);
      }
      if (trial % 17 === 3) rs.ell[0] = -0.01;
      if (trial % 29 === 5) rs.beta[ni - 1] = NaN;
      if (trial % 31 === 7) rs.beta[0] = -Infinity;
      for (let g = 0; g < 2; g++) {
        const expected = new Float32Array(mi);
        rowBestResponseReference(hp, g, rs.beta.slice(), rs.ell.slice(), expected);
        const actual = new Float32Array(mi);
        rowBestResponseHost(hp, g, rs, actual);
        expectSameBits(actual, expected, `trial ${trial} (${mi} x ${ni}, grid ${grid}) group ${g} alpha`);
        rows += mi;
      }
    }
    expect(rows).toBeGreaterThan(10000);
  });

  test('semi-dual evaluation: k from 1 to m, ties, zero columns, non-finite potentials', () => {
    const rand = generator(5);
    for (let trial = 0; trial < 240; trial++) {
      const [mi, ni] = SHAPES[trial % SHAPES.length];
      const grid = [0, 8, 64][trial % 3];
      const k = Math.max(1, Math.min(mi, [1, 2, Math.ceil(mi / ni), mi, mi - 1, 17][trial % 6]));
      const hp = problem(rand, 2, mi, ni, k, grid, trial % 2 === 1);
      const ev = new HostSemidualEval(mi, ni);
      for (let g = 0; g < 2; g++) {
        const alpha = Float32Array.from({length: mi}, () => f32(grid > 0 ? Math.round((rand() - 0.5) * grid) / grid : rand() - 0.5));
        if (trial % 23 === 4) alpha[0] = NaN;
        if (trial % 19 === 6) alpha[mi - 1] = Infinity;
        const expected = evaluateReference(hp, g, alpha);
        ev.evaluate(hp, g, alpha);
        const what = `trial ${trial} (${mi} x ${ni}, k ${k}, grid ${grid}) group ${g}`;
        expectSameBits(ev.planT, expected.planT, `${what} plan`);
        expectSameBits(ev.support, expected.support, `${what} support`);
        expectSameBits(ev.tau, expected.tau, `${what} tau`);
        expectSameBits(ev.grad, expected.grad, `${what} grad`);
        expect(Object.is(ev.value, expected.value)).toBe(true);
        // The column statistics the column block reads: support size and smallest positive entry.
        for (let j = 0; j < ni; j++) {
          let size = 0;
          let minPositive = Infinity;
          for (let i = 0; i < mi; i++) {
            size += expected.support[j * mi + i];
            const p = expected.planT[j * mi + i];
            if (p > 0 && p < minPositive) minPositive = p;
          }
          expect([ev.supportSize[j], ev.minPositive[j]]).toEqual([size, minPositive]);
        }
      }
    }
  });
});
