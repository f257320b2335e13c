/**
 * The first step of every MoE call (`call` and `inspect` alike): check the input, flatten its
 * leading axes, group the tokens and route the groups; and the router logits of those groups.
 */
import * as tf from '@tensorflow/tfjs';
import {NonFiniteError, ShapeError} from '../core/errors';
import type {Router} from '../routers/router';
import type {RoutingResult} from '../routers/routing-result';
import {groupTokens, type GroupingMode, type TokenGroups} from './grouping';

/** What one call routes: the groups, the routing and the bookkeeping to undo the grouping. */
export interface RoutedGroups {
  groups: TokenGroups;
  routing: RoutingResult;
  capacity: number;
  /** Leading axes of the input (`[...batch]`), their product, and tokens per example. */
  lead: number[];
  batch: number;
  tokens: number;
}

/** The parts of an MoE layer that grouping and routing read. */
export interface RoutingLayer {
  readonly name: string;
  readonly router: Router;
  readonly groupingMode: GroupingMode;
  readonly groupSize: number | undefined;
  readonly built: boolean;
  readonly kernelIn: tf.LayerVariable | null;
  build(inputShape: tf.Shape): void;
  capacityFor(groupSize: number, training: boolean): number;
}

/**
 * Checks the inputs, flattens `<float32>[...batch, tokens, d]` to `[batch, tokens, d]`, groups
 * the tokens as the layer does and routes the groups (building the layer on first use).
 *
 * @throws {ShapeError} for an input of rank < 2, with no token, another model dimension, or a mask of another shape
 * @throws {NonFiniteError} naming `inputs` (and the layer) when the router finds NaN or Infinity in them
 *
 * @example
 * ```ts
 * const r = routeGroups(layer, x, undefined, false); // r.routing.tokenIndices: <int32>[G, E, C]
 * ```
 */
export function routeGroups(layer: RoutingLayer, x: tf.Tensor, userMask: tf.Tensor | undefined, training: boolean): RoutedGroups {
  const ctx = 'MoE';
  if (!(x instanceof tf.Tensor) || x.rank < 2) {
    throw new ShapeError('inputs', 'a tensor [..., tokens, d] of rank >= 2', x instanceof tf.Tensor ? x.shape : x, ctx);
  }
  if (x.size === 0) throw new ShapeError('inputs', 'a non-empty tensor [..., tokens, d] (at least one token)', x.shape, `${ctx} '${layer.name}'`);
  if (!layer.built) layer.build(x.shape);
  const d = x.shape[x.rank - 1];
  const tokens = x.shape[x.rank - 2];
  const lead = x.shape.slice(0, -2);
  const dModel = (layer.kernelIn as tf.LayerVariable).shape[1];
  if (d !== dModel) throw new ShapeError('inputs', `a model dimension (last axis) of ${dModel}`, x.shape, ctx);
  if (userMask != null && (userMask.rank !== x.rank - 1 || userMask.shape.some((s, i) => s !== x.shape[i]))) {
    throw new ShapeError('mask', `a tensor of shape [${x.shape.slice(0, -1).join(', ')}]`, userMask.shape, ctx);
  }
  const batch = lead.reduce((a, b) => a * b, 1);
  const x3 = tf.reshape(x, [batch, tokens, d]) as tf.Tensor3D;
  const m2 = userMask == null ? undefined : (tf.reshape(userMask, [batch, tokens]) as tf.Tensor2D);
  const groups = groupTokens(x3, layer.groupingMode, layer.groupSize, m2);
  const capacity = layer.capacityFor(groups.groupSize, training);
  let routing: RoutingResult;
  try {
    routing = layer.router.route(groups.tokens, {mask: groups.mask, training, capacity});
  } catch (e) {
    // The router checked its tokens, which are the layer's inputs regrouped: name the inputs.
    if (e instanceof NonFiniteError && e.argument === 'tokens') {
      throw new NonFiniteError('inputs', `finite (no NaN or Infinity; shape [${x.shape.join(', ')}])`, e.value, `${ctx} '${layer.name}'`);
    }
    throw e;
  }
  return {groups, routing, capacity, lead, batch, tokens};
}

/**
 * `<float32>[G, S, E]`: the router logits of the groups (from the result when the router
 * returns them, else the noise-free logits through the router's own computation).
 *
 * @example
 * ```ts
 * const logits = groupLogits(layer.router, routeGroups(layer, x, undefined, false));
 * ```
 */
export function groupLogits(router: Router, r: RoutedGroups): tf.Tensor3D {
  const fromResult = (r.routing as unknown as {logits?: tf.Tensor3D; routerLogits?: tf.Tensor3D});
  const given = fromResult.routerLogits ?? fromResult.logits;
  if (given instanceof tf.Tensor) return given.clone();
  return (router as unknown as {computeLogits(t: tf.Tensor3D, training: boolean): tf.Tensor3D}).computeLogits(r.groups.tokens, false);
}
