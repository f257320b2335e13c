/**
 * The host path of the `alternating` solver (see host.ts for when it runs): the same block
 * ascent on the lifted dual as alternating.ts, with the same starts, the same per-start stall
 * test, polish steps and best-iterate rule, and the same choice of start per group, run group by
 * group on the host copy of the problem. A group's result depends on its own values only.
 */
import type {SparseOTOutput} from '../output';
import type {SparseOTProblem} from '../problem';
import type {Formulation} from '../types';
import {accumulate, readHostProblem, type HostProblem} from './host';
import {adamStepHost, hostAdamConstants} from './host-adam-step';
import {HostSemidualEval} from './host-evaluate';
import {hostOutput, newHostSolution, storeSolution, type HostSolution} from './host-output';
import {prepareWasmSolve} from './host-alternating-wasm';
import {insertRanked, ProjectionScratch, projectSlice, topKPositions} from './host-projection';
import {MAX_ACTIVE} from './lifted-dual';
import {readStart, type SolverInit} from './solver';

const f32 = Math.fround;
/** The polish phase's Adam constants (adam.ts's defaults). */
const ADAM = hostAdamConstants(0.9, 0.999, 1e-8);

/**
 * Under `multiStart: 'auto'`, a small group with at least this many columns (n) at capacity
 * factor 1 runs the zero start only (with a budget of at least {@link ONE_START_MIN_ITERATIONS}):
 * there the cheapest-column start ended higher in 3 of 1,536 routing groups at n 32 and 64 (at n
 * 4 to 16 in 0.8% to 41%; bench/ot-starts.ts, bench/RESULTS-ot.md).
 */
export const ONE_START_MIN_COLUMNS = 32;

/** The budget from which {@link ONE_START_MIN_COLUMNS} applies: after 1 iteration the cheapest-column start was ahead in 2 of 8 such problems (bench/RESULTS-ot.md). */
export const ONE_START_MIN_ITERATIONS = 3;

/**
 * Whether a group takes the one-start rule of {@link ONE_START_MIN_COLUMNS} (`atOne`: the group
 * is at capacity factor 1); the tensor path (alternating.ts) and the host path share it.
 */
export function zeroStartOnly(multiStart: boolean | 'auto', ni: number, maxIterations: number): boolean {
  return multiStart === 'auto' && ni >= ONE_START_MIN_COLUMNS && maxIterations >= ONE_START_MIN_ITERATIONS;
}

/** The settings of the alternating solver that the host path reads. */
export interface HostAlternatingConfig {
  maxIterations: number;
  tolerance: number;
  checkEvery: number;
  polishRate: number;
  /**
   * 2 when a group may run two starts (`multiStart: true`, or `'auto'` on small groups: then
   * all but those of {@link zeroStartOnly} at capacity factor 1 run both), else 1.
   */
  starts: 1 | 2;
  multiStart: boolean | 'auto';
  formulation: Formulation;
}

/**
 * Scratch of the row best responses: the projection's (`xc` holds the negated entry levels of a
 * row with a NaN, `order` the ranking) plus the column block, `beta - ell` per column and the
 * ranked levels.
 */
export class RowScratch extends ProjectionScratch {
  readonly beta: Float32Array;
  readonly ell: Float32Array;
  readonly betaEll: Float64Array;
  readonly ranked: Float64Array;
  constructor(ni: number) {
    super(ni);
    this.beta = new Float32Array(ni);
    this.ell = new Float32Array(ni);
    this.betaEll = new Float64Array(ni);
    this.ranked = new Float64Array(ni);
  }
}

/**
 * The column block at `alpha` from its evaluation `ev` (lifted-dual.ts `columnBlock`): `beta_j =
 * -gamma b_j tau_j`, and for a full column the midpoint entry level `ell_j` between
 * `[s_(k+1)]_+` and `s_(k)`, else 0. Writes `rs.beta` and `rs.ell`.
 */
