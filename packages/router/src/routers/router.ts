/**
 * The router base class: a tfjs `Layer` that owns the router kernel and turns tokens into a
 * {@link RoutingResult} through a template method (`route` -> `computeLogits` ->
 * abstract `computeRouting`), as flaxformer's `Router` does.
 *
 * Contract for subclasses (`TopKRouter`, `ExpertChoiceRouter`, `SinkhornRouter`,
 * `SparseOTRouter`):
 * - declare `static override className` and call `tf.serialization.registerClass(Cls)` and
 *   `registerRouter('<name>', Cls)` (from `./registry`) right after the class;
 * - implement {@link Router.computeRouting}; use {@link Router.finishRouting} for the standard
 *   metrics; override {@link Router.computeCapacity} when the rule sizes capacity differently;
 * - extend `getConfig()` with every constructor argument;
 * - any state that changes outputs must be a weight created with `addWeight` in `build()`.
 */
import * as tf from '@tensorflow/tfjs';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import type {Initializer} from '@tensorflow/tfjs-layers/dist/initializers';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {assertPositiveInt, ConfigError, InvalidArgumentError, ShapeError} from '../core/errors';
import {makeRoutingResult, RoutingMetrics, RoutingResult} from './routing-result';
import {standardMetrics} from './metrics';
import {computeCapacity} from './capacity';

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

/** Constructor arguments shared by every router. */
export interface RouterArgs extends LayerArgs {
  /** Number of experts E (>= 1). Set by the MoE layer when the router is given by name. */
  numExperts: number;
  /**
   * Initializer of the bias-free router kernel `<float32>[d, E]`. Default `'leCunNormal'`
   * (flax's default for the dense router of vmoe).
   */
  kernelInitializer?: InitializerLike;
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
   * Training mode. Jitter noise, training-only balancing and warm starts apply only when true;
   * with false the result for a group depends on that group alone.
   */
  training: boolean;
  /**
   * Slots per expert and group, an integer in `[1, groupSize]`. The MoE layer computes it with
   * {@link Router.computeCapacity} from `capacityFactor` (training) or `evalCapacityFactor`
   * (inference), or sets it to `groupSize` for dropless inference.
   */
  capacity: number;
}

/** What {@link Router.computeRouting} returns: a {@link RoutingResult} without `dispose`. */
export interface RoutingParts {
  /** `<int32>[groups, experts, capacity]`, -1 in empty slots. */
  expertIndices: tf.Tensor3D;
  /** `<float32>[groups, experts, capacity]`, 0 in empty slots. */
  combineWeights: tf.Tensor3D;
  /** `<float32>[]`. */
  auxiliaryLoss: tf.Scalar;
  /** Metrics (the base class adds `auxiliaryLoss`). */
  metrics: RoutingMetrics;
}

/**
 * Abstract router. A router is a tfjs `Layer` holding the bias-free kernel `<float32>[d, E]`;
 * `route()` computes `logits = tokens @ kernel` and hands them to the routing rule.
 *
 * As a layer, `apply(tokens, {capacity, training})` returns
 * `[combineWeights <float32>[groups, E, capacity], expertIndices <int32>[groups, E, capacity]]`
 * (capacity defaults to `computeCapacity(groupSize, 1)`), but the MoE layer calls `route()`.
 *
 * @example
 * ```ts
 * const router = topKRouter({numExperts: 4, k: 2});
 * const tokens = tf.randomNormal([2, 8, 16]) as tf.Tensor3D; // <float32>[groups, groupSize, d]
 * const capacity = router.computeCapacity(8, 1.25); // ceil(8 * 1.25 * 2 / 4) = 5
 * const result = router.route(tokens, {training: true, capacity});
 * result.dispose();
 * ```
 */
export abstract class Router extends tf.layers.Layer {
  /** Number of experts E. */
  readonly numExperts: number;
  /** Initializer of the kernel. */
  readonly kernelInitializer: Initializer;
  /** The router kernel `<float32>[d, E]`, created in `build()`. */
  kernel: tf.LayerVariable | null = null;

  constructor(args: RouterArgs) {
    super(args);
    const ctx = new.target.name;
    this.numExperts = assertPositiveInt('numExperts', args?.numExperts, ctx);
    this.kernelInitializer = resolveInitializer(args.kernelInitializer ?? 'leCunNormal', 'kernelInitializer');
  }

  /** Experts each token asks for (top-k's k); used by the default capacity formula. */
  get expertsPerToken(): number {
    return 1;
  }

  /**
   * Slots per expert for a group of `groupSize` tokens at `capacityFactor`:
   * `min(groupSize, max(1, ceil(groupSize * capacityFactor * expertsPerToken / E)))`.
   */
  computeCapacity(groupSize: number, capacityFactor: number): number {
    return computeCapacity(groupSize, capacityFactor, this.numExperts, this.expertsPerToken);
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const d = shape[shape.length - 1];
    if (d == null) throw new ShapeError('inputShape', 'a known model dimension (last axis)', shape, this.getClassName());
    // The weight name carries 'router/' so that it stays unique inside an MoE layer's scope.
    this.kernel = this.addWeight('router/kernel', [d, this.numExperts], 'float32', this.kernelInitializer);
    this.built = true;
  }

