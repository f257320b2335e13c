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
import {loadBalancingLoss, routerZLoss} from './losses';
import {stopGradient, untracked} from '../core/stop-gradient';
import {assertLossWeight, Router, RouterArgs, RoutingParts} from './router';
import {registerRouter} from './registry';

/** Arguments of {@link TopKRouter}. */
export interface TopKRouterArgs extends RouterArgs {
  /** Experts per token: 1 (Switch) or 2 (GShard), any integer in [1, numExperts]. Default 1. */
  k?: number;
  /** Weight of the Switch load-balancing loss in the auxiliary loss. Default 0.01 (Switch). */
  loadBalanceLossWeight?: number;
  /** Weight of the router z-loss (ST-MoE) in the auxiliary loss. Default 0 (ST-MoE uses 1e-3). */
  zLossWeight?: number;
  /**
   * Multiplicative jitter on the router input in training only: tokens are scaled elementwise by
   * `U(1 - jitterNoise, 1 + jitterNoise)` before the logits (Switch uses 0.01). Default 0.
   */
  jitterNoise?: number;
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
 * softmax. Auxiliary loss = `loadBalanceLossWeight * loadBalancingLoss + zLossWeight * zLoss`.
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
  readonly loadBalanceLossWeight: number;
  readonly zLossWeight: number;
  readonly jitterNoise: number;
  readonly batchPrioritizedRouting: boolean;
  readonly normalizeGates: boolean;

  constructor(args: TopKRouterArgs) {
    super(args);
    const ctx = 'TopKRouter';
    this.k = assertPositiveInt('k', args.k ?? 1, ctx);
    if (this.k > this.numExperts) {
      throw new InvalidArgumentError('k', `an integer in [1, numExperts = ${this.numExperts}]`, this.k, ctx);
    }
    this.loadBalanceLossWeight = assertLossWeight('loadBalanceLossWeight', args.loadBalanceLossWeight ?? 0.01, ctx);
    this.zLossWeight = assertLossWeight('zLossWeight', args.zLossWeight ?? 0, ctx);
    const jitter = args.jitterNoise ?? 0;
    if (typeof jitter !== 'number' || !(jitter >= 0 && jitter < 1)) {
      throw new InvalidArgumentError('jitterNoise', 'a number in [0, 1)', jitter, ctx);
    }
    this.jitterNoise = jitter;
    this.batchPrioritizedRouting = args.batchPrioritizedRouting ?? false;
    this.normalizeGates = args.normalizeGates ?? false;
  }

  override get expertsPerToken(): number {
    return this.k;
  }

  protected override computeLogits(tokens: tf.Tensor3D, training: boolean): tf.Tensor3D {
    if (!training || this.jitterNoise === 0) return super.computeLogits(tokens, training);
    const noise = tf.randomUniform(tokens.shape, 1 - this.jitterNoise, 1 + this.jitterNoise);
    return super.computeLogits(tf.mul(tokens, noise) as tf.Tensor3D, training);
  }

  protected computeRouting(logits: tf.Tensor3D, mask: tf.Tensor2D | undefined, training: boolean, capacity: number): RoutingParts {
    void training;
    const gates = tf.softmax(logits) as tf.Tensor3D;
    const choices = untracked(() => tf.topk(gates, this.k).indices) as tf.Tensor3D; // [G, S, k]
    const priority = this.batchPrioritizedRouting ? untracked(() => tf.max(gates, 2) as tf.Tensor2D) : undefined;
    const {expertIndices, demand} = assignTokenChoice(choices, this.numExperts, capacity, mask, priority);
    let source = gates;
    if (this.normalizeGates) {
      const chosen = tf.sum(tf.oneHot(choices, this.numExperts), 2); // [G, S, E], 1 on chosen experts
      source = tf.div(gates, tf.sum(tf.mul(gates, chosen), 2, true)) as tf.Tensor3D;
    }
    const combineWeights = gatherTokenExpertValues(source, expertIndices);
    const firstChoice = tf.squeeze(tf.slice(choices, [0, 0, 0], [-1, -1, 1]), [2]) as tf.Tensor2D;
    const lb = loadBalancingLoss(gates, firstChoice, mask);
    const z = routerZLoss(logits, mask);
    const aux = tf.add(tf.mul(lb, this.loadBalanceLossWeight), tf.mul(z, this.zLossWeight)) as tf.Scalar;
    return this.finishRouting(expertIndices, combineWeights, aux, gates, mask, demand, {
      loadBalanceLoss: stopGradient(lb),
      zLoss: stopGradient(z),
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      k: this.k,
      loadBalanceLossWeight: this.loadBalanceLossWeight,
      zLossWeight: this.zLossWeight,
      jitterNoise: this.jitterNoise,
      batchPrioritizedRouting: this.batchPrioritizedRouting,
      normalizeGates: this.normalizeGates,
    };
  }
}
tf.serialization.registerClass(TopKRouter);
registerRouter('topk', TopKRouter);

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
