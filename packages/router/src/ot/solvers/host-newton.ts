/**
 * The host path of the `newton` solver (see host.ts for when it runs): newton.ts's damped Newton
 * ascent, group by group on the host copy of the problem, with the same steps: the direction
 * `(H + mu I) d = grad` by the same Jacobi-preconditioned CG (linalg/cg.ts: unit right-hand side,
 * the same freeze rules, a fixed number of steps), the same acceptance test (an increase, or near
 * the optimum a flat value with a shrinking gradient), the same damping updates, and the same
 * per-group convergence check every `checkEvery` iterations (convergence.ts). A group that is
 * done keeps its state, so it simply stops; the reported iteration count is the tensor loop's
 * (the check at which the last group finished, else the budget). CG runs in float64 here (its
 * float32 rounding on the device depends on the backend's matMul), so results agree with the
 * tensor path to float32 rounding, not bit for bit.
 */
import type {SparseOTOutput} from '../output';
import type {SparseOTProblem} from '../problem';
import type {Formulation} from '../types';
import {readHostProblem} from './host';
import {HostSemidualEval} from './host-evaluate';
import {hostOutput, newHostSolution, storeSolution} from './host-output';
import {readHostStart} from './host-alternating';
import type {SolverInit} from './solver';

const f32 = Math.fround;

/** The settings of the Newton solver that the host path reads. */
export interface HostNewtonConfig {
  maxIterations: number;
  tolerance: number;
  cgIterations: number;
  checkEvery: number;
  formulation: Formulation;
}

/** Floor of CG's `r^T r`, `p^T A p` and `r^T z` (linalg/cg.ts `CG_ABS_FLOOR`). */
const CG_ABS_FLOOR = 1e-18;