function columnBlockHost(hp: HostProblem, g: number, ev: HostSemidualEval, alpha: Float32Array, rs: RowScratch): void {
  const {mi, ni, k, gamma, b, costT} = hp;
  const {support, tau, supportSize, minPositive} = ev;
  for (let j = 0; j < ni; j++) {
    const beta = f32(f32(tau[j] * b[g * ni + j]) * -gamma);
    let offMax = -Infinity;
    const c0 = (g * ni + j) * mi;
    const jm = j * mi;
    for (let i = 0; i < mi; i++) if (!support[jm + i]) offMax = Math.max(offMax, f32(alpha[i] - costT[c0 + i]));
    const minPos = minPositive[j];
    const full = supportSize[j] >= k - 0.5 && minPos < Infinity;
    const upper = f32(minPos * gamma);
    const lower = Math.min(Math.max(f32(offMax + beta), 0), upper);
    rs.beta[j] = beta;
    rs.ell[j] = full ? f32(f32(upper + lower) * 0.5) : 0;
  }
}

/** The unit roundoff of float32 (round to nearest). */
const U32 = 2 ** -24;

/**
 * The rows' exact best response of the lifted dual to `(rs.beta, rs.ell)` (lifted-dual.ts
 * `rowBestResponseLifted`, with its `K = min(n, MAX_ACTIVE)` sorted entry points). Writes `out` (`[mi]`).
 *
 * Row i ranks its negated entry levels `nes_r` (`beta_j - ell_j - C[i, j]`, descending, ties by
 * the lower column, as {@link topKPositions}) and counts the ranks r < K whose left derivative
 * `f32(f32(ga + r nes_r) - f32(cs_r - w_r)) > 0` (`w = ell + nes`, `cs` its float32 cumulative
 * sum). Exactly (with the computed `w`), `f(r) = ga + r nes_r - sum_{l < r} w_l` does not
 * increase with r when every `ell_j >= 0`, since `w_r >= nes_r` and `nes` descends: `f(r + 1) -
 * f(r) <= (r + 1) (nes_(r+1) - nes_r)`. The float32 test at rank r differs from `f(r) > 0` by at
 * most `u (|ga| + 2.01 r N + (r + 3.01) W)` (`u = 2^-24`, `N = max |nes|`, `W` the sum of `|w|`
 * up to r). So a row first ranks its 4 largest levels only, tests ranks 0 to 2, and stops when
 * `f(3)` is below minus twice that bound: every later test is false, as in the full loop, whose
 * result is then the same bit for bit. Otherwise (or with a value that is not finite, or some
 * `ell_j < 0`, or K <= 4) it ranks K levels and runs the full loop.
 */
export function rowBestResponseHost(hp: HostProblem, g: number, rs: RowScratch, out: Float32Array): void {
  const {mi, ni, gamma, costRows, a, f32Sums} = hp;
  const K = Math.min(ni, MAX_ACTIVE);
  const {xc: negEntry, order, beta, ell, betaEll, ranked} = rs;
  let ellSum = 0;
  let ellValid = true;
  for (let j = 0; j < ni; j++) {
    betaEll[j] = f32(beta[j] - ell[j]);
    if (!(ell[j] >= 0 && ell[j] < Infinity)) ellValid = false;
    ellSum += ell[j];
  }
  const shortcut = ellValid && K > 4;
  for (let i = 0; i < mi; i++) {
    const c0 = (g * mi + i) * ni;
    const ga = f32(a[g * mi + i] * gamma);
    let cs = 0; // inclusive cumulative sum of W, in float32 steps as tf.cumsum
    let count = 0;
    let csR = 0;
    let minNes = Infinity;
    const least = shortcut ? rankFirstFour(betaEll, costRows, c0, ni, ranked, order) : NaN;
    if (least === least && Math.abs(ga) < Infinity) {
      // Ranks 0 to 2, then the bound at rank 3.
      let wSum = 0;
      for (let r = 0; r < 3; r++) {
        const nes = ranked[r];
        const w = f32(ell[order[r]] + nes);
        cs = f32(cs + w);
        wSum += w;
        if (f32(f32(ga + f32(r * nes)) - f32(cs - w)) > 0) {
          count++;
          csR = f32Sums ? f32(csR + w) : csR + w;
          if (nes < minNes) minNes = nes;
        }
      }
      const N = Math.max(Math.abs(ranked[0]), Math.abs(least));
      const bound = 2 * U32 * (Math.abs(ga) + 2.01 * K * N + (K + 3.01) * 1.01 * (ellSum + K * N)) + 1e-30;
      if (ga + 3 * ranked[3] - wSum + bound < 0) {
        out[i] = count > 0 ? Math.max(-minNes, f32(f32(ga - f32(csR)) / count)) : f32(-ranked[0] - gamma);
        continue;
      }
      cs = 0;
      count = 0;
      csR = 0;
      minNes = Infinity;
    }
    if (!rankRow(betaEll, costRows, c0, ni, K, ranked, order)) {
      // A NaN level: topKPositions' own ranking.
      for (let j = 0; j < ni; j++) negEntry[j] = f32(betaEll[j] - costRows[c0 + j]);
      topKPositions(negEntry, 0, ni, K, order);
      for (let r = 0; r < K; r++) ranked[r] = negEntry[order[r]];
    }
    for (let r = 0; r < K; r++) {
      const nes = ranked[r];
      const w = f32(ell[order[r]] + nes);
      cs = f32(cs + w);
      // Left derivative (times gamma) at the r-th entry point with r columns active before it.
      if (f32(f32(ga + f32(r * nes)) - f32(cs - w)) > 0) {
        count++;
        csR = f32Sums ? f32(csR + w) : csR + w;
        if (nes < minNes) minNes = nes;
      }
    }
    out[i] = count > 0 ? Math.max(-minNes, f32(f32(ga - f32(csR)) / count)) : f32(-ranked[0] - gamma);
  }
}

