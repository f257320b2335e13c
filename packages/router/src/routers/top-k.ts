/**
 * Token-choice top-k routing: top-1 is the Switch Transformer router (Fedus et al. 2021), top-2
 * the GShard router (Lepikhin et al. 2020). Each token asks for its k most probable experts;
 * experts accept requests until their capacity is full (first choices of all tokens before any
 * second choice), so demand above capacity shows up as dropped tokens.
 */
import * as tf from '@tensorflow/tfjs';
import {assignTokenChoice} from './capacity';
import {gatherTokenExpertValues} from '../moe/dispatch';
import {assertPositiveInt, InvalidArgumentError} from '../core/errors';
import {oneHot} from './one-hot';
import {untracked} from '../core/stop-gradient';
import {assertBoolean, Router, type RouterArgs, type RoutingDecision, type RoutingInput} from './router';

/**
 * Arguments of {@link TopKRouter}. `loadBalanceLossWeight` defaults to 0.01 here (Switch); the
 * other shared arguments (z-loss, jitter, logit noise, bias) are those of {@link RouterArgs}.
 *
 * @example
 * ```ts
 * const args: TopKRouterArgs = {numExperts: 8, k: 2, normalizeGates: true, zLossWeight: 1e-3};
 * ```
 */
export interface TopKRouterArgs extends RouterArgs {
  /** Experts per token: 1 (Switch) or 2 (GShard), any integer in [1, numExperts]. Default 1. */
  k?: number;
  /**
   * Batch-prioritized routing (Riquelme et al. 2021): tokens with a larger top gate fill the
   * expert buffers first, instead of going in group order. Default false.
   */
  batchPrioritizedRouting?: boolean;
  /**
   * Divide each token's k gates by their sum before capacity (GShard's top-2 convention), so a
   * token kept by all its experts has weights summing to 1. Default false (Switch: raw gates).
   */
  normalizeGates?: boolean;
}

/**
 * Top-k token-choice router. Combine weight of a kept (token, expert) pair = the softmax gate
 * (optionally normalized over the token's k choices); gradients reach the router through the
 * softmax. Auxiliary loss = `loadBalanceLossWeight * loadBalanceLoss + zLossWeight * zLoss` (base class).
 *
 * @example
 * ```ts
 * const layer = moe({numExperts: 8, hiddenDim: 256, router: topKRouter({numExperts: 8, k: 2})});
 * // or: moe({numExperts: 8, hiddenDim: 256, router: {name: 'topk', k: 2, zLossWeight: 1e-3}})
 * ```
 */
export class TopKRouter extends Router {
  static className = 'TopKRouter';
  readonly k: number;
  readonly batchPrioritizedRouting: boolean;
  readonly normalizeGates: boolean;

  constructor(args: TopKRouterArgs) {
    super(args, ['k', 'batchPrioritizedRouting', 'normalizeGates'], {loadBalanceLossWeight: 0.01});
    const ctx = 'TopKRouter';
    this.k = assertPositiveInt('k', args.k ?? 1, ctx);
    if (this.k > this.numExperts) {
      throw new InvalidArgumentError('k', `an integer in [1, numExperts = ${this.numExperts}]`, this.k, ctx);
    }
    this.batchPrioritizedRouting = assertBoolean('batchPrioritizedRouting', args.batchPrioritizedRouting ?? false, ctx);
    this.normalizeGates = assertBoolean('normalizeGates', args.normalizeGates ?? false, ctx);
  }

  override get expertsPerToken(): number {
    return this.k;
  }

  protected computeRouting({gates, mask, capacity}: RoutingInput): RoutingDecision {
    const choices = untracked(() => tf.topk(gates, this.k).indices) as tf.Tensor3D; // [G, S, k]
    const priority = this.batchPrioritizedRouting ? untracked(() => tf.max(gates, 2) as tf.Tensor2D) : undefined;
    const {tokenIndices, demand} = assignTokenChoice(choices, this.numExperts, capacity, mask, priority);
    let source = gates;
    if (this.normalizeGates) {
      const chosen = tf.sum(oneHot(choices, this.numExperts), 2); // [G, S, E], 1 on chosen experts
      source = tf.div(gates, tf.sum(tf.mul(gates, chosen), 2, true)) as tf.Tensor3D;
    }
    return {tokenIndices, combineWeights: gatherTokenExpertValues(source, tokenIndices), demand};
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      k: this.k,
      batchPrioritizedRouting: this.batchPrioritizedRouting,
      normalizeGates: this.normalizeGates,
    };
  }
}
tf.serialization.registerClass(TopKRouter);

/**
 * Creates a {@link TopKRouter}.
 *
 * @example
 * ```ts
 * const switchRouter = topKRouter({numExperts: 8}); // top-1, load-balancing loss weight 0.01
 * const gshardRouter = topKRouter({numExperts: 8, k: 2, normalizeGates: true});
 * ```
 */
export function topKRouter(args: TopKRouterArgs): TopKRouter {
  return new TopKRouter(args);
}
