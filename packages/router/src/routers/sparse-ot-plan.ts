/**
 * The transport plan of a {@link SparseOTRouter} call, built from the OT core's objects: the
 * cost, the problem's specification (marginals, k, gamma, sparsity), the solver object named by
 * the router's solver config, and the plan with the gradient the router's gradient mode asks for
 * (none, implicit through `implicitSolve`, or unrolled through `unrolledSparseOT`).
 */
import * as tf from '@tensorflow/tfjs';
import {stopGradient} from '../core/stop-gradient';
import {implicitSolve} from '../ot/gradients/implicit-op';
import {unrolledSparseOT} from '../ot/gradients/unrolled';
import type {SparseOTOutput} from '../ot/output';
import {sparseOTProblem, type SparseOTProblemSpec} from '../ot/problem';
import {adam} from '../ot/solvers/adam';
import {alternating} from '../ot/solvers/alternating';
import {newton} from '../ot/solvers/newton';
import type {SolverInit, SparseOTSolver} from '../ot/solvers/solver';
import type {ResolvedGradient, ResolvedSolver} from './sparse-ot-config';

/** Cost given to padding tokens: far above every real cost, so no expert's top-k reaches them. */
const MASKED_COST = 1e4;
const CONTEXT = 'SparseOTRouter';

/**
 * Cost of sending a token to an expert: `-softmax(logits)` (the reference) or `-logits`.
 *
 * @example
 * ```ts
 * sparseOTRouter({numExperts: 8, cost: 'negative-logits'});
 * ```
 */
export type OTCost = 'negative-softmax' | 'negative-logits';

/**
 * The transport cost `<float32>[G, S, E]`: `-gates` or `-logits`; padding rows (mask 0) get a
 * cost far above every real one.
 *
 * @example
 * ```ts
 * const cost = transportCost('negative-softmax', logits, gates, mask);
 * ```
 */
export function transportCost(kind: OTCost, logits: tf.Tensor3D, gates: tf.Tensor3D, mask: tf.Tensor2D | undefined): tf.Tensor3D {
  const cost = kind === 'negative-softmax' ? tf.neg(gates) : tf.neg(logits);
  if (!mask) return cost as tf.Tensor3D;
  const m = tf.expandDims(mask, 2);
  return tf.add(tf.mul(cost, m), tf.mul(tf.sub(1, m), MASKED_COST)) as tf.Tensor3D;
}

/**
 * The problem's marginals for a router call on a cost of shape `[groups, groupSize, E]`:
 * `a_i = mask_i` (padding sends nothing), `b_j = realTokens / E`. A group with no real token
 * gets uniform marginals, so that its solve is well-posed; {@link solveTransportPlan} masks its
 * plan to zero afterwards (it routes nothing).
 *
 * @returns `a <float32>[G, S]` and `b <float32>[G, E]`, or the numbers 1 and `S / E` without a mask.
 *
 * @example
 * ```ts
 * const {a, b} = routingMarginals([4, 64, 8], mask);
 * ```
 */
export function routingMarginals(shape: number[], mask: tf.Tensor2D | undefined): {a: number | tf.Tensor2D; b: number | tf.Tensor2D} {
  const [, groupSize, experts] = shape;
  if (!mask) return {a: 1, b: groupSize / experts};
  const empty = tf.equal(tf.sum(mask, 1, true), 0); // [G, 1]
  const a = tf.where(tf.tile(empty, [1, groupSize]), tf.onesLike(mask), mask) as tf.Tensor2D;
  const b = tf.tile(tf.div(tf.sum(a, 1, true), experts), [1, experts]) as tf.Tensor2D;
  return {a, b};
}

/**
 * The solver object for a router's solver config, on a problem with bound `k` over a side of
 * `boundedSize` entries: `Auto` takes alternating below k = boundedSize (the routing case) and
 * Newton at k = boundedSize, as `solveSparseOT` does; a config without `maxIterations` keeps the
 * solver's own budget.
 *
 * @example
 * ```ts
 * const solver = routerSolver(resolveSolver('auto'), 10, 64); // an AlternatingSolver
 * ```
 */
