/**
 * `sparseOTPlanImplicit(cost, options, solveSparseOT, onResult?)`: the earlier entry point of
 * the implicit gradient, kept as a convenience over {@link implicitSolve} (options in the form of
 * `solveSparseOT`'s, the solver picked as `solveSparseOT` picks it). New code calls
 * `sparseOTPlan(cost, spec, solver)` or `implicitSolve(cost, spec, solver)` with a solver object.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, assertPositiveInt} from '../../core/errors';
import {sparseOTProblem} from '../problem';
import {checkOptions} from '../../core/options';
import {checkSparseOTOptions, problemSpec, solveSparseOT, solverForOptions, toSparseOTResult} from '../solve';
import type {SparseOTOptions, SparseOTResult} from '../types';
import {implicitSolve} from './implicit-op';
import type {ImplicitGradientOptions} from './vjp';

/**
 * A function with the signature of `solveSparseOT`.
 *
 * @example
 * ```ts
 * const solve: SolveFunction = solveSparseOT;
 * ```
 */
export type SolveFunction = (cost: tf.Tensor, options: SparseOTOptions) => SparseOTResult;

/**
 * Options of {@link sparseOTPlanImplicit}: those of the solve plus the CG settings.
 *
 * @example
 * ```ts
 * const options: ImplicitPlanOptions = {k: 8, gamma: 1, implicit: {space: 'experts'}};
 * ```
 */
export interface ImplicitPlanOptions extends SparseOTOptions {
  /** CG settings of the backward pass (gamma, formulation and sparsity come from the solve). */
  implicit?: Pick<ImplicitGradientOptions, 'space' | 'maxIterations' | 'tolerance'>;
}

/**
 * Solves the k-sparse OT problem and returns its plan as a differentiable function of the cost
 * (a convenience over {@link implicitSolve}). `onResult` receives the solve's result (potentials,
 * metrics) before the call returns; it owns those tensors except `plan`, which is returned.
 *
 * @param cost `<float32>[m, n]` or `<float32>[groups, m, n]`.
 * @param options `solveSparseOT`'s options plus `implicit` (the backward pass's CG settings).
 * @param solver Must be `solveSparseOT` (kept for compatibility; the solver is picked from `options`).
 * @returns `<float32>` plan of the cost's shape, with the implicit gradient attached.
 *
 * @example
 * ```ts
 * const grad = tf.grad((c: tf.Tensor) =>
 *   tf.sum(tf.mul(sparseOTPlanImplicit(c, {k: 4}, solveSparseOT), weights)));
 * const dCost = grad(cost); // <float32>[m, n]
 * ```
 */
export function sparseOTPlanImplicit(
  cost: tf.Tensor,
  options: ImplicitPlanOptions,
  solver: SolveFunction = solveSparseOT,
  onResult?: (result: SparseOTResult) => void,
): tf.Tensor {
  const context = 'sparseOTPlanImplicit';
  if (solver !== solveSparseOT) {
    throw new InvalidArgumentError('solver', 'solveSparseOT (other solvers: pass a solver object to implicitSolve)', solver, context);
  }
  checkSparseOTOptions(options, context, ['implicit']);
  checkOptions(options.implicit, ['space', 'maxIterations', 'tolerance'], `${context}.implicit`);
  const {implicit, init} = options;
  const spec = problemSpec(options);
  const k = assertPositiveInt('k', spec.k, context);
  // The solver object is chosen on a problem of the same shape and k ('auto' depends on both).
  const probe = sparseOTProblem(cost, {...spec, k, hostReads: false}, context);
  const solverObject = solverForOptions(options, probe);
  probe.dispose();
  const out = implicitSolve(cost, {...spec, k}, solverObject, {...implicit, init});
  if (onResult) {
    // As before, the result's lazy statistics are not kept (the callee owns alpha, beta, value only).
    out.dropStats();
    const result = toSparseOTResult(out);
    result.dispose = () => out.release(); // the plan is returned, not the result's to dispose
    onResult(result);
  } else {
    out.release();
  }
  return out.plan;
}
