/**
 * The routing rules. Importing this module registers every router with tf.serialization.
 */
export {Router, resolveInitializer, serializeInitializer, assertLossWeight, assertBoolean, LAYER_ARG_NAMES, ROUTER_ARG_NAMES} from './router';
export type {RouterArgs, RouteOptions, RoutingInput, RoutingDecision, InitializerLike} from './router';
export {getRouterClass, createRouter, routerNames, registerRouter, ROUTER_ALIASES} from './registry';
export type {RouterClass, RouterSpec, RouterName} from './registry';
export {TopKRouter, topKRouter} from './top-k';
export type {TopKRouterArgs} from './top-k';
export {ExpertChoiceRouter, expertChoiceRouter} from './expert-choice';
export type {ExpertChoiceRouterArgs} from './expert-choice';
export {SinkhornRouter, sinkhornRouter} from './sinkhorn';
export type {SinkhornRouterArgs} from './sinkhorn';
export {SparseOTRouter, sparseOTRouter} from './sparse-ot';
export type {SparseOTRouterArgs, OTCost} from './sparse-ot';
export {resolveSolver, resolveGradient, resolveAssignment} from './sparse-ot-config';
export type {
  OTSolverConfig, OTGradientConfig, OTAssignmentConfig, OTSolverName, OTGradientMode, OTRoutingDirection,
  OTSolverLike, OTGradientLike, OTAssignmentLike, ResolvedSolver, ResolvedGradient, ResolvedAssignment, LegacySparseOTArgs,
} from './sparse-ot-config';
export {rebalanceAssignment} from './rebalance';
export {setRouterInputChecks} from './input-checks';
export type {RouterInputChecks} from './input-checks';
export {oneHot} from './one-hot';
