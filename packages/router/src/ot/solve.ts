/**
 * `solveSparseOT(cost, options)`: the one-call convenience over the OT core's objects. It builds
 * the {@link SparseOTProblem}, picks and configures the solver named in the options, solves, and
 * returns the output as a {@link SparseOTResult} (whose marginal statistics are read back
 * synchronously on first access). Code that wants explicit control uses the objects directly:
 * `sparseOTProblem(cost, spec)`, `alternating()` / `newton()` / `adam()`, `solver.solve(problem)`,
 * and `await output.marginalStats()`.
 */
import type * as tf from '@tensorflow/tfjs';
import {assertOneOf, assertPositiveInt, assertPositiveNumber, InvalidArgumentError} from '../core/errors';
import {checkOptions} from '../core/options';
import type {SparseOTOutput} from './output';
import {sparseOTProblem, type SparseOTProblem, type SparseOTProblemSpec} from './problem';
import {adam} from './solvers/adam';
import {alternating} from './solvers/alternating';
import {newton} from './solvers/newton';
import type {SparseOTSolver} from './solvers/solver';
import {checkTolerance} from './solvers/tolerance';
import type {SparseOTOptions, SparseOTResult} from './types';

const CONTEXT = 'solveSparseOT';

/** Every key of {@link SparseOTOptions} (the compiler keeps the list complete). */
export const SPARSE_OT_OPTION_KEYS: readonly string[] = Object.keys({
  k: true, gamma: true, a: true, b: true, sparsity: true, formulation: true, solver: true, learningRate: true,
  maxIterations: true, tolerance: true, init: true, cgIterations: true, checkEvery: true, hostReads: true,
} satisfies Record<keyof SparseOTOptions, true>);

/**
 * Checks `options` of the form of `solveSparseOT`'s (an object, no unknown key, an `init` of
 * `{alpha?, beta?}`); `extraKeys` are further keys the caller accepts. Throws
 * `InvalidArgumentError` for a non-object and `UnknownOptionError` naming the key otherwise.
 *
 * @example
 * ```ts
 * checkSparseOTOptions({k: 2, gama: 1}, 'solveSparseOT'); // UnknownOptionError: ... Did you mean 'gamma'?
 * ```
 */
export function checkSparseOTOptions(options: SparseOTOptions, context: string, extraKeys: readonly string[] = []): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidArgumentError('options', 'an object with at least k', options, context);
  }
  checkOptions(options, [...SPARSE_OT_OPTION_KEYS, ...extraKeys], context);
}

/**
 * The problem part of `solveSparseOT`-style options (k, gamma, marginals, sparsity, hostReads),
 * for `sparseOTProblem`; the solver settings are left out.
 *
 * @example
 * ```ts
 * const problem = sparseOTProblem(cost, problemSpec({k: 4, solver: 'newton'}), 'mine'); // spec {k: 4}
 * ```
 */
export function problemSpec(options: SparseOTOptions): SparseOTProblemSpec {
  const {k, gamma, a, b, sparsity, hostReads} = options;
  return {k, gamma, a, b, sparsity, hostReads};
}

/**
 * The solver object that `solveSparseOT` runs for `options` on `problem`: `'auto'` picks
 * `alternating` when k is below the bounded side's size (the routing case) and `newton`
 * otherwise; the options' iteration budget, tolerance, learning rate, CG steps, check interval
 * and formulation go to the solver that reads them. Errors name the option (context `solveSparseOT`).
 *
 * @example
 * ```ts
 * const solver = solverForOptions({k: 10, solver: 'auto'}, problem); // an AlternatingSolver
 * ```
 */
