/**
 * Expert-choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing"):
 * every expert picks the `capacity` tokens of its group with the highest gate probability, so
 * load is balanced by construction and a token may be taken by several experts or by none.
 * The rule looks at the whole group (all tokens), so it is not causal.
 */
import * as tf from '@tensorflow/tfjs';
import {gatherTokenExpertValues} from '../moe/dispatch';
import {untracked} from '../core/stop-gradient';
import {takeAlongAxis1} from './take';
import {Router, type RouterArgs, type RoutingDecision, type RoutingInput} from './router';

/**
 * Arguments of {@link ExpertChoiceRouter}: those of every router (the paper uses no auxiliary
 * loss, so both loss weights default to 0).
 *
 * @example
 * ```ts
 * const args: ExpertChoiceRouterArgs = {numExperts: 8, zLossWeight: 1e-3};
 * ```
 */
export type ExpertChoiceRouterArgs = RouterArgs;

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

  protected computeRouting({gates, mask, capacity}: RoutingInput): RoutingDecision {
    const [groups, , experts] = gates.shape;
    const tokenIndices = untracked(() => {
      // Masked tokens score -1 (gates are >= 0), so they come last and are then emptied.
      const scores = mask ? tf.where(tf.greater(tf.expandDims(mask, 2), 0), gates, tf.fill(gates.shape, -1)) : gates;
      const chosen = tf.topk(tf.transpose(scores, [0, 2, 1]), capacity).indices; // [G, E, C]
      if (!mask) return chosen;
      const real = tf.reshape(takeAlongAxis1(mask, tf.reshape(chosen, [groups, experts * capacity]) as tf.Tensor2D), chosen.shape);
      return tf.where(tf.greater(real, 0), chosen, tf.fill(chosen.shape, -1, 'int32'));
    }) as tf.Tensor3D;
    return {tokenIndices, combineWeights: gatherTokenExpertValues(gates, tokenIndices)};
  }
}
tf.serialization.registerClass(ExpertChoiceRouter);

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