/**
 * The 4 largest levels `f32(betaEll_j - C_j)` of row `c0` of `costRows` (`ni >= 4`), as
 * {@link rankRow} ranks them: columns into `order[0..4)`, values into `ranked[0..4)`. Returns the
 * smallest level of the row, or NaN when a level is not finite (then nothing is written).
 */
function rankFirstFour(betaEll: Float64Array, costRows: Float32Array, c0: number, ni: number, ranked: Float64Array, order: Int32Array): number {
  // Columns in ascending order, a column moving ahead only of strictly smaller values: ties keep the lower column first.
  let v0 = -Infinity;
  let v1 = -Infinity;
  let v2 = -Infinity;
  let v3 = -Infinity;
  let j0 = 0;
  let j1 = 0;
  let j2 = 0;
  let j3 = 0;
  let least = Infinity;
  for (let j = 0; j < ni; j++) {
    const v = f32(betaEll[j] - costRows[c0 + j]);
    if (!(v - v === 0)) return NaN;
    if (v < least) least = v;
    if (!(v > v3)) continue;
    if (v > v2) {
      v3 = v2;
      j3 = j2;
      if (v > v1) {
        v2 = v1;
        j2 = j1;
        if (v > v0) {
          v1 = v0;
          j1 = j0;
          v0 = v;
          j0 = j;
        } else {
          v1 = v;
          j1 = j;
        }
      } else {
        v2 = v;
        j2 = j;
      }
    } else {
      v3 = v;
      j3 = j;
    }
  }
  ranked[0] = v0;
  ranked[1] = v1;
  ranked[2] = v2;
  ranked[3] = v3;
  order[0] = j0;
  order[1] = j1;
  order[2] = j2;
  order[3] = j3;
  return least;
}

/**
 * Ranks row `c0` of `costRows`: writes into `order[0..ranks)` the columns of the `ranks` largest
 * levels `f32(betaEll_j - C_j)` (descending, ties by the lower column: {@link topKPositions}'s
 * ranking) and their values into `ranked`. Returns false when a level is NaN (then `order` and
 * `ranked` are undefined).
 */
function rankRow(betaEll: Float64Array, costRows: Float32Array, c0: number, ni: number, ranks: number, ranked: Float64Array, order: Int32Array): boolean {
  let filled = 0;
  for (let j = 0; j < ni; j++) {
    const v = f32(betaEll[j] - costRows[c0 + j]);
    if (v !== v) return false;
    if (filled === ranks && !(v > ranked[ranks - 1])) continue;
    insertRanked(ranked, order, filled === ranks ? ranks - 1 : filled++, v, j);
  }
  return true;
}


/**
 * The best response of the rows to column potentials `beta` ignoring the bound
 * (solver.ts `rowBestResponse`): `alpha_i = -gamma a_i tau_i` with `tau_i` the sparsemax
 * threshold of `(beta - C[i, :]) / (gamma a_i)`. Writes `out` (`[mi]`); `x` (`[ni]`) and `scratch` are scratch.
 */
