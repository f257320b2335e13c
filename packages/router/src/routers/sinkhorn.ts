/**
 * S-BASE routing (Clark et al. 2022, "Unified Scaling Laws for Routed Language Models"): in
 * training, the token-expert scores are balanced by entropic optimal transport (Sinkhorn), each
 * token goes to the expert where its balanced plan row is largest (top-1), and its combine weight
 * is its softmax gate for that expert. Gradients reach the router through the softmax only.
 * At inference the plain top-1 expert of the gates is used unless `balanceInference` is set.
 */
import * as tf from '@tensorflow/tfjs';
import {assignTokenChoice} from './capacity';
import {gatherTokenExpertValues} from '../moe/dispatch';
import {assertPositiveInt, assertPositiveNumber} from '../core/errors';
import {sinkhorn} from '../ot/sinkhorn';
import {defaultHostReads} from '../ot/validate';
import {untracked} from '../core/stop-gradient';
import {assertBoolean, Router, type RouterArgs, type RoutingDecision, type RoutingInput} from './router';

/**
 * Arguments of {@link SinkhornRouter}.
 *
 * @example
 * ```ts
 * const args: SinkhornRouterArgs = {numExperts: 8, epsilon: 0.1, iterations: 20};
 * ```
 */
export interface SinkhornRouterArgs extends RouterArgs {
  /** Entropic regularization of the balancing Sinkhorn, on the scale of the logits. Default 0.1. */
  epsilon?: number;
  /** Sinkhorn iterations (fixed; one read-back per call). Default 20. */
  iterations?: number;
  /** Balance at inference too (then an output depends on its whole group). Default false. */
  balanceInference?: boolean;
  /**
   * Whether the balancing Sinkhorn may read values back synchronously (see
   * `SinkhornOptions.hostReads`). Default: decided per call, `tf.getBackend() !== 'webgpu'`.
   * With `false` a balanced forward pass makes no synchronous read.
   */
  hostReads?: boolean;
}

/**
 * Sinkhorn-balanced top-1 router. Balancing solves, per group, entropic OT with cost `-logits`,
 * one unit of mass per real token and `realTokens / E` per expert; masked tokens carry no mass.
 * The balanced top-1 choices then fill expert slots up to capacity as in Switch routing (first come
 * first served in group order), so a plan that is not fully converged can still drop a few tokens.
 *
 * @example
 * ```ts
 * const layer = moe({numExperts: 8, hiddenDim: 256, router: {name: 'sinkhorn', epsilon: 0.1}});
 * ```
 */
export class SinkhornRouter extends Router {
  static className = 'SinkhornRouter';
  readonly epsilon: number;
  readonly iterations: number;
  readonly balanceInference: boolean;
  /** Host reads allowed in the balancing Sinkhorn; null: the backend decides per call. */
  readonly hostReads: boolean | null;

  constructor(args: SinkhornRouterArgs) {
    super(args, ['epsilon', 'iterations', 'balanceInference', 'hostReads']);
    const ctx = 'SinkhornRouter';
    this.epsilon = assertPositiveNumber('epsilon', args.epsilon ?? 0.1, ctx);
    this.iterations = assertPositiveInt('iterations', args.iterations ?? 20, ctx);
    this.balanceInference = assertBoolean('balanceInference', args.balanceInference ?? false, ctx);
    this.hostReads = args.hostReads == null ? null : assertBoolean('hostReads', args.hostReads, ctx);
  }

  /** The balancing Sinkhorn reads its inputs back; plain top-1 inference reads nothing; `hostReads: false` forbids any read. */
  protected override readsBack(training: boolean): boolean | null {
    if (this.hostReads === false) return null;
    return (training || this.balanceInference) && defaultHostReads();
  }

  protected computeRouting({logits, gates, mask, training, capacity}: RoutingInput): RoutingDecision {
    const [groups, groupSize, experts] = logits.shape;
    const balance = training || this.balanceInference;
    const choices = untracked(() => {
      if (!balance) return tf.reshape(tf.argMax(logits, 2), [groups, groupSize, 1]);
      // Marginals: 1 per real token, realTokens / E per expert. A group with no real token
      // gets uniform marginals (its choices are masked out by the assignment anyway).
      const m = mask ?? tf.ones([groups, groupSize]);
      const empty = tf.equal(tf.sum(m, 1, true), 0);
      const a = tf.where(tf.tile(empty, [1, groupSize]), tf.onesLike(m), m);
      const b = tf.tile(tf.div(tf.sum(a, 1, true), experts), [1, experts]);
      const r = sinkhorn(tf.neg(logits), {
        epsilon: this.epsilon, a, b, maxIterations: this.iterations, tolerance: 0, checkEvery: this.iterations,
        ...(this.hostReads === null ? {} : {hostReads: this.hostReads}),
      });
      const best = tf.reshape(tf.argMax(r.plan, 2), [groups, groupSize, 1]);
      r.dispose();
      return best;
    }) as tf.Tensor3D;
    const {tokenIndices, demand} = assignTokenChoice(choices, experts, capacity, mask);
    return {tokenIndices, combineWeights: gatherTokenExpertValues(gates, tokenIndices), demand};
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      ...super.getConfig(),
      epsilon: this.epsilon,
      iterations: this.iterations,
      balanceInference: this.balanceInference,
    };
    if (this.hostReads !== null) config.hostReads = this.hostReads;
    return config;
  }
}
tf.serialization.registerClass(SinkhornRouter);

/**
 * Creates a {@link SinkhornRouter}.
 *
 * @example
 * ```ts
 * const router = sinkhornRouter({numExperts: 8, epsilon: 0.1, iterations: 20});
 * ```
 */
export function sinkhornRouter(args: SinkhornRouterArgs): SinkhornRouter {
  return new SinkhornRouter(args);
}
