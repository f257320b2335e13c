/**
 * The public API of the k-sparse optimal-transport core (re-exported by the package index).
 */
export {kSparseSimplexProjection, sparsemax} from './projection';
export type {ProjectionOptions} from './projection';
export {solveSparseOT} from './solve';
export {semidualPlan, semidualValue} from './semidual';
export {dualPlan} from './dual';
export {sinkhorn} from './sinkhorn';
export {isFeasible, minFeasibleK, feasibleForMarginals} from './feasibility';
export {marginalStats, marginalStatsTensor} from './result';
export {defaultHostReads} from './problem';
export type {
  Sparsity, Formulation, SolverName, MarginalLike, SparseOTOptions, SparseOTResult, SinkhornOptions, SinkhornResult,
} from './types';
