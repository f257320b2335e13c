/**
 * Expert-choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing"):
 * every expert picks the `capacity` tokens of its group with the highest gate probability, so
 * load is balanced by construction and a token may be taken by several experts or by none.
 * The rule looks at the whole group (all tokens), so it is not causal.
 */
import * as tf from '@tensorflow/tfjs';
import {gatherTokenExpertValues} from '../moe/dispatch';
import {routerZLoss} from './losses';
import {stopGradient, untracked} from '../core/stop-gradient';
import {assertLossWeight, Router, RouterArgs, RoutingParts} from './router';
import {registerRouter} from './registry';

/** Arguments of {@link ExpertChoiceRouter}. */
export interface ExpertChoiceRouterArgs extends RouterArgs {
  /** Weight of the router z-loss in the auxiliary loss. Default 0 (the paper uses no auxiliary loss). */
  zLossWeight?: number;
}

/**
 * Expert-choice router. Gates `softmax(logits)` over experts; expert e takes the top-`capacity`
 * tokens of column e (ties: lower token index first); its combine weight for a token is that
 * token's gate. Masked tokens are never taken (slots stay empty if fewer real tokens than
 * capacity). Capacity is `ceil(groupSize * capacityFactor / E)` (the paper's `k = n c / e`;
 * it uses capacity factor 2).
 *
 * @example
 * ```ts
 * const layer = moe({numExperts: 8, hiddenDim: 256, router: 'expert-choice', capacityFactor: 2});
 * ```
 */
export class ExpertChoiceRouter extends Router {
  static className = 'ExpertChoiceRouter';
  readonly zLossWeight: number;

  constructor(args: ExpertChoiceRouterArgs) {
    super(args);
    this.zLossWeight = assertLossWeight('zLossWeight', args.zLossWeight ?? 0, 'ExpertChoiceRouter');
  }

  protected computeRouting(logits: tf.Tensor3D, mask: tf.Tensor2D | undefined, training: boolean, capacity: number): RoutingParts {
    void training;
    const [groups, , experts] = logits.shape;
    const gates = tf.softmax(logits) as tf.Tensor3D;
    const expertIndices = untracked(() => {
      // Masked tokens score -1 (gates are >= 0), so they come last and are then emptied.
      const scores = mask ? tf.where(tf.greater(tf.expandDims(mask, 2), 0), gates, tf.fill(gates.shape, -1)) : gates;
      const chosen = tf.topk(tf.transpose(scores, [0, 2, 1]), capacity).indices; // [G, E, C]
      if (!mask) return chosen;
      const real = tf.reshape(tf.gather(mask, tf.reshape(chosen, [groups, experts * capacity]), 1, 1), chosen.shape);
      return tf.where(tf.greater(real, 0), chosen, tf.fill(chosen.shape, -1, 'int32'));
    }) as tf.Tensor3D;
    const combineWeights = gatherTokenExpertValues(gates, expertIndices);
    const z = routerZLoss(logits, mask);
    const aux = tf.mul(z, this.zLossWeight) as tf.Scalar;
    return this.finishRouting(expertIndices, combineWeights, aux, gates, mask, undefined, {zLoss: stopGradient(z)});
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), zLossWeight: this.zLossWeight};
  }
}
tf.serialization.registerClass(ExpertChoiceRouter);
registerRouter('expert-choice', ExpertChoiceRouter);

/**
 * Creates an {@link ExpertChoiceRouter}.
 *
 * @example
 * ```ts
 * const router = expertChoiceRouter({numExperts: 8});
 * ```
 */
export function expertChoiceRouter(args: ExpertChoiceRouterArgs): ExpertChoiceRouter {
  return new ExpertChoiceRouter(args);
}
