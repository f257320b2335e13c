/**
 * @tfjs-moe/router: mixture-of-experts routing for TensorFlow.js.
 *
 * - The k-sparse optimal-transport core (`solveSparseOT`, `kSparseSimplexProjection`, `sinkhorn`)
 *   and gradients through the plan (`sparseOTPlanImplicit`, `unrolledSparseOT`).
 * - The routers (`sparseOTRouter`, `topKRouter`, `expertChoiceRouter`, `sinkhornRouter`), all
 *   returning one `RoutingResult`.
 * - Index dispatch/combine and the `moe` layer.
 */
export {
  TfjsMoeError,
  InvalidArgumentError,
  ShapeError,
  NonFiniteError,
  ConfigError,
  formatValue,
  assertPositiveInt,
  assertPositiveNumber,
  assertOneOf,
} from './errors';

// The optimal-transport core.
export {
  kSparseSimplexProjection,
  sparsemax,
  solveSparseOT,
  semidualPlan,
  semidualValue,
  dualPlan,
  sinkhorn,
  isFeasible,
  minFeasibleK,
  feasibleForMarginals,
  marginalStats,
  marginalStatsTensor,
  defaultHostReads,
} from './ot/index';
export type {
  ProjectionOptions,
  Sparsity,
  Formulation,
  SolverName,
  MarginalLike,
  SparseOTOptions,
  SparseOTResult,
  SinkhornOptions,
  SinkhornResult,
} from './ot/index';
export {conjugateGradient, sparseOTPlanVJP, sparseOTPlanImplicit} from './ot/implicit';
export type {ImplicitGradientOptions, ConjugateGradientOptions, ImplicitPlanOptions} from './ot/implicit';
export {unrolledSparseOT} from './ot/unrolled';
export type {UnrolledSparseOTOptions, UnrolledSparseOTResult} from './ot/unrolled';

// Routing results and the routers.
export {EMPTY_SLOT, makeRoutingResult, metricsToValues} from './routing-result';
export type {RoutingMetrics, RoutingMetricValues, RoutingResult} from './routing-result';
export * from './routers/index';

// Dispatch, combine, capacity, grouping, losses and metrics.
export {
  gatherRows,
  scatterAddRows,
  slotRowIndices,
  dispatch,
  combine,
  tokenWeightSums,
  normalizeCombineWeights,
  gatherTokenExpertValues,
} from './dispatch';
export type {DispatchLayout} from './dispatch';
export {computeCapacity, assignTokenChoice} from './capacity';
export type {TokenChoiceAssignment} from './capacity';
export {effectiveGroupSize, groupTokens, ungroupTokens} from './grouping';
export type {GroupingMode, TokenGroups} from './grouping';
export {loadBalancingLoss, routerZLoss} from './losses';
export {standardMetrics} from './metrics';
export type {StandardMetricsInput} from './metrics';
export {stopGradient, noGrad, untracked} from './stop-gradient';

// The mixture-of-experts layer.
export {MoE, moe} from './moe-layer';
export type {MoEArgs, MoEActivation} from './moe-layer';

// Backend workarounds.
export {patchWebGPUInt32Transpose} from './webgpu-patch';
