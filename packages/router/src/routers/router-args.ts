/**
 * What every router is given: its constructor arguments ({@link RouterArgs}, with the names the
 * base class accepts), the options of one `route` call, what a routing rule receives
 * ({@link RoutingInput}) and decides ({@link RoutingDecision}), and the argument checks and
 * initializer (de)serialization the routers share.
 */
import * as tf from '@tensorflow/tfjs';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import type {Initializer} from '@tensorflow/tfjs-layers/dist/initializers';
import {ConfigError, InvalidArgumentError} from '../core/errors';

/**
 * An initializer given by name (a `tf.initializers` factory name such as `'glorotNormal'` or its
 * class name `'GlorotNormal'`), as a serialized `{className, config}`, or as an instance.
 */
export type InitializerLike = string | {className: string; config?: Record<string, unknown>} | Initializer;

/** Resolves an {@link InitializerLike} to an initializer instance. Unknown names throw ConfigError. */
export function resolveInitializer(init: InitializerLike, argument: string): Initializer {
  if (typeof init === 'object' && init !== null && 'apply' in init && typeof init.apply === 'function') return init as Initializer;
  const spec = typeof init === 'string' ? {className: init, config: {}} : (init as {className: string; config?: Record<string, unknown>});
  const name = typeof spec?.className === 'string' ? spec.className : '';
  const className = name.charAt(0).toUpperCase() + name.slice(1);
  const map = tf.serialization.SerializationMap.getMap().classNameMap;
  const entry = map[className];
  if (!entry) throw new ConfigError(argument, 'a tf.initializers name (e.g. "glorotNormal") or {className, config}', init);
  const [cls, fromConfig] = entry;
  return fromConfig(cls, (spec.config ?? {}) as tf.serialization.ConfigDict) as unknown as Initializer;
}

/** Serializes an initializer as `{className, config}` for `getConfig()`. */
export function serializeInitializer(init: Initializer): tf.serialization.ConfigDict {
  return {className: init.getClassName(), config: init.getConfig()};
}

/** The keys of tfjs's `LayerArgs`, accepted by every router (and written by `getConfig`). */
export const LAYER_ARG_NAMES = ['name', 'trainable', 'inputShape', 'batchInputShape', 'batchSize', 'dtype', 'weights', 'inputDType'] as const;

/** The arguments that {@link RouterArgs} adds to `LayerArgs`. */
export const ROUTER_ARG_NAMES = [
  'numExperts', 'kernelInitializer', 'useBias', 'biasInitializer', 'loadBalanceLossWeight', 'zLossWeight', 'jitterNoise', 'logitNoise', 'seed',
] as const;

/**
 * Constructor arguments shared by every router.
 *
 * @example
 * ```ts
 * const args: RouterArgs = {numExperts: 8, useBias: true, zLossWeight: 1e-3, logitNoise: 1 / 8};
 * ```
 */
export interface RouterArgs extends LayerArgs {
  /** Number of experts E (>= 1). Set by the MoE layer when the router is given by name. */
  numExperts: number;
  /**
   * Initializer of the router kernel `<float32>[d, E]`. Default `'leCunNormal'` (flax's default
   * for the dense router of vmoe).
   */
  kernelInitializer?: InitializerLike;
  /**
   * Add a learned bias `<float32>[E]` to the router logits (as in Tutel and DeepSpeed-MoE's gate).
   * Default false (bias-free, as vmoe, Switch and flaxformer).
   */
  useBias?: boolean;
  /** Initializer of the router bias. Default `'zeros'`. */
  biasInitializer?: InitializerLike;
  /**
   * Weight of the Switch load-balancing loss (Fedus et al. 2021, eq. 4; see `losses.ts`) in the
   * auxiliary loss. Default 0, except `TopKRouter`: 0.01 (Switch).
   */
  loadBalanceLossWeight?: number;
  /** Weight of the router z-loss (ST-MoE, Zoph et al. 2022, eq. 5) in the auxiliary loss. Default 0 (ST-MoE uses 1e-3). */
  zLossWeight?: number;
  /**
   * Multiplicative jitter on the router input, training only: tokens are scaled elementwise by
   * `U(1 - jitterNoise, 1 + jitterNoise)` before the logits (Switch uses 0.01). In `[0, 1)`. Default 0.
   */
  jitterNoise?: number;
  /**
   * Additive Gaussian noise on the router logits, training only: `logits + N(0, logitNoise^2)`
   * before routing and gates (noisy gating, Shazeer et al. 2017 with a fixed scale; Tutel's
   * `gate_noise`; DeepSpeed's `RSample` policy samples Gumbel noise instead). The standard
   * deviation, in logit units, >= 0. Default 0.
   */
  logitNoise?: number;
  /**
   * Seed of the training noise (jitter and logit noise), a non-negative integer: the i-th draw
   * after construction or {@link Router.setNoiseSeed} uses a seed derived from it and i, so the
   * noise never comes from `Math.random`. Default: unseeded (tfjs seeds each draw itself).
   */
  seed?: number;
}

