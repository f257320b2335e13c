/**
 * @tfjs-moe/router: mixture-of-experts routing for TensorFlow.js.
 *
 * - The k-sparse optimal-transport core (`solveSparseOT`, `kSparseSimplexProjection`, `sinkhorn`)
 *   and gradients through the plan (`sparseOTPlan`, `unrolledSparseOT`).
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
} from './core/errors';
export {checkOptions, nearestKey, editDistance, UnknownOptionError} from './core/options';

// The optimal-transport core (also the subpath export `@tfjs-moe/router/ot`).
export * from './ot/index';

// Routing results and the routers.
export {EMPTY_SLOT, makeRoutingResult, metricsToValues, expertsOfTokens} from './routers/routing-result';
export type {RoutingMetrics, RoutingMetricValues, RoutingResult, RoutingTensors, StandardMetrics, TokenExperts} from './routers/routing-result';
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
  compactSlots,
  dispatchCompact,
  combineCompact,
} from './moe/dispatch';
export type {CompactSlots, DispatchLayout} from './moe/dispatch';
export {computeCapacity, assignTokenChoice} from './routers/capacity';
export type {TokenChoiceAssignment} from './routers/capacity';
export {effectiveGroupSize, groupTokens, ungroupTokens} from './moe/grouping';
export type {GroupingMode, TokenGroups} from './moe/grouping';
export {loadBalancingLoss, routerZLoss} from './routers/losses';
export {standardMetrics} from './routers/metrics';
export type {StandardMetricsInput, AssignmentMetrics} from './routers/metrics';
export {stopGradient, noGrad, untracked, positiveMask} from './core/stop-gradient';

// The mixture-of-experts layer.
export {MoE, moe} from './moe/moe-layer';
export type {CompactDispatch, MoEArgs, MoEActivation} from './moe/moe-args';
export {MOE_ARG_KEYS} from './moe/moe-args';
export {FEED_FORWARD_ACTIVATIONS, activationFunction, assertActivation} from './moe/activations';
export type {FeedForwardActivation} from './moe/activations';
export {PerExpertInitializer, perExpertInitializer, deriveSeed} from './moe/expert-initializer';
export type {PerExpertInitializerArgs} from './moe/expert-initializer';
export {expertFeedForward} from './moe/experts';
export type {ExpertMatMul, FeedForwardWeights} from './moe/experts';
export {defaultCapacityFactors} from './moe/capacity-defaults';
export type {CapacityFactors} from './moe/capacity-defaults';
export {rankExperts} from './moe/inspect';
export type {MoERouting, GroupedRouting} from './moe/inspect';
export {isMoELayer, moeLayers, seedRouterNoise, withRoutingMetrics, auxiliaryLoss, auxiliaryLossMetric, withAuxiliaryLoss} from './moe/model-helpers';

// Backend workarounds.
export {patchWebGPUAddN, patchWebGPUBackend, patchWebGPUInt32Transpose} from './backend/webgpu-patch';
export {activateBackend, useProjectKernels} from './backend/activate';
export {registerFastKernels, unregisterFastKernels, fastKernelsRegistered, setWasmGemm, wasmGemmActive} from './backend/fast-kernels';
export {medianTimeMs, matMulPeakGflops, timedRuns} from './backend/timing';
