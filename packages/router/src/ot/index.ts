/**
 * `@tfjs-moe/router/ot`: the k-sparse optimal-transport core, as problem, solver and output
 * (in the shape of ott-jax and POT), with gradients through the plan.
 *
 * - `sparseOTProblem(cost, {a, b, k, gamma, sparsity})` -> a validated `SparseOTProblem`.
 * - Solver objects `adam()`, `newton()`, `alternating()`, `sinkhornSolver()`, one interface
 *   `solver.solve(problem, init?)` -> `SparseOTOutput` (plan, potentials, value, iterations,
 *   converged, `await out.marginalStats()`).
 * - `sparseOTPlan(cost, spec, solver)` (a tfjs op) / `implicitSolve`: the plan with its implicit
 *   gradient; `sparseOTPlanVJP`; `unrolledSparseOT`.
 * - Conveniences: `solveSparseOT(cost, options)` and `sinkhorn(cost, options)` (the earlier
 *   one-call entry points, kept working).
 *
 * @example
 * ```ts
 * import {sparseOTProblem, alternating} from '@tfjs-moe/router/ot';
 * const problem = sparseOTProblem(tf.neg(tf.softmax(logits)), {k: 10}); // logits <float32>[64, 8]
 * const out = alternating().solve(problem);
 * console.log(await out.marginalStats());
 * tf.dispose([problem, out]);
 * ```
 */
export {sparseOTProblem, SparseOTProblem, defaultHostReads} from './problem';
export type {SparseOTProblemSpec} from './problem';
export {SparseOTOutput, marginalStats, marginalStatsTensor} from './output';
export type {MarginalStats, Potentials} from './output';
export type {SparseOTSolver, SolverInit, SolverKind} from './solvers/solver';
export {adam, AdamSolver} from './solvers/adam';
export type {AdamSolverConfig} from './solvers/adam';
export {newton, NewtonSolver} from './solvers/newton';
export type {NewtonSolverConfig} from './solvers/newton';
export {alternating, AlternatingSolver} from './solvers/alternating';
export type {AlternatingSolverConfig} from './solvers/alternating';
export {sinkhornSolver, SinkhornSolver} from './solvers/sinkhorn';
export type {SinkhornSolverConfig} from './solvers/sinkhorn';
export {solverFromConfig} from './solvers/registry';
export {setHostSolvers} from './solvers/host';
export {setWasmSolver, wasmSolverActive} from './solvers/host-alternating-wasm';
export {kSparseSimplexProjection, sparsemax, kSparseProjectionFixedSupport} from './projection';
export type {ProjectionOptions} from './projection';
export {semidualPlan, semidualValue} from './semidual';
export {dualPlan} from './dual';
export {isFeasible, minFeasibleK, feasibleForMarginals} from './feasibility';
export {conjugateGradient} from './linalg/cg';
export type {ConjugateGradientOptions} from './linalg/cg';
export type {ImplicitSolveSpace} from './support-graph';
export {sparseOTPlanVJP} from './gradients/vjp';
export type {ImplicitGradientOptions} from './gradients/vjp';
export {sparseOTPlan, implicitSolve} from './gradients/implicit-op';
export type {ImplicitOptions} from './gradients/implicit-op';
export {unrolledSparseOT} from './gradients/unrolled';
export type {UnrolledSparseOTOptions, UnrolledSparseOTResult} from './gradients/unrolled';
// Conveniences (the earlier one-call entry points).
export {solveSparseOT, solverForOptions} from './solve';
export {sinkhorn} from './sinkhorn';
export type {
  Sparsity, Formulation, SolverName, MarginalLike, SparseOTOptions, SparseOTResult, SinkhornOptions, SinkhornResult,
} from './types';