export function solverForOptions(options: SparseOTOptions, problem: SparseOTProblem): SparseOTSolver {
  const solverOpt = assertOneOf('solver', options.solver ?? 'auto', ['auto', 'alternating', 'newton', 'adam'] as const, CONTEXT);
  const formulation = assertOneOf('formulation', options.formulation ?? 'semidual', ['semidual', 'dual'] as const, CONTEXT);
  const learningRate = assertPositiveNumber('learningRate', options.learningRate ?? 1e-2, CONTEXT);
  const maxIterations = options.maxIterations === undefined ? undefined : assertPositiveInt('maxIterations', options.maxIterations, CONTEXT);
  const tolerance = checkTolerance(options.tolerance ?? 1e-5, CONTEXT);
  const cgIterations = assertPositiveInt('cgIterations', options.cgIterations ?? 10, CONTEXT);
  const checkEvery = options.checkEvery === undefined ? undefined : assertPositiveInt('checkEvery', options.checkEvery, CONTEXT);
  const kind = solverOpt === 'auto' ? (problem.k < problem.mi ? 'alternating' : 'newton') : solverOpt;
  if (kind === 'adam') return adam({learningRate, maxIterations, tolerance, formulation});
  if (kind === 'newton') return newton({maxIterations, tolerance, cgIterations, checkEvery, formulation});
  return alternating({maxIterations, tolerance, checkEvery, formulation});
}

/**
 * An output in the legacy {@link SparseOTResult} form (the output's tensors, taken over).
 *
 * @example
 * ```ts
 * const result = toSparseOTResult(alternating().solve(problem));
 * ```
 */
export function toSparseOTResult(out: SparseOTOutput): SparseOTResult {
  return {
    plan: out.plan, alpha: out.potentials.alpha, beta: out.potentials.beta, value: out.value,
    iterations: out.iterations, converged: out.converged, feasible: out.feasible,
    get marginalError() {
      return out.marginalStatsSync('solveSparseOT result').marginalError;
    },
    get meanRowError() {
      return out.marginalStatsSync('solveSparseOT result').meanRowError;
    },
    get droppedFraction() {
      return out.marginalStatsSync('solveSparseOT result').droppedFraction;
    },
    marginalStats: () => out.marginalStats(),
    dispose: () => out.dispose(),
  };
}

/**
 * Solves k-sparse optimal transport (Liu, Puigcerver & Blondel, ICLR 2023) in one call: the
 * quadratically regularized transport problem `min <T, C> + (gamma/2) ||T||^2` over plans with
 * marginals `a`, `b` and at most `k` nonzeros per column (`sparsity: 'column'`, default: an
 * expert takes at most k tokens) or per row (`'row'`: a token goes to at most k experts), through
 * its (semi-)dual relaxation. Batched problems (`[groups, m, n]`) are solved together, each group
 * on its own (its result does not depend on the other groups).
 *
 * A convenience over `sparseOTProblem` + a solver object + `solve` (see `solverForOptions` for
 * which solver runs). Solvers: `'auto'` (default) picks `'alternating'` when k is below the
 * bounded side's size and `'newton'` otherwise; `'adam'` is the released V-MoE reference
 * (learning rate 1e-2, 20 steps from zero). With `formulation: 'dual'`, `'adam'` ascends
 * `(alpha, beta)` jointly; the other solvers solve the semi-dual (whose optimum has the same
 * value) and return the dual pair it implies, `beta_j = -gamma b_j tau_j`.
 *
 * For k < m the relaxation's plan can break the row marginals even at the optimum;
 * `marginalError`, `meanRowError` and `droppedFraction` report it (read back synchronously on
 * first access; the output objects read them with `await output.marginalStats()` instead), and
 * `feasible` says whether any k-sparse plan could meet them. The input is validated (typed errors
 * name the argument; an unknown option key, also in `init`, is an `UnknownOptionError`): this reads the cost's finiteness and the marginals back from the device
 * once. With `hostReads: false` (the default on webgpu, where synchronous reads fail) none of
 * these reads happen: see {@link SparseOTOptions.hostReads}.
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
  checkSparseOTOptions(options, CONTEXT);
  const problem = sparseOTProblem(cost, {...problemSpec(options), k: assertPositiveInt('k', options.k, CONTEXT)}, CONTEXT);
  try {
    return toSparseOTResult(solverForOptions(options, problem).solve(problem, options.init));
  } finally {
    problem.dispose();
  }
}
