/**
 * Auxiliary router losses: the Switch Transformer load-balancing loss (Fedus et al. 2021) and
 * the router z-loss (ST-MoE, Zoph et al. 2022). Both respect a token mask.
 */
import * as tf from '@tensorflow/tfjs';
import {oneHot} from './one-hot';

/**
 * Switch load-balancing loss, averaged over groups:
 * `E * sum_e f_e * P_e`, where `f_e` is the fraction of real tokens whose first choice is expert
 * e (not differentiable) and `P_e` the mean gate probability of e over real tokens. It equals 1
 * for a perfectly uniform router and grows up to E when everything goes to one expert.
 *
 * @param gates `<float32>[groups, groupSize, E]` softmax probabilities
 * @param firstChoice `<int32>[groups, groupSize]` each token's top-1 expert
 * @param mask `<float32>[groups, groupSize]`, 1 = real token (optional)
 * @returns `<float32>[]`
 *
 * @example
 * ```ts
 * // 2 tokens, 2 experts: f = [1, 0], P = [0.7, 0.3] -> 2 * (1 * 0.7 + 0 * 0.3) = 1.4
 * loadBalancingLoss(tf.tensor3d([[[0.8, 0.2], [0.6, 0.4]]]), tf.tensor2d([[0, 0]], [1, 2], 'int32')).print(); // 1.4
 * ```
 */
export function loadBalancingLoss(gates: tf.Tensor3D, firstChoice: tf.Tensor2D, mask?: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const [groups, groupSize, experts] = gates.shape;
    const m = mask ?? tf.ones([groups, groupSize]);
    const tokens = tf.maximum(tf.sum(m, 1, true), 1); // [G, 1]
    const m3 = tf.expandDims(m, 2);
    const f = tf.div(tf.sum(tf.mul(oneHot(firstChoice, experts), m3), 1), tokens); // [G, E]
    const p = tf.div(tf.sum(tf.mul(gates, m3), 1), tokens); // [G, E]
    return tf.mul(tf.mean(tf.sum(tf.mul(f, p), 1)), experts) as tf.Scalar;
  });
}

/**
 * Router z-loss: the mean over real tokens of `logsumexp(logits)^2`. Keeps logits small for
 * numerical stability.
 *
 * @param logits `<float32>[groups, groupSize, E]`
 * @param mask `<float32>[groups, groupSize]`, 1 = real token (optional)
 * @returns `<float32>[]`
 *
 * @example
 * ```ts
 * // logsumexp([0, 0]) = ln 2 = 0.6931; squared 0.4805
 * routerZLoss(tf.zeros([1, 1, 2]) as tf.Tensor3D).print(); // 0.4805
 * ```
 */
export function routerZLoss(logits: tf.Tensor3D, mask?: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const z = tf.square(tf.logSumExp(logits, 2)); // [G, S]
    if (!mask) return tf.mean(z) as tf.Scalar;
    return tf.div(tf.sum(tf.mul(z, mask)), tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
  });
}
