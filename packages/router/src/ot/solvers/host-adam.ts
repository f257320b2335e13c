/**
 * The host path of the `adam` solver (see host.ts for when it runs): adam.ts's fixed number of
 * Adam ascent steps on the semi-dual (alpha) or the dual (alpha, beta), group by group on the
 * host copy of the problem, in float32 steps in the tensor path's order (the step's constants
 * `1 - beta^t` are computed in float64 and rounded, as the tensor path uploads them).
 */
import type {SparseOTOutput} from '../output';
import type {SparseOTProblem} from '../problem';
import {accumulate, readHostProblem, type HostProblem} from './host';
import {HostSemidualEval, hostDualPlan} from './host-evaluate';
import {hostOutput, newHostSolution, storeSolution} from './host-output';
import {ProjectionScratch} from './host-projection';
import {adamStepHost, hostAdamConstants} from './host-adam-step';
import {readHostStart} from './host-alternating';
import type {SolverInit} from './solver';

const f32 = Math.fround;

/** The settings of the Adam solver that the host path reads. */
export interface HostAdamConfig {
  learningRate: number;
  maxIterations: number;
  tolerance: number;
  formulation: 'semidual' | 'dual';
  beta1: number;
  beta2: number;
  epsilon: number;
}

/** Group g's step `learningRate * max(gamma, max |C|)` in float32, as adam.ts's `potentialScale` computes it. */
function groupStep(hp: HostProblem, g: number, learningRate: number): number {
  const size = hp.mi * hp.ni;
  let scale = f32(hp.gamma);
  for (let i = g * size; i < (g + 1) * size; i++) scale = Math.max(scale, Math.abs(hp.costT[i]));
  return f32(scale * f32(learningRate));
}

/** The dual's gradients at the plan `planT` (`[ni, mi]`): `a - T 1` and `b - T^T 1`, summed as the backend sums. */
function dualGradients(hp: HostProblem, g: number, planT: Float64Array, gradAlpha: Float32Array, gradBeta: Float32Array): void {
  const {mi, ni} = hp;
  for (let i = 0; i < mi; i++) {
    let s = 0;
    for (let j = 0; j < ni; j++) s = accumulate(hp, s, planT[j * mi + i]);
    gradAlpha[i] = f32(hp.a[g * mi + i] - f32(s));
  }
  for (let j = 0; j < ni; j++) {
    let s = 0;
    for (let i = 0; i < mi; i++) s = accumulate(hp, s, planT[j * mi + i]);
    gradBeta[j] = f32(hp.b[g * ni + j] - f32(s));
  }
}

/**
 * Solves `problem` with the Adam solver's algorithm on the host (see the file comment).
 *
 * @example
 * ```ts
 * if (useHostPath(problem)) return solveAdamHost(problem, init, this.config);
 * ```
 */
export function solveAdamHost(problem: SparseOTProblem, init: SolverInit | undefined, cfg: HostAdamConfig): SparseOTOutput {
  const start = readHostStart(problem, init);
  const hp = readHostProblem(problem);
  const {groups, mi, ni} = hp;
  const T = cfg.maxIterations;
  const dual = cfg.formulation === 'dual';
  const sol = newHostSolution(hp);
  const ev = new HostSemidualEval(mi, ni);
  const scratch = new ProjectionScratch(mi);
  const planT = new Float64Array(ni * mi);
  const alpha = new Float32Array(mi);
  const beta = new Float32Array(ni);
  const [ma, va, mb, vb] = [new Float32Array(mi), new Float32Array(mi), new Float32Array(ni), new Float32Array(ni)];
  const [gradAlpha, gradBeta] = [new Float32Array(mi), new Float32Array(ni)];
  const k = hostAdamConstants(cfg.beta1, cfg.beta2, cfg.epsilon);
  let converged = true;
  for (let g = 0; g < groups; g++) {
    start.alpha0(hp, g, alpha);
    if (dual) start.beta0(g, beta);
    for (const x of [ma, va, mb, vb]) x.fill(0);
    let last = NaN;
    const lr = groupStep(hp, g, cfg.learningRate);
    for (let t = 1; t <= T; t++) {
      // The bias corrections as adam.ts computes them for a number t (float64, rounded once).
      const c1 = f32(1 - cfg.beta1 ** t);
      const c2 = f32(1 - cfg.beta2 ** t);
      if (dual) {
        last = hostDualPlan(hp, g, alpha, beta, planT, scratch);
        dualGradients(hp, g, planT, gradAlpha, gradBeta);
        adamStepHost(alpha, alpha, ma, va, gradAlpha, lr, c1, c2, k);
        adamStepHost(beta, beta, mb, vb, gradBeta, lr, c1, c2, k);
      } else {
        last = ev.evaluate(hp, g, alpha).value;
        adamStepHost(alpha, alpha, ma, va, ev.grad, lr, c1, c2, k);
      }
    }
    const value = dual ? hostDualPlan(hp, g, alpha, beta, planT, scratch) : ev.evaluate(hp, g, alpha).value;
    converged &&= Math.abs(f32(value - last)) <= f32(f32(Math.max(Math.abs(value), 1)) * f32(cfg.tolerance));
    if (dual) {
      sol.alpha.set(alpha, g * mi);
      sol.beta.set(beta, g * ni);
    } else {
      storeSolution(hp, g, alpha, ev, sol);
    }
  }
  return hostOutput(problem, hp, sol, T, converged, cfg.formulation);
}
