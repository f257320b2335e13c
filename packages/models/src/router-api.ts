/**
 * The parts of `@tfjs-moe/router` that the models package builds on, imported in one place.
 *
 * TEMPORARY: the router barrel (`packages/router/src/index.ts`, owned by the lead) does not export
 * the MoE layer and the registry yet, so this file reaches into the router's sources. That works
 * in jest and type-checks through the project reference, but the compiled `dist/` would require
 * `.ts` files: switch these lines to `from '@tfjs-moe/router'` as soon as the barrel exports them
 * (requested in /work/notes/requests.md).
 */
export {moe, MoE} from '../../router/src/moe-layer';
export type {MoEArgs} from '../../router/src/moe-layer';
export {routerNames} from '../../router/src/routers/registry';
export type {RoutingMetricValues} from '../../router/src/routing-result';