/** Buffers of one group's Newton direction. */
class DirectionScratch {
  readonly deg: Float64Array;
  readonly sizeInv: Float64Array;
  readonly precond: Float64Array;
  readonly x: Float64Array;
  readonly r: Float64Array;
  readonly p: Float64Array;
  readonly z: Float64Array;
  readonly ap: Float64Array;
  readonly col: Float64Array;
  constructor(readonly mi: number, readonly ni: number) {
    this.deg = new Float64Array(mi);
    this.sizeInv = new Float64Array(ni);
    this.precond = new Float64Array(mi);
    this.x = new Float64Array(mi);
    this.r = new Float64Array(mi);
    this.p = new Float64Array(mi);
    this.z = new Float64Array(mi);
    this.ap = new Float64Array(mi);
    this.col = new Float64Array(ni);
  }
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * The damped Newton direction of newton.ts `newtonDirection`: `((D - M S^+ M^T) / gamma + mu I) d
 * = grad` on the support graph of `ev`, by `iterations` steps of Jacobi-preconditioned CG from 0
 * on the unit right-hand side (as linalg/cg.ts). Writes `out` (`[mi]`, float32 values).
 */
function newtonDirection(ev: HostSemidualEval, mu: number, gamma: number, iterations: number, s: DirectionScratch, out: Float32Array): void {
  const {mi, ni} = s;
  const {deg, sizeInv, precond, x, r, p, z, ap, col} = s;
  const sup = ev.support; // [ni, mi]
  deg.fill(0);
  for (let j = 0; j < ni; j++) {
    let size = 0;
    for (let i = 0; i < mi; i++) {
      if (sup[j * mi + i]) {
        size++;
        deg[i]++;
      }
    }
    sizeInv[j] = size > 0 ? 1 / size : 0;
  }
  for (let i = 0; i < mi; i++) {
    let m = 0;
    for (let j = 0; j < ni; j++) if (sup[j * mi + i]) m += sizeInv[j];
    const d = (deg[i] - m) / gamma + mu;
    precond[i] = d > 0 ? 1 / d : 0;
  }
  const apply = (v: Float64Array, res: Float64Array): void => {
    for (let j = 0; j < ni; j++) {
      let c = 0;
      for (let i = 0; i < mi; i++) if (sup[j * mi + i]) c += v[i];
      col[j] = c * sizeInv[j];
    }
    for (let i = 0; i < mi; i++) {
      let m = 0;
      for (let j = 0; j < ni; j++) if (sup[j * mi + i]) m += col[j];
      res[i] = (deg[i] * v[i] - m) / gamma + mu * v[i];
    }
  };
  let norm = 1e-30;
  for (let i = 0; i < mi; i++) norm += ev.grad[i] * ev.grad[i];
  norm = Math.sqrt(norm);
  for (let i = 0; i < mi; i++) {
    r[i] = ev.grad[i] / norm;
    x[i] = 0;
    p[i] = precond[i] * r[i];
  }
  let rz = dot(r, p);
  const stopAt = dot(r, r) * 1e-12; // (unit . unit) * tolerance^2, tolerance 1e-6
  for (let it = 0; it < iterations; it++) {
    apply(p, ap);
    const pap = dot(p, ap);
    const active = dot(r, r) > Math.max(stopAt, CG_ABS_FLOOR) && pap > CG_ABS_FLOOR;
    const step = active ? rz / pap : 0;
    for (let i = 0; i < mi; i++) {
      x[i] += step * p[i];
      r[i] -= step * ap[i];
      z[i] = precond[i] * r[i];
    }
    const rz1 = dot(r, z);
    const beta = active ? rz1 / (rz > CG_ABS_FLOOR ? rz : 1) : 0;
    for (let i = 0; i < mi; i++) p[i] = z[i] + beta * p[i];
    rz = rz1;
  }
  for (let i = 0; i < mi; i++) out[i] = x[i] * norm;
}

/**
 * Solves `problem` with the Newton solver's algorithm on the host (see the file comment).
 *
 * @example
 * ```ts
 * if (useHostPath(problem)) return solveNewtonHost(problem, init, this.config);
 * ```
 */
export function solveNewtonHost(problem: SparseOTProblem, init: SolverInit | undefined, cfg: HostNewtonConfig): SparseOTOutput {
  const start = readHostStart(problem, init);
  const hp = readHostProblem(problem);
  const {groups, mi, ni, gamma} = hp;
  const {maxIterations, tolerance, cgIterations, checkEvery} = cfg;
  const sol = newHostSolution(hp);
  let ev = new HostSemidualEval(mi, ni);
  let evT = new HostSemidualEval(mi, ni);
  const scratch = new DirectionScratch(mi, ni);
  const alpha = new Float32Array(mi);
  const trial = new Float32Array(mi);
  const d = new Float32Array(mi);
  let lastStop = 0; // the tensor loop's iteration count: the check at which the last group finished
  let allDone = true;
  for (let g = 0; g < groups; g++) {
    start.alpha0(hp, g, alpha);
    ev.evaluate(hp, g, alpha);
    let supports = 0;
    for (let q = 0; q < ni * mi; q++) supports += ev.support[q];
    let mu = f32(Math.max(f32(f32(f32(supports / mi) / gamma) * 0.1), f32(1e-6 / gamma)));
    let last = ev.value;
    let done = false;
    let it = 1;
    for (; it <= maxIterations && !done; it++) {
      newtonDirection(ev, mu, gamma, cgIterations, scratch, d);
      for (let i = 0; i < mi; i++) trial[i] = alpha[i] + d[i];
      evT.evaluate(hp, g, trial);
      const slack = f32(Math.max(Math.abs(ev.value), 1) * f32(5e-7));
      const flat = evT.value >= f32(ev.value - slack);
      const accept = evT.value > ev.value || (flat && gradNorm2(evT.grad) < gradNorm2(ev.grad));
      if (accept) {
        [ev, evT] = [evT, ev];
        alpha.set(trial);
        mu = Math.max(f32(mu * f32(0.3)), f32(1e-8 / gamma));
      } else {
        mu = Math.min(f32(mu * 5), f32(1e8 / gamma));
      }
      if (it % checkEvery === 0) {
        done = Math.abs(f32(ev.value - last)) <= f32(f32(Math.max(Math.abs(ev.value), 1)) * f32(tolerance));
        last = ev.value;
        if (done) lastStop = Math.max(lastStop, it);
      }
    }
    allDone &&= done;
    storeSolution(hp, g, alpha, ev, sol);
  }
  const iterations = allDone ? lastStop : maxIterations;
  return hostOutput(problem, hp, sol, iterations, allDone, cfg.formulation);
}

/** `sum(g^2)` in float32 steps. */
function gradNorm2(g: Float64Array): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += f32(g[i] * g[i]);
  return f32(s);
}
