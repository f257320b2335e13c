/**
 * The parts of `@tfjs-moe/router` that the models package builds on, imported in one place.
 */
export {moe, MoE, routerNames, moeLayers, auxiliaryLoss, auxiliaryLossMetric, withAuxiliaryLoss, isMoELayer} from '@tfjs-moe/router';
export type {MoEArgs, RoutingMetricValues} from '@tfjs-moe/router';
