/**
 * The interface every solver implements (`solve(problem, init?) -> SparseOTOutput`), and the two
 * steps the semi-dual solvers share: the starting potentials (zero, a warm start, or the best
 * response to warm-start column potentials) and the output at the final row potentials.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, assertOneOf, assertPositiveInt} from '../../core/errors';
import {checkOptions} from '../../core/options';
import {evalDual} from '../dual';
import {makeOutput, type SparseOTOutput} from '../output';
import type {SparseOTProblem} from '../problem';
import {projectRows} from '../projection';
import {betaFromTau, type SemidualEval} from '../semidual';
import type {Formulation} from '../types';
import {readInit} from '../validate';
import {checkTolerance} from './tolerance';

/**
 * Warm-start potentials in the caller's layout (e.g. an earlier output's `potentials`):
 * `alpha <float32>[m]` / `[groups, m]`, `beta <float32>[n]` / `[groups, n]`. Only `beta` (per
 * expert) can carry over between batches of different tokens.
 *
 * @example
 * ```ts
 * solver.solve(problem, {beta: previous.potentials.beta});
 * ```
 */
export interface SolverInit {
  alpha?: tf.Tensor;
  beta?: tf.Tensor;
}

/**
 * A solver of a {@link SparseOTProblem}: an object with its own configuration (defaults
 * applied, validated at construction) and one method. `getConfig()` gives the
 * `{className, config}` form that rebuilds it through {@link solverFromConfig}.
 *
 * @example
 * ```ts
 * const solver: SparseOTSolver = newton({maxIterations: 50});
 * const out = solver.solve(problem);
 * ```
 */
export interface SparseOTSolver {
  /** `'adam'`, `'newton'`, `'alternating'` or `'sinkhorn'`. */
  readonly name: SolverKind;
  /** The plan's formulation, for the implicit gradient (Sinkhorn's entropic plan has none). */
  readonly formulation: Formulation | null;
  solve(problem: SparseOTProblem, init?: SolverInit): SparseOTOutput;
  getConfig(): {className: string; config: Record<string, unknown>};
}

/** The solver kinds. */
export type SolverKind = 'adam' | 'newton' | 'alternating' | 'sinkhorn';

/** The class name of each solver kind (the `className` of `getConfig()`). */
export const SOLVER_CLASS_NAMES: Readonly<Record<SolverKind, string>> = {
  adam: 'AdamSolver', newton: 'NewtonSolver', alternating: 'AlternatingSolver', sinkhorn: 'SinkhornSolver',
};

/** The settings every iterative solver has. */
export interface IterationConfig {
  maxIterations?: number;
  tolerance?: number;
  checkEvery?: number;
  formulation?: Formulation;
}

/**
 * Validates a solver's configuration: unknown keys (`UnknownOptionError`, naming the nearest
 * known key), then the shared settings with the solver's defaults. Returns the shared settings.
 *
 * @example
 * ```ts
 * const shared = iterationConfig(config, ['maxIterations', 'tolerance'], {maxIterations: 30, tolerance: 1e-5, checkEvery: 5}, 'newton');
 * ```
 */
export function iterationConfig(
  config: IterationConfig, known: readonly string[], defaults: {maxIterations: number; tolerance: number; checkEvery: number}, context: string,
): {maxIterations: number; tolerance: number; checkEvery: number; formulation: Formulation} {
  checkOptions(config, known, context);
  return {
    maxIterations: assertPositiveInt('maxIterations', config.maxIterations ?? defaults.maxIterations, context),
    tolerance: checkTolerance(config.tolerance ?? defaults.tolerance, context),
    checkEvery: assertPositiveInt('checkEvery', config.checkEvery ?? defaults.checkEvery, context),
    formulation: assertOneOf('formulation', config.formulation ?? 'semidual', ['semidual', 'dual'] as const, context),
  };
}

/**
 * What the solver classes share: the validated configuration, `formulation` and `getConfig()`.
 *
 * @example
 * ```ts
 * class MySolver extends SolverBase<{maxIterations: number}> { ... }
 * ```
 */
export abstract class SolverBase<C extends object> implements SparseOTSolver {
  abstract readonly name: SolverKind;

  constructor(readonly config: Readonly<C>) {}

  get formulation(): Formulation | null {
    return (this.config as {formulation?: Formulation}).formulation ?? null;
  }

  getConfig(): {className: string; config: Record<string, unknown>} {
    return {className: SOLVER_CLASS_NAMES[this.name], config: {...this.config}};
  }

  abstract solve(problem: SparseOTProblem, init?: SolverInit): SparseOTOutput;
}