export function routerSolver(s: ResolvedSolver, k: number, boundedSize: number): SparseOTSolver {
  const kind = s.className === 'Auto' ? (k < boundedSize ? 'Alternating' : 'Newton') : s.className;
  const settings = s.config.maxIterations === null
    ? {formulation: s.config.formulation}
    : {formulation: s.config.formulation, maxIterations: s.config.maxIterations};
  if (kind === 'Adam') return adam({...settings, learningRate: s.config.learningRate ?? undefined});
  if (kind === 'Newton') return newton(settings);
  return alternating(settings);
}

/** The plan of one call, and the solver's output (its `plan` is the same tensor; stats dropped). */
export interface SolvedPlan {
  /** `<float32>[G, S, E]`, zero on padding rows and in groups with no real token. */
  plan: tf.Tensor3D;
  /** The solver's output: potentials, value, iterations, convergence. Dispose its tensors but the plan. */
  output: SparseOTOutput;
}

/**
 * Solves the routing problem and returns its plan, differentiable as `gradient` says:
 * `SoftmaxCombine`: a constant (the solve runs off the tape); `ImplicitDifferentiation`: the
 * `implicitSolve` op; `Unrolled`: the constant solve's row potentials start `iterations`
 * differentiable Newton steps (`unrolledSparseOT`). Padding rows of `spec.a` and groups whose
 * mass is zero get a zero plan.
 *
 * @param cost `<float32>[G, S, E]` from {@link transportCost}.
 * @param spec the problem (marginals from {@link routingMarginals}, k, gamma, sparsity).
 * @param solver from {@link routerSolver}.
 * @param init warm start of the solve (training only).
 *
 * @example
 * ```ts
 * const {plan, output} = solveTransportPlan(cost, spec, solver, resolveGradient('implicit'));
 * ```
 */
export function solveTransportPlan(
  cost: tf.Tensor3D, spec: SparseOTProblemSpec, solver: SparseOTSolver, gradient: ResolvedGradient, init?: SolverInit,
): SolvedPlan {
  const implicit = gradient.className === 'ImplicitDifferentiation';
  const output = implicit ? implicitSolve(cost, spec, solver, {space: gradient.config.space, init}) : solveAsConstant(cost, spec, solver, init);
  output.dropStats();
  let plan = output.plan as tf.Tensor3D;
  if (gradient.className === 'Unrolled') {
    const alpha = output.potentials.alpha;
    plan = unrolledSparseOT(cost, {
      k: spec.k as number, gamma: spec.gamma, a: spec.a as number | tf.Tensor, b: spec.b as number | tf.Tensor,
      sparsity: spec.sparsity, iterations: gradient.config.iterations,
      init: spec.sparsity === 'row' ? undefined : stopGradient(alpha),
    }).plan as tf.Tensor3D;
  }
  const a = spec.a;
  if (a instanceof tf.Tensor) plan = tf.mul(plan, tf.expandDims(tf.mul(a, tf.cast(tf.greater(tf.sum(a, 1, true), 0), 'float32')), 2)) as tf.Tensor3D;
  return {plan, output};
}

/**
 * Runs the solver untaped (its iterations never enter a gradient tape) and returns its output,
 * whose plan is a constant of the cost (zero gradient).
 */
function solveAsConstant(cost: tf.Tensor3D, spec: SparseOTProblemSpec, solver: SparseOTSolver, init: SolverInit | undefined): SparseOTOutput {
  let solved: SparseOTOutput | null = null;
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const problem = sparseOTProblem(args[0] as tf.Tensor, spec, CONTEXT);
    try {
      solved = solver.solve(problem, init);
    } finally {
      problem.dispose();
    }
    solved.keepAllButPlan();
    return {value: solved.plan, gradFunc: (dy: tf.Tensor) => [tf.zerosLike(dy)]};
  });
  const plan = f(cost);
  return (solved as unknown as SparseOTOutput).withPlan(plan);
}