function rowBestResponseFree(hp: HostProblem, g: number, beta: ArrayLike<number>, out: Float32Array, x: Float64Array, scratch: ProjectionScratch): void {
  const {mi, ni, gamma} = hp;
  for (let i = 0; i < mi; i++) {
    const ai = hp.a[g * mi + i];
    const den = f32((ai > 0 ? ai : 1) * gamma);
    for (let j = 0; j < ni; j++) x[j] = f32(f32(beta[j] - hp.costRows[(g * mi + i) * ni + j]) / den);
    out[i] = f32(f32(projectSlice(hp, x, ni, ni, scratch, null, 0, null) * ai) * -gamma);
  }
}

/**
 * One start's buffers (`[mi]` each), reused from group to group: `alpha` (the iterate; the
 * caller writes the starting potentials into it), the best iterate, Adam's moments and the next
 * iterate; and, after {@link runStart}, its result: the best iterate's value and evaluation, and
 * whether the start settled.
 */
class StartScratch {
  readonly alpha: Float32Array;
  readonly bestAlpha: Float32Array;
  readonly m1: Float32Array;
  readonly m2: Float32Array;
  readonly next: Float32Array;
  bestValue = -Infinity;
  settled = false;
  bestEv: HostSemidualEval | null = null;
  constructor(mi: number) {
    this.alpha = new Float32Array(mi);
    this.bestAlpha = new Float32Array(mi);
    this.m1 = new Float32Array(mi);
    this.m2 = new Float32Array(mi);
    this.next = new Float32Array(mi);
  }
}

/**
 * One start's block ascent and polish (alternating.ts's loop, for one row of its batch). Two
 * evaluation objects take turns: one holds the evaluation at the best iterate, the other the
 * latest (the evaluation is deterministic, so keeping the best one equals evaluating again);
 * returns `st`, its `bestEv` the one that holds the best. Starts from `st.alpha`.
 */
function runStart(
  hp: HostProblem, g: number, cfg: HostAlternatingConfig, evA: HostSemidualEval, evB: HostSemidualEval, rs: RowScratch, st: StartScratch,
): StartScratch {
  const {mi} = hp;
  const {alpha, bestAlpha, m1, m2, next} = st;
  const {maxIterations: T, tolerance, checkEvery, polishRate} = cfg;
  let sumA = 0;
  for (let i = 0; i < mi; i++) sumA = accumulate(hp, sumA, hp.a[g * mi + i]);
  const lr0 = f32(f32(f32(sumA) / mi) * f32(polishRate * hp.gamma));
  // ev: the evaluation at alpha; bestEv: at the best iterate (the same object until a step improves).
  let ev = evA.evaluate(hp, g, alpha);
  let bestEv = ev;
  bestAlpha.set(alpha);
  let bestValue = ev.value;
  let checkValue = ev.value;
  let stallAt = Infinity;
  m1.fill(0);
  m2.fill(0);
  let settled = false;
  for (let t = 1; t <= T; t++) {
    if (stallAt < t) {
      // Adam step on the semi-dual from the best iterate, cosine-decayed over the rest of the budget.
      // (float32 steps in the order of adam.ts's adamStep.)
      const tp = Math.max(t - stallAt, 1);
      const span = Math.max(T - stallAt, 1);
      const lr = f32(lr0 * f32(0.5 * f32(1 + f32(Math.cos(f32(f32(Math.PI) * f32((tp - 1) / span)))))));
      // The bias corrections as adam.ts computes them for a tensor t (float32 powers).
      const c1 = f32(1 - f32(ADAM.b1 ** tp));
      const c2 = f32(1 - f32(ADAM.b2 ** tp));
      adamStepHost(next, alpha, m1, m2, ev.grad, lr, c1, c2, ADAM);
    } else {
      columnBlockHost(hp, g, ev, alpha, rs);
      rowBestResponseHost(hp, g, rs, next);
    }
    alpha.set(next);
    ev = (bestEv === evA ? evB : evA).evaluate(hp, g, alpha);
    if (ev.value > bestValue) {
      bestAlpha.set(alpha);
      bestEv = ev;
      bestValue = ev.value;
    }
    if (t % checkEvery === 0 || t === T) {
      const stalled = stallAt < Infinity;
      settled = Math.abs(bestValue - checkValue) <= tolerance * Math.max(Math.abs(bestValue), 1);
      if (!stalled) checkValue = bestValue;
      if (t < T && settled && !stalled) {
        // Stalls now: restart from the best iterate with fresh Adam moments.
        stallAt = t;
        alpha.set(bestAlpha);
        ev = bestEv;
      }
    }
  }
  st.bestValue = bestValue;
  st.settled = settled;
  st.bestEv = bestEv;
  return st;
}