/**
 * The row potentials that best respond to column potentials `beta`, ignoring the cardinality
 * bound: for each row i, `alpha_i = -gamma a_i tau_i` with `tau_i` the sparsemax threshold of
 * `(beta - C[i, :]) / (gamma a_i)`, so that `sum_j [alpha_i + beta_j - C_ij]_+ / gamma = a_i`.
 * Used to warm-start the semi-dual from per-expert potentials.
 *
 * @param beta `<float32>[groups, n]` @param costRows `<float32>[groups, m, n]` @param a `<float32>[groups, m]`
 * @returns `<float32>[groups, m]`
 *
 * @example
 * ```ts
 * const alpha0 = rowBestResponse(beta, problem.costRows, problem.a, problem.gamma);
 * ```
 */
export function rowBestResponse(beta: tf.Tensor2D, costRows: tf.Tensor3D, a: tf.Tensor2D, gamma: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [groups, m, n] = costRows.shape;
    const a3 = tf.reshape(a, [groups, m, 1]);
    const aSafe = tf.where(tf.greater(a3, 0), a3, tf.onesLike(a3));
    const x = tf.div(tf.sub(tf.reshape(beta, [groups, 1, n]), costRows), tf.mul(aSafe, gamma));
    const parts = projectRows(tf.reshape(x, [groups * m, n]) as tf.Tensor2D, n, 1);
    return tf.mul(tf.mul(tf.reshape(parts.tau, [groups, m]), a), -gamma) as tf.Tensor2D;
  });
}

/**
 * The validated warm start in the internal layout (`alpha <float32>[groups, mi]`,
 * `beta <float32>[groups, ni]`), or undefined entries. Errors name `init.alpha` / `init.beta`.
 *
 * @example
 * ```ts
 * const start = readStart(problem, init); // then dispose start.alpha / start.beta
 * ```
 */
export function readStart(problem: SparseOTProblem, init: SolverInit | undefined): {alpha?: tf.Tensor2D; beta?: tf.Tensor2D} {
  if (init === undefined) return {};
  const {groups, m, n, batched, context, hostReads} = problem;
  if (init === null || typeof init !== 'object') {
    throw new InvalidArgumentError('init', 'an object {alpha?, beta?}', init, context);
  }
  checkOptions(init, ['alpha', 'beta'], `${context}.init`);
  const alpha = readInit('init.alpha', init.alpha, groups, m, batched, context, hostReads);
  const beta = readInit('init.beta', init.beta, groups, n, batched, context, hostReads);
  return problem.columnSparse ? {alpha, beta} : {alpha: beta, beta: alpha};
}

/**
 * The semi-dual's starting row potentials (internal layout, a new tensor): the warm start's
 * alpha, else the best response to its beta, else zero.
 *
 * @example
 * ```ts
 * const alpha0 = startingAlpha(problem, readStart(problem, init));
 * ```
 */
export function startingAlpha(problem: SparseOTProblem, start: {alpha?: tf.Tensor2D; beta?: tf.Tensor2D}): tf.Tensor2D {
  if (start.alpha) return tf.clone(start.alpha);
  if (start.beta) return rowBestResponse(start.beta, problem.costRows, problem.a, problem.gamma);
  return tf.zeros([problem.groups, problem.mi]);
}

/**
 * The output of a semi-dual solve at row potentials `alpha` with their evaluation `ev` (both
 * taken over): the dual pair `(alpha, beta_j = -gamma b_j tau_j)` with the semi-dual's plan and
 * value, or, for `formulation: 'dual'`, the dual's plan and value at that pair.
 *
 * @example
 * ```ts
 * return semidualOutput(problem, alpha, ev, iterations, converged, 'semidual');
 * ```
 */
export function semidualOutput(
  problem: SparseOTProblem, alpha: tf.Tensor2D, ev: SemidualEval, iterations: number, converged: boolean, formulation: Formulation,
): SparseOTOutput {
  const {costT, a, b, k, gamma} = problem;
  const beta = betaFromTau(ev.tau, b, gamma);
  tf.dispose([ev.support, ev.tau, ev.grad]);
  if (formulation === 'semidual') return makeOutput(problem, ev.planT, alpha, beta, ev.value, iterations, converged);
  tf.dispose([ev.planT, ev.value]);
  const dv = evalDual(alpha, beta, costT, a, b, k, gamma);
  tf.dispose([dv.gradAlpha, dv.gradBeta]);
  return makeOutput(problem, dv.planT, alpha, beta, dv.value, iterations, converged);
}
