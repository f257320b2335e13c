/**
 * The plan as a differentiable function of the cost, by implicit differentiation (a tfjs op in
 * the house style: `sparseOTPlan = op({sparseOTPlan_})`, a `customGrad` that `save()`s the plan
 * for the backward pass). The forward pass builds the problem once and runs a solver object (no
 * gradient is taped through its iterations); the backward pass is {@link sparseOTPlanVJP} on the
 * saved plan, with gamma, sparsity and formulation taken from the problem and the solver.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError} from '../../core/errors';
import {checkOptions} from '../../core/options';
import type {SparseOTOutput} from '../output';
import {sparseOTProblem, type SparseOTProblemSpec} from '../problem';
import type {SolverInit, SparseOTSolver} from '../solvers/solver';
import {sparseOTPlanVJP, type ImplicitGradientOptions} from './vjp';

/**
 * Options of {@link sparseOTPlan} and {@link implicitSolve}: the warm start of the forward solve
 * and the conjugate-gradient settings of the backward pass.
 *
 * @example
 * ```ts
 * const options: ImplicitOptions = {space: 'experts', maxIterations: 40};
 * ```
 */
export interface ImplicitOptions extends Pick<ImplicitGradientOptions, 'space' | 'maxIterations' | 'tolerance'> {
  /** Warm start of the forward solve (see `SolverInit`). */
  init?: SolverInit;
}

/**
 * Solves the problem `(cost, spec)` with `solver` and returns the full output, whose `plan`
 * carries the implicit gradient with respect to `cost` (the other tensors are constants). The
 * problem is validated once, in the forward pass.
 *
 * @param cost `<float32>[m, n]` or `[groups, m, n]`.
 * @param spec The problem's marginals, k, gamma and sparsity (see `SparseOTProblemSpec`).
 * @param solver A solver object (`adam()`, `newton()`, `alternating()`); Sinkhorn's entropic
 *   plan has no implicit gradient here and is rejected.
 * @returns A `SparseOTOutput`; dispose it when done.
 *
 * @example
 * ```ts
 * const loss = (c: tf.Tensor) => {
 *   const out = implicitSolve(c, {k: 4}, alternating());
 *   const l = tf.sum(tf.mul(out.plan, weights));
 *   out.dispose();
 *   return l;
 * };
 * const dCost = tf.grad(loss)(cost); // <float32>[m, n]
 * ```
 */
export function implicitSolve(cost: tf.Tensor, spec: SparseOTProblemSpec, solver: SparseOTSolver, options: ImplicitOptions = {}): SparseOTOutput {
  const context = 'sparseOTPlan';
  if (solver === null || typeof solver !== 'object' || typeof solver.solve !== 'function') {
    throw new InvalidArgumentError('solver', 'a solver object (adam(), newton(), alternating())', solver, context);
  }
  if (solver.formulation === null) {
    throw new InvalidArgumentError('solver', `a k-sparse solver with a formulation (not '${solver.name}')`, solver.name, context);
  }
  checkOptions(options, ['space', 'maxIterations', 'tolerance', 'init'], context);
  const vjpOptions: ImplicitGradientOptions = {
    gamma: spec.gamma ?? 1,
    formulation: solver.formulation,
    sparsity: spec.sparsity ?? 'column',
    space: options.space,
    maxIterations: options.maxIterations,
    tolerance: options.tolerance,
  };
  let solved: SparseOTOutput | null = null;
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [c, save] = args as [tf.Tensor, tf.GradSaveFunc];
    const problem = sparseOTProblem(c, spec, context);
    try {
      solved = solver.solve(problem, options.init);
    } finally {
      problem.dispose();
    }
    solved.keepAllButPlan();
    save([solved.plan]);
    return {
      value: solved.plan,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [sparseOTPlanVJP(saved[0], dy, vjpOptions)],
    };
  });
  const plan = f(cost);
  return (solved as unknown as SparseOTOutput).withPlan(plan);
}

function sparseOTPlan_(cost: tf.Tensor | tf.TensorLike, spec: SparseOTProblemSpec, solver: SparseOTSolver, options: ImplicitOptions = {}): tf.Tensor {
  const c = cost instanceof tf.Tensor ? cost : tf.tensor(cost as tf.TensorLike, undefined, 'float32');
  const out = implicitSolve(c, spec, solver, options);
  const plan = tf.clone(out.plan); // the clone carries the plan's gradient
  out.dispose();
  return plan;
}

/**
 * The k-sparse transport plan of `cost`, differentiable by implicit differentiation of the
 * optimality conditions on its support (implicit-gradients.md): exact in the smooth regime, the
 * fixed-support (generalized) Jacobian at a kink, zero when the plan is integral.
 *
 * @param cost `<float32>[m, n]` or `[groups, m, n]` (or a nested array).
 * @param spec The problem's marginals, k, gamma and sparsity (see `SparseOTProblemSpec`).
 * @param solver A solver object: `adam()`, `newton()` or `alternating()`.
 * @param options Warm start and CG settings (see {@link ImplicitOptions}).
 * @returns `<float32>` plan of the cost's shape.
 *
 * @example
 * ```ts
 * const grad = tf.grad((c: tf.Tensor) => tf.sum(tf.mul(sparseOTPlan(c, {k: 4}, newton()), weights)));
 * const dCost = grad(cost); // <float32>[m, n]
 * ```
 */
export const sparseOTPlan = tf.op({sparseOTPlan_});