/**
 * Solves `problem` with the alternating solver's algorithm on the host (see the file comment).
 *
 * @example
 * ```ts
 * if (useHostPath(problem)) return solveAlternatingHost(problem, init, {...this.config, starts});
 * ```
 */
export function solveAlternatingHost(problem: SparseOTProblem, init: SolverInit | undefined, cfg: HostAlternatingConfig): SparseOTOutput {
  const start = readHostStart(problem, init);
  const hp = readHostProblem(problem);
  const {groups, mi, ni, k} = hp;
  /** Group g's starts: 0 two (its starting potentials, then the cheapest column), 1 one from its starting potentials, 2 one from the cheapest column. */
  const groupMode = (g: number): number => {
    // Capacity factor above ~1.125 and at 1 (alternating.ts `aboveOne`, `atOne`, in the same float32 steps).
    let sumB = 0;
    for (let j = 0; j < ni; j++) sumB = accumulate(hp, sumB, hp.b[g * ni + j]);
    const meanB = f32(f32(sumB) / ni);
    const aboveOne = k >= f32(meanB * 1.125);
    const oneStart = zeroStartOnly(cfg.multiStart, ni, cfg.maxIterations) && k >= f32(meanB * f32(0.999)) && k <= f32(meanB * f32(1.001));
    if (cfg.starts === 2 && !oneStart) return 0;
    // One start: the starting potentials, or under 'auto' for a large cold group above capacity factor ~1.125 the cheapest column.
    return cfg.multiStart === 'auto' && !start.warm && aboveOne ? 2 : 1;
  };
  let converged = true;
  let sol: HostSolution;
  const wasm = prepareWasmSolve({...hp, ...cfg, adam: ADAM});
  if (wasm !== null) {
    const w = wasm.buffers;
    w.costT.set(hp.costT);
    w.costRows.set(hp.costRows);
    w.a.set(hp.a);
    w.b.set(hp.b);
    // The starting potentials: given, zero, or (computed by the module) the rows' best response to the warm beta.
    if (start.fromBeta) w.beta0.set(start.fromBeta);
    for (let g = 0; g < groups; g++) {
      if (!start.fromBeta) start.alpha0(hp, g, w.alpha0.subarray(g * mi, (g + 1) * mi));
      w.mode[g] = groupMode(g);
    }
    const left = wasm.run(start.fromBeta !== undefined);
    // The plan and potentials as the module left them (views; hostOutput copies them into tensors).
    sol = {planT: w.planT, alpha: w.alpha, beta: new Float32Array(groups * ni), value: new Float64Array(groups)};
    for (let g = 0; g < groups; g++) {
      if (w.status[g] & 1) continue;
      for (let j = 0; j < ni; j++) sol.beta[g * ni + j] = f32(f32(w.tau[g * ni + j] * hp.b[g * ni + j]) * -hp.gamma);
      sol.value[g] = w.value[g];
      converged &&= (w.status[g] & 2) !== 0;
    }
    if (left > 0) {
      const js = new GroupSolver(hp, cfg, start);
      for (let g = 0; g < groups; g++) if (w.status[g] & 1) converged = js.solve(g, groupMode(g), sol) && converged;
    }
  } else {
    sol = newHostSolution(hp);
    const js = new GroupSolver(hp, cfg, start);
    for (let g = 0; g < groups; g++) converged = js.solve(g, groupMode(g), sol) && converged;
  }
  return hostOutput(problem, hp, sol, cfg.maxIterations, converged, cfg.formulation);
}

