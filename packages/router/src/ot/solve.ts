/**
 * `solveSparseOT`: validates the problem, runs the chosen solver on the chosen formulation and
 * packs the result. The pieces live apart: problem.ts (validation, marginals, feasibility),
 * semidual.ts / dual.ts (objectives and plans), adam.ts / newton.ts / alternating.ts (solvers), result.ts.
 */
import * as tf from '@tensorflow/tfjs';
import {assertOneOf, assertPositiveInt, assertPositiveNumber, InvalidArgumentError} from '../core/errors';
import {adamAscent} from './adam';
import {alternatingSemidual} from './alternating';
import {evalDual} from './dual';
import {newtonSemidual} from './newton';
import {buildProblem, readInit, type OTProblem} from './problem';
import {projectRows} from './projection';
import {buildResult} from './result';
import {betaFromTau, evalSemidual} from './semidual';
import type {SparseOTOptions, SparseOTResult} from './types';

const CONTEXT = 'solveSparseOT';

/**
 * The row potentials that best respond to column potentials `beta`, ignoring the cardinality
 * bound: for each row i, `alpha_i = -gamma a_i tau_i` with `tau_i` the sparsemax threshold of
 * `(beta - C[i, :]) / (gamma a_i)`, so that `sum_j [alpha_i + beta_j - C_ij]_+ / gamma = a_i`.
 * Used to warm-start the semi-dual from per-expert potentials.
 *
 * @param beta `<float32>[groups, n]` @param costT `<float32>[groups, n, m]` @param a `<float32>[groups, m]`
 * @returns `<float32>[groups, m]`
 */
export function rowBestResponse(beta: tf.Tensor2D, costT: tf.Tensor3D, a: tf.Tensor2D, gamma: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [groups, n, m] = costT.shape;
    const c = tf.transpose(costT, [0, 2, 1]);
    const a3 = tf.reshape(a, [groups, m, 1]);
    const aSafe = tf.where(tf.greater(a3, 0), a3, tf.onesLike(a3));
    const x = tf.div(tf.sub(tf.reshape(beta, [groups, 1, n]), c), tf.mul(aSafe, gamma));
    const parts = projectRows(tf.reshape(x, [groups * m, n]) as tf.Tensor2D, n, 1);
    return tf.mul(tf.mul(tf.reshape(parts.tau, [groups, m]), a), -gamma) as tf.Tensor2D;
  });
}

function startingPotentials(problem: OTProblem, options: SparseOTOptions): {alpha: tf.Tensor2D | undefined; beta: tf.Tensor2D | undefined} {
  const init = options.init;
  if (init === undefined) return {alpha: undefined, beta: undefined};
  if (init === null || typeof init !== 'object') throw new InvalidArgumentError('init', 'an object {alpha?, beta?}', init, CONTEXT);
  const column = problem.sparsity === 'column';
  const {groups, m, n, batched} = problem;
  const alphaOrig = readInit('init.alpha', init.alpha, groups, m, batched, CONTEXT);
  const betaOrig = readInit('init.beta', init.beta, groups, n, batched, CONTEXT);
  return column ? {alpha: alphaOrig, beta: betaOrig} : {alpha: betaOrig, beta: alphaOrig};
}

/**
 * Solves k-sparse optimal transport (Liu, Puigcerver & Blondel, ICLR 2023): the quadratically
 * regularized transport problem `min <T, C> + (gamma/2) ||T||^2` over plans with marginals
 * `a`, `b` and at most `k` nonzeros per column (`sparsity: 'column'`, default: an expert takes
 * at most k tokens) or per row (`'row'`: a token goes to at most k experts), through its
 * (semi-)dual relaxation. Batched problems (`[groups, m, n]`) are solved together.
 *
 * Solvers (see {@link SolverName}): `'auto'` (default) picks `'alternating'` when k is below the
 * bounded side's size (exact block ascent on a lifted dual with closed-form row potentials, see
 * alternating.ts) and `'newton'` otherwise (damped Newton steps on the support with matrix-free
 * conjugate gradients, see newton.ts); `'adam'` is the released V-MoE reference (learning rate
 * 1e-2, 20 steps from zero). With `formulation: 'dual'`, `'adam'` ascends `(alpha, beta)`
 * jointly; the other solvers solve the semi-dual (whose optimum has the same value) and return
 * the dual pair it implies, `beta_j = -gamma b_j tau_j`; `value` is then the dual objective at
 * that pair.
 *
 * For k < m the relaxation's plan can break the row marginals even at the optimum;
 * `marginalError`, `meanRowError` and `droppedFraction` report it, and `feasible` says whether
 * any k-sparse plan could meet them (these statistics are computed on the device and read back
 * on first access). The input is validated (typed errors name the argument): this reads the
 * cost's finiteness and the marginals back from the device once, and the solvers read one scalar
 * every `checkEvery` iterations to stop early. With `hostReads: false` (the default on webgpu,
 * where synchronous reads fail) none of these reads happen: see {@link SparseOTOptions.hostReads}.
 *
 * @param cost `<float32>[m, n]` or `[groups, m, n]`: rows are tokens, columns experts.
 * @param options See {@link SparseOTOptions}; `k` is required.
 * @returns A {@link SparseOTResult}; call `dispose()` when done.
 *
 * @example
 * ```ts
 * const gates = tf.softmax(logits);                 // <float32>[tokens, experts]
 * const capacity = Math.ceil(tokens * 1.25 / experts);
 * const r = solveSparseOT(tf.neg(gates), {k: capacity});
 * r.plan;  // <float32>[tokens, experts], at most `capacity` nonzeros per column
 * console.log(r.value.dataSync()[0], r.droppedFraction, r.converged);
 * r.dispose();
 * ```
 */
