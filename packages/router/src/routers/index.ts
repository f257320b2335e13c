/**
 * The routing rules. Importing this module registers every router by name (see `registry.ts`).
 */
export {Router, resolveInitializer, serializeInitializer, assertLossWeight} from './router';
export type {RouterArgs, RouteOptions, RoutingParts, InitializerLike} from './router';
export {registerRouter, getRouterClass, createRouter, routerNames} from './registry';
export type {RouterClass, RouterSpec} from './registry';
export {TopKRouter, topKRouter} from './top-k';
export type {TopKRouterArgs} from './top-k';
export {ExpertChoiceRouter, expertChoiceRouter} from './expert-choice';
export type {ExpertChoiceRouterArgs} from './expert-choice';
export {SinkhornRouter, sinkhornRouter} from './sinkhorn';
export type {SinkhornRouterArgs} from './sinkhorn';
export {SparseOTRouter, sparseOTRouter} from './sparse-ot';
export type {SparseOTRouterArgs, OTGradientMode, OTRoutingDirection, OTCost, OTDispatchMode} from './sparse-ot';