/** The JavaScript group loop: its evaluations and starts' buffers, reused from group to group. */
class GroupSolver {
  // Three evaluations: two per start, the first start's best kept through the second.
  private readonly evs: HostSemidualEval[];
  private readonly rs: RowScratch;
  // Two starts' buffers: the first start's result is kept while the second runs.
  private readonly starts: StartScratch[];

  constructor(private readonly hp: HostProblem, private readonly cfg: HostAlternatingConfig, private readonly start: HostStart) {
    const {mi, ni} = hp;
    this.evs = [new HostSemidualEval(mi, ni), new HostSemidualEval(mi, ni), new HostSemidualEval(mi, ni)];
    this.rs = new RowScratch(ni);
    this.starts = [new StartScratch(mi), new StartScratch(mi)];
  }

  /** Solves group g with the starts of `mode` (see solveAlternatingHost), stores its solution in `sol`; returns whether it settled. */
  solve(g: number, mode: number, sol: HostSolution): boolean {
    const {hp, cfg, evs, rs, starts} = this;
    let result;
    if (mode === 0) {
      this.start.alpha0(hp, g, starts[0].alpha);
      const first = runStart(hp, g, cfg, evs[0], evs[1], rs, starts[0]);
      cheapestStart(hp, g, starts[1].alpha);
      const second = runStart(hp, g, cfg, first.bestEv === evs[0] ? evs[1] : evs[0], evs[2], rs, starts[1]);
      result = first.bestValue >= second.bestValue ? first : second;
    } else {
      if (mode === 2) cheapestStart(hp, g, starts[0].alpha);
      else this.start.alpha0(hp, g, starts[0].alpha);
      result = runStart(hp, g, cfg, evs[0], evs[1], rs, starts[0]);
    }
    // The output at the best iterate.
    storeSolution(hp, g, result.bestAlpha, result.bestEv!, sol);
    return result.settled;
  }
}

/** Writes group g's cheapest-column start `alpha_i = min_j C_ij` into `out`. */
function cheapestStart(hp: HostProblem, g: number, out: Float32Array): void {
  const {mi, ni} = hp;
  for (let i = 0; i < mi; i++) {
    let c = Infinity;
    for (let j = 0; j < ni; j++) c = Math.min(c, hp.costRows[(g * mi + i) * ni + j]);
    out[i] = c;
  }
}

/** The warm start read back (see {@link readHostStart}). */
export interface HostStart {
  /** Whether a warm start was given. */
  warm: boolean;
  /** The warm column potentials (`[groups, ni]`) that `alpha0` responds to, when only those were given. */
  fromBeta?: Float32Array;
  /** Writes group g's starting row potentials into `out` (`[mi]`). */
  alpha0: (hp: HostProblem, g: number, out: Float32Array) => void;
  /** Writes group g's warm column potentials, or zero, into `out` (`[ni]`). */
  beta0: (g: number, out: Float32Array) => void;
}

/**
 * The warm start read back: `warm` (whether one was given) and `alpha0(hp, g, out)`, which
 * writes group g's starting row potentials (solver.ts `startingAlpha`: the warm alpha, else the
 * rows' best response to the warm beta, else zero), and `beta0(g, out)`, the warm beta or zero.
 */
export function readHostStart(problem: SparseOTProblem, init: SolverInit | undefined): HostStart {
  const start = readStart(problem, init);
  const warmAlpha = start.alpha?.dataSync();
  const givenBeta = start.beta?.dataSync();
  const warmBeta = start.alpha ? undefined : givenBeta;
  const warm = start.alpha !== undefined || start.beta !== undefined;
  for (const t of [start.alpha, start.beta]) t?.dispose();
  const {mi, ni} = problem;
  const x = new Float64Array(ni);
  const scratch = new ProjectionScratch(ni);
  return {
    warm,
    fromBeta: warmBeta as Float32Array | undefined,
    alpha0: (hp, g, out) => {
      if (warmAlpha) out.set(warmAlpha.subarray(g * mi, (g + 1) * mi));
      else if (warmBeta) rowBestResponseFree(hp, g, warmBeta.subarray(g * ni, (g + 1) * ni), out, x, scratch);
      else out.fill(0);
    },
    beta0: (g, out) => {
      if (givenBeta) out.set(givenBeta.subarray(g * ni, (g + 1) * ni));
      else out.fill(0);
    },
  };
}