export function solveSparseOT(cost: tf.Tensor, options: SparseOTOptions): SparseOTResult {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options', 'an object with at least k', options, CONTEXT);
  const solverOpt = assertOneOf('solver', options.solver ?? 'auto', ['auto', 'alternating', 'newton', 'adam'] as const, CONTEXT);
  const formulation = assertOneOf('formulation', options.formulation ?? 'semidual', ['semidual', 'dual'] as const, CONTEXT);
  const learningRate = assertPositiveNumber('learningRate', options.learningRate ?? 1e-2, CONTEXT);
  const maxIterationsOpt = options.maxIterations === undefined ? undefined : assertPositiveInt('maxIterations', options.maxIterations, CONTEXT);
  const tolerance = options.tolerance ?? 1e-5;
  if (typeof tolerance !== 'number' || !(tolerance >= 0) || !Number.isFinite(tolerance)) {
    throw new InvalidArgumentError('tolerance', 'a finite number >= 0', tolerance, CONTEXT);
  }
  const cgIterations = assertPositiveInt('cgIterations', options.cgIterations ?? 10, CONTEXT);
  const checkEveryOpt = options.checkEvery === undefined ? undefined : assertPositiveInt('checkEvery', options.checkEvery, CONTEXT);
  const problem = buildProblem(cost, options, CONTEXT);
  // 'auto': block ascent at capacity (k < rows of the bounded side), Newton where the objective is smooth.
  const solver = solverOpt === 'auto' ? (problem.k < problem.mi ? 'alternating' : 'newton') : solverOpt;
  // 'alternating': 3 iterations take about Adam-20's wall time on wasm (bench/RESULTS-ot.md).
  const maxIterations = maxIterationsOpt ?? {adam: 20, newton: 30, alternating: 3}[solver];
  const checkEvery = checkEveryOpt ?? (solver === 'alternating' ? 2 : 5);
  let start: {alpha: tf.Tensor2D | undefined; beta: tf.Tensor2D | undefined} = {alpha: undefined, beta: undefined};
  try {
    start = startingPotentials(problem, options);
    const {costT, a, b, k, gamma, groups, mi, ni} = problem;
    const alpha0 = start.alpha ?? (start.beta ? rowBestResponse(start.beta, costT, a, gamma) : tf.zeros([groups, mi]) as tf.Tensor2D);
    const judge = (value: tf.Tensor, last: tf.Tensor | null): boolean => {
      if (last === null || !problem.hostReads) return false;
      const rel = tf.tidy(() => tf.max(tf.div(tf.abs(tf.sub(value, last)), tf.maximum(tf.abs(value), 1))));
      const r = rel.dataSync()[0];
      rel.dispose();
      return r <= tolerance;
    };
    if (formulation === 'semidual' || solver !== 'adam') {
      let alpha: tf.Tensor2D;
      let ev;
      let iterations: number;
      let converged: boolean;
      if (solver === 'adam') {
        const run = adamAscent([alpha0], (p) => {
          const e = evalSemidual(p[0] as tf.Tensor2D, costT, a, b, k, gamma);
          tf.dispose([e.planT, e.support, e.tau]);
          return {grads: [e.grad], value: e.value};
        }, {learningRate, steps: maxIterations});
        alpha = run.params[0] as tf.Tensor2D;
        ev = evalSemidual(alpha, costT, a, b, k, gamma);
        converged = judge(ev.value, run.lastValue);
        run.lastValue?.dispose();
        iterations = maxIterations;
      } else if (solver === 'alternating') {
        const run = alternatingSemidual(problem, alpha0, {maxIterations, tolerance, checkEvery, warmStart: start.alpha !== undefined || start.beta !== undefined});
        ({alpha, ev, iterations, converged} = run);
      } else {
        const run = newtonSemidual(problem, alpha0, {maxIterations, tolerance, cgIterations, checkEvery});
        ({alpha, ev, iterations, converged} = run);
      }
      if (alpha0 !== start.alpha) alpha0.dispose();
      const beta = betaFromTau(ev.tau, b, gamma);
      tf.dispose([ev.support, ev.tau, ev.grad]);
      if (formulation === 'semidual') return buildResult(problem, ev.planT, alpha, beta, ev.value, iterations, converged);
      tf.dispose([ev.planT, ev.value]);
      const dv = evalDual(alpha, beta, costT, a, b, k, gamma);
      tf.dispose([dv.gradAlpha, dv.gradBeta]);
      return buildResult(problem, dv.planT, alpha, beta, dv.value, iterations, converged);
    }
    // Dual formulation, Adam on (alpha, beta) jointly.
    const beta0 = start.beta ?? (tf.zeros([groups, ni]) as tf.Tensor2D);
    const run = adamAscent([alpha0, beta0], (p) => {
      const e = evalDual(p[0] as tf.Tensor2D, p[1] as tf.Tensor2D, costT, a, b, k, gamma);
      e.planT.dispose();
      return {grads: [e.gradAlpha, e.gradBeta], value: e.value};
    }, {learningRate, steps: maxIterations});
    if (alpha0 !== start.alpha) alpha0.dispose();
    if (beta0 !== start.beta) beta0.dispose();
    const [alpha, beta] = run.params as tf.Tensor2D[];
    const dv = evalDual(alpha, beta, costT, a, b, k, gamma);
    tf.dispose([dv.gradAlpha, dv.gradBeta]);
    const converged = judge(dv.value, run.lastValue);
    run.lastValue?.dispose();
    return buildResult(problem, dv.planT, alpha, beta, dv.value, maxIterations, converged);
  } finally {
    tf.dispose([start.alpha, start.beta].filter((t): t is tf.Tensor2D => t !== undefined));
    problem.dispose();
  }
}
