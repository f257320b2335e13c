/**
 * `sinkhorn(cost, options)`: the one-call convenience over `sparseOTProblem` (without k) and the
 * {@link SinkhornSolver}, returning the legacy {@link SinkhornResult} (`f`, `g`, and marginal
 * statistics read back synchronously on first access).
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, assertPositiveInt, assertPositiveNumber} from '../core/errors';
import {checkOptions} from '../core/options';
import {sparseOTProblem} from './problem';
import {SinkhornSolver} from './solvers/sinkhorn';
import {checkTolerance} from './solvers/tolerance';
import type {SinkhornOptions, SinkhornResult} from './types';
import {readInit, resolveHostReads} from './validate';

const CONTEXT = 'sinkhorn';

/** Every key of {@link SinkhornOptions} (the compiler keeps the list complete). */
const SINKHORN_OPTION_KEYS: readonly string[] = Object.keys({
  epsilon: true, a: true, b: true, maxIterations: true, tolerance: true, init: true, checkEvery: true, hostReads: true,
} satisfies Record<keyof SinkhornOptions, true>);

/**
 * Entropy-regularized OT: `min <P, C> + epsilon * sum P (log P - 1)` over plans with marginals
 * `a`, `b`, solved in the log domain (see `SinkhornSolver`). The Sinkhorn (S-BASE) router calls
 * it with `cost = -logits` (or `-log_softmax(logits)`), `a = 1` per token and `b = tokens / experts`.
 * Each group of a batched cost is solved on its own (its result does not depend on the others).
 *
 * Options: `epsilon` (default 0.05), `a` (default 1 per row), `b` (default m / n per column),
 * `maxIterations` (default 500), `tolerance` (largest relative row violation to stop at,
 * default 1e-4, checked every `checkEvery` = 10 iterations), `init` ({f, g} warm start). An
 * unknown key (also in `init`) is an `UnknownOptionError` naming it.
 *
 * @param cost `<float32>[m, n]` or `[groups, m, n]`.
 * @returns A {@link SinkhornResult} (plan `<float32>[m, n]`, `f` `[m]`, `g` `[n]`, value, errors).
 *
 * @example
 * ```ts
 * const r = sinkhorn(tf.neg(logits), {epsilon: 0.1, maxIterations: 50}); // logits [tokens, experts]
 * const assignment = tf.argMax(r.plan, 1); // balanced token -> expert assignment
 * r.dispose();
 * ```
 */
export function sinkhorn(cost: tf.Tensor, options: SinkhornOptions = {}): SinkhornResult {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options', 'an object', options, CONTEXT);
  checkOptions(options, SINKHORN_OPTION_KEYS, CONTEXT);
  if (options.init !== undefined && (options.init === null || typeof options.init !== 'object')) {
    throw new InvalidArgumentError('init', 'an object {f?, g?}', options.init, CONTEXT);
  }
  checkOptions(options.init, ['f', 'g'], `${CONTEXT}.init`);
  const hostReads = resolveHostReads(options.hostReads, CONTEXT);
  const solver = new SinkhornSolver({
    epsilon: assertPositiveNumber('epsilon', options.epsilon ?? 0.05, CONTEXT),
    maxIterations: assertPositiveInt('maxIterations', options.maxIterations ?? 500, CONTEXT),
    checkEvery: assertPositiveInt('checkEvery', options.checkEvery ?? 10, CONTEXT),
    tolerance: checkTolerance(options.tolerance ?? 1e-4, CONTEXT),
  });
  const problem = sparseOTProblem(cost, {a: options.a, b: options.b, hostReads}, CONTEXT);
  const init = options.init ?? {};
  const {groups, m, n, batched} = problem;
  try {
    // Validated here for the error messages' names (init.f, init.g); the solver reads them again.
    tf.dispose([readInit('init.f', init.f, groups, m, batched, CONTEXT, hostReads), readInit('init.g', init.g, groups, n, batched, CONTEXT, hostReads)]
      .filter((t): t is tf.Tensor2D => t !== undefined));
    const out = solver.solve(problem, {alpha: init.f, beta: init.g});
    return {
      plan: out.plan, f: out.potentials.alpha, g: out.potentials.beta, value: out.value,
      iterations: out.iterations, converged: out.converged,
      get marginalError() {
        return out.marginalStatsSync('sinkhorn result').marginalError;
      },
      get meanRowError() {
        return out.marginalStatsSync('sinkhorn result').meanRowError;
      },
      dispose: () => out.dispose(),
    };
  } finally {
    problem.dispose();
  }
}