/** Options of one {@link Router.route} call. */
export interface RouteOptions {
  /**
   * `<float32>[groups, groupSize]`: 1 for a real token, 0 for padding. Masked tokens take no part
   * in routing, in the marginals, in the losses or in the metrics, and are never dispatched.
   * Default: every token is real.
   */
  mask?: tf.Tensor2D;
  /**
   * Training mode. Jitter and logit noise, training-only balancing and warm starts apply only
   * when true; with false the result for a group depends on that group alone.
   */
  training: boolean;
  /**
   * Slots per expert and group, an integer in `[1, groupSize]`. The MoE layer computes it with
   * {@link Router.computeCapacity} from `capacityFactor` (training) or `evalCapacityFactor`
   * (inference), or sets it to `groupSize` for dropless inference.
   */
  capacity: number;
}

/** What a routing rule ({@link Router.computeRouting}) is given. */
export interface RoutingInput {
  /** `<float32>[groups, groupSize, E]`: router logits (bias and training noise applied). */
  logits: tf.Tensor3D;
  /** `<float32>[groups, groupSize, E]`: `softmax(logits)` over experts. */
  gates: tf.Tensor3D;
  /** `<float32>[groups, groupSize]`, 1 = real token; undefined when every token is real. */
  mask: tf.Tensor2D | undefined;
  /** Training mode. */
  training: boolean;
  /** Slots per expert, in `[1, groupSize]`. */
  capacity: number;
  /**
   * Whether the call computes metrics ({@link Router.computeMetrics}): with false, the rule may
   * skip its own `metrics` and `demand` (the base class discards them anyway).
   */
  metrics: boolean;
}

/** What a routing rule decides; the base class adds the losses and the standard metrics. */
export interface RoutingDecision {
  /** `<int32>[groups, E, capacity]`: token index (within its group) per expert slot, -1 when empty. */
  tokenIndices: tf.Tensor3D;
  /** `<float32>[groups, E, capacity]`, 0 in empty slots. */
  combineWeights: tf.Tensor3D;
  /**
   * `<float32>[groups, E]`: tokens that asked for each expert before capacity, or undefined
   * (then: tokens whose largest gate is the expert).
   */
  demand?: tf.Tensor2D;
  /** The rule's own metrics (scalars or `[E]` vectors), e.g. the OT solver's. */
  metrics?: Record<string, tf.Tensor>;
}

/** Validates a non-negative weight or scale (e.g. `zLossWeight`, `logitNoise`). */
export function assertLossWeight(argument: string, value: unknown, context: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(argument, 'a finite number >= 0', value, context);
  }
  return value;
}

/** Validates a seed: a non-negative integer. */
export function assertSeed(value: unknown, context: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new InvalidArgumentError('seed', 'a non-negative integer', value, context);
  return value;
}

/** Validates a boolean argument. */
export function assertBoolean(argument: string, value: unknown, context: string): boolean {
  if (typeof value !== 'boolean') throw new InvalidArgumentError(argument, 'a boolean', value, context);
  return value;
}
