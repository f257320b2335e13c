/**
 * The standard routing metrics shared by every router (names documented in
 * `routing-result.ts`). All values are tensors; nothing is read back here.
 */
import * as tf from '@tensorflow/tfjs';
import type {StandardMetrics} from './routing-result';
import {oneHot} from './one-hot';
import {untracked} from '../core/stop-gradient';

/** Inputs of {@link standardMetrics}. */
export interface StandardMetricsInput {
  /** `<int32>[groups, experts, capacity]`, -1 in empty slots. */
  tokenIndices: tf.Tensor3D;
  /** `<float32>[groups, groupSize, experts]`: gate probabilities (softmax of the logits). */
  gates: tf.Tensor3D;
  /** `<float32>[groups, groupSize]`, 1 = real token (optional: all real). */
  mask?: tf.Tensor2D;
  /**
   * `<float32>[groups, experts]`: tokens that asked for each expert before capacity. Default:
   * the number of real tokens whose largest gate is the expert.
   */
  demand?: tf.Tensor2D;
}

/** The standard metrics that {@link standardMetrics} computes (the losses come from the router). */
export type AssignmentMetrics = Omit<StandardMetrics, 'loadBalanceLoss' | 'zLoss' | 'auxiliaryLoss'>;

/**
 * Computes `demand`, `tokensPerExpert` (+ `Min`/`Mean`/`Max`), `droppedFraction`,
 * `expertsPerTokenMin`/`Mean`/`Max`, `importance` and `routerEntropy` (nats). Per-expert vectors are means over groups;
 * min and max run over every (group, expert) or every real token.
 *
 * @example
 * ```ts
 * const m = standardMetrics({tokenIndices, gates});
 * m.droppedFraction.print();
 * ```
 */
export function standardMetrics(input: StandardMetricsInput): AssignmentMetrics {
  return tf.tidy(() => {
    const {tokenIndices} = input;
    const gates = untracked(() => tf.clone(input.gates)) as tf.Tensor3D;
    const [groups, experts] = tokenIndices.shape;
    const groupSize = gates.shape[1];
    const mask = input.mask ?? (tf.ones([groups, groupSize]) as tf.Tensor2D);
    const realTokens = tf.maximum(tf.sum(mask), 1);

    const filled = tf.cast(tf.greaterEqual(tokenIndices, 0), 'float32');
    const keptPerExpert = tf.sum(filled, 2); // [G, E]

    // Experts per token: scatter-add 1 per filled slot; empty slots land in the spare last row.
    const offsets = tf.reshape(tf.mul(tf.range(0, groups, 1, 'int32'), tf.scalar(groupSize, 'int32')), [groups, 1, 1]);
    const rows = tf.where(tf.greaterEqual(tokenIndices, 0), tf.add(tokenIndices, offsets), tf.fill(tokenIndices.shape, groups * groupSize, 'int32'));
    const counts = tf.reshape(
      tf.slice(tf.scatterND(tf.reshape(rows, [-1, 1]), tf.reshape(filled, [-1]), [groups * groupSize + 1]), [0], [groups * groupSize]),
      [groups, groupSize],
    );
    const isReal = tf.greater(mask, 0);
    const dropped = tf.mul(tf.cast(tf.equal(counts, 0), 'float32'), mask);

    let demand: tf.Tensor = input.demand ?? tf.sum(tf.mul(oneHot(tf.argMax(gates, 2), experts), tf.expandDims(mask, 2)), 1);
    demand = tf.mean(demand, 0);
    const importance = tf.div(tf.sum(tf.mul(gates, tf.expandDims(mask, 2)), [0, 1]), realTokens);
    // -p ln p with 0 ln 0 = 0: a zero gate meets ln(tiny), a finite number, times 0.
    const tokenEntropy = tf.neg(tf.sum(tf.mul(gates, tf.log(tf.maximum(gates, 1e-30))), 2)); // [G, S]
    const routerEntropy = tf.div(tf.sum(tf.mul(tokenEntropy, mask)), realTokens);

    return {
      demand,
      tokensPerExpert: tf.mean(keptPerExpert, 0),
      tokensPerExpertMin: tf.min(keptPerExpert),
      tokensPerExpertMean: tf.mean(keptPerExpert),
      tokensPerExpertMax: tf.max(keptPerExpert),
      droppedFraction: tf.div(tf.sum(dropped), realTokens),
      expertsPerTokenMin: tf.min(tf.where(isReal, counts, tf.fill(counts.shape, Infinity))),
      expertsPerTokenMean: tf.div(tf.sum(tf.mul(counts, mask)), realTokens),
      expertsPerTokenMax: tf.max(tf.where(isReal, counts, tf.fill(counts.shape, -Infinity))),
      importance,
      routerEntropy,
    } as AssignmentMetrics;
  });
}
