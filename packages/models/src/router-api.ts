/**
 * The parts of `@tfjs-moe/router` that the models package builds on, imported in one place.
 */
export {moe, MoE, routerNames} from '@tfjs-moe/router';
export type {MoEArgs, RoutingMetricValues} from '@tfjs-moe/router';