  /**
   * Routes groups of tokens. Validates the inputs, builds the layer on first use, computes the
   * logits and calls the routing rule.
   *
   * @param tokens `<float32>[groups, groupSize, d]`
   * @param options mask, training mode and capacity ({@link RouteOptions})
   * @returns a {@link RoutingResult} owned by the caller
   */
  route(tokens: tf.Tensor3D, options: RouteOptions): RoutingResult {
    const ctx = this.getClassName();
    if (!(tokens instanceof tf.Tensor) || tokens.rank !== 3) {
      throw new ShapeError('tokens', 'a rank-3 tensor [groups, groupSize, d]', tokens instanceof tf.Tensor ? tokens.shape : tokens, ctx);
    }
    if (!this.built) this.build(tokens.shape);
    const [groups, groupSize, d] = tokens.shape;
    const kd = (this.kernel as tf.LayerVariable).shape[0];
    if (d !== kd) throw new ShapeError('tokens', `a model dimension (last axis) of ${kd}`, tokens.shape, ctx);
    const capacity = options?.capacity;
    if (typeof capacity !== 'number' || !Number.isInteger(capacity) || capacity < 1 || capacity > groupSize) {
      throw new InvalidArgumentError('capacity', `an integer in [1, groupSize = ${groupSize}]`, capacity, ctx);
    }
    const mask = options.mask;
    if (mask != null && (!(mask instanceof tf.Tensor) || mask.rank !== 2 || mask.shape[0] !== groups || mask.shape[1] !== groupSize)) {
      throw new ShapeError('mask', `a tensor of shape [${groups}, ${groupSize}]`, mask instanceof tf.Tensor ? mask.shape : mask, ctx);
    }
    const training = options.training === true;
    const parts = tf.tidy(() => {
      const m = mask == null ? undefined : (tf.cast(mask, 'float32') as tf.Tensor2D);
      const logits = this.computeLogits(tokens, training);
      const p = this.computeRouting(logits, m, training, capacity);
      return {...p, metrics: {...p.metrics, auxiliaryLoss: p.auxiliaryLoss.clone()}};
    });
    return makeRoutingResult(parts.expertIndices, parts.combineWeights, parts.auxiliaryLoss, parts.metrics);
  }

  /**
   * Router logits `<float32>[groups, groupSize, E] = tokens @ kernel`. Subclasses may override
   * (e.g. to add input jitter in training) and call `super.computeLogits`.
   */
  protected computeLogits(tokens: tf.Tensor3D, training: boolean): tf.Tensor3D {
    void training;
    const [groups, groupSize, d] = tokens.shape;
    const kernel = (this.kernel as tf.LayerVariable).read();
    return tf.reshape(tf.matMul(tf.reshape(tokens, [groups * groupSize, d]), kernel), [groups, groupSize, this.numExperts]);
  }

  /**
   * The routing rule. Called inside a `tf.tidy`: return new tensors only.
   *
   * @param logits `<float32>[groups, groupSize, E]`
   * @param mask `<float32>[groups, groupSize]` (1 = real token) or undefined (all real)
   * @param training training mode
   * @param capacity slots per expert, in `[1, groupSize]`
   */
  protected abstract computeRouting(
    logits: tf.Tensor3D,
    mask: tf.Tensor2D | undefined,
    training: boolean,
    capacity: number,
  ): RoutingParts;

  /**
   * Helper for subclasses: adds the standard metrics (see `metrics.ts`) to the parts of a result.
   *
   * @param gates `<float32>[groups, groupSize, E]` softmax of the logits (for `importance`)
   * @param demand `<float32>[groups, E]` tokens that asked for each expert, or undefined (then
   *   tokens whose largest gate is the expert)
   */
  protected finishRouting(
    expertIndices: tf.Tensor3D,
    combineWeights: tf.Tensor3D,
    auxiliaryLoss: tf.Scalar,
    gates: tf.Tensor3D,
    mask: tf.Tensor2D | undefined,
    demand?: tf.Tensor2D,
    extraMetrics: RoutingMetrics = {},
  ): RoutingParts {
    const metrics = standardMetrics({expertIndices, gates, mask, demand});
    return {expertIndices, combineWeights, auxiliaryLoss, metrics: {...metrics, ...extraMetrics}};
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor[] {
    const tokens = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
    const capacity = (kwargs?.capacity as number | undefined) ?? this.computeCapacity(tokens.shape[1], 1);
    const r = this.route(tokens, {training: kwargs?.training === true, capacity, mask: kwargs?.mask as tf.Tensor2D | undefined});
    const out = [r.combineWeights, r.expertIndices];
    tf.dispose([r.auxiliaryLoss, ...Object.values(r.metrics)]);
    return out;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape[] {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [
      [shape[0], this.numExperts, null],
      [shape[0], this.numExperts, null],
    ];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      numExperts: this.numExperts,
      kernelInitializer: serializeInitializer(this.kernelInitializer),
    };
  }
}

/** Validates a non-negative loss weight (e.g. `zLossWeight`). */
export function assertLossWeight(argument: string, value: unknown, context: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(argument, 'a finite number >= 0', value, context);
  }
  return value;
}
