/**
 * The router base class: a tfjs `Layer` that owns what every router shares, as flaxformer's
 * `Router` does: the router kernel (and optional bias), input jitter and Gaussian logit noise, the
 * auxiliary losses (load balancing, z-loss) and their plumbing, the standard metrics, and one
 * {@link RoutingResult}. A template method runs `route` -> `computeLogits` -> softmax -> abstract
 * `computeRouting` (the routing rule) -> losses and metrics.
 *
 * Contract for subclasses (`TopKRouter`, `ExpertChoiceRouter`, `SinkhornRouter`,
 * `SparseOTRouter`):
 * - declare `static override className`, call `tf.serialization.registerClass(Cls)` right after
 *   the class, and add a short name to `ROUTER_ALIASES` (`registry.ts`);
 * - pass the names of its own arguments to the base constructor (unknown keys are errors);
 * - implement {@link Router.computeRouting}, returning a {@link RoutingDecision}; override
 *   {@link Router.computeCapacity} when the rule sizes capacity differently;
 * - extend `getConfig()` with every constructor argument;
 * - any state that changes outputs must be a weight created with `addWeight` in `build()`.
 */
import * as tf from '@tensorflow/tfjs';
import type {Initializer} from '@tensorflow/tfjs-layers/dist/initializers';
import {assertPositiveInt, InvalidArgumentError, ShapeError} from '../core/errors';
import {checkOptions} from '../core/options';
import {stopGradient, untracked} from '../core/stop-gradient';
import {makeRoutingResult, RoutingMetrics, RoutingResult, type RoutingTensors} from './routing-result';
import {standardMetrics} from './metrics';
import {computeCapacity} from './capacity';
import {assertFiniteRouting, routerInputChecksOn, withoutHostReads} from './input-checks';
import {loadBalancingLoss, routerZLoss} from './losses';
import {
  assertBoolean, assertLossWeight, assertSeed, LAYER_ARG_NAMES, resolveInitializer, ROUTER_ARG_NAMES, serializeInitializer,
  type RouteOptions, type RouterArgs, type RoutingDecision, type RoutingInput,
} from './router-args';

export {
  assertBoolean, assertLossWeight, LAYER_ARG_NAMES, resolveInitializer, ROUTER_ARG_NAMES, serializeInitializer,
} from './router-args';
export type {InitializerLike, RouteOptions, RouterArgs, RoutingDecision, RoutingInput} from './router-args';

/**
 * Abstract router. A router is a tfjs `Layer` holding the kernel `<float32>[d, E]` (and, with
 * `useBias`, a bias `<float32>[E]`); {@link Router.route} computes the logits and hands them to
 * the routing rule. The MoE layer calls `route()`; a router is not applied as a layer on its own.
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
  /** Whether the logits have a learned bias. */
  readonly useBias: boolean;
  /** Initializer of the bias. */
  readonly biasInitializer: Initializer;
  /** Weight of the load-balancing loss in the auxiliary loss. */
  readonly loadBalanceLossWeight: number;
  /** Weight of the z-loss in the auxiliary loss. */
  readonly zLossWeight: number;
  /** Multiplicative input jitter in training, in `[0, 1)`. */
  readonly jitterNoise: number;
  /** Standard deviation of the Gaussian logit noise in training. */
  readonly logitNoise: number;
  /** The router kernel `<float32>[d, E]`, created in `build()`. */
  kernel: tf.LayerVariable | null = null;
  /** The router bias `<float32>[E]` (with `useBias`), created in `build()`. */
  bias: tf.LayerVariable | null = null;
  /** Seed of the training noise; null: unseeded. */
  private noiseSeed: number | null;
  /** Noise draws since the seed was set. */
  private noiseDraws = 0;
  /** See {@link Router.computeMetrics}. */
  private metricsOn = true;

  /**
   * @param args the router's arguments
   * @param ownArgNames the names of the subclass's own arguments (with {@link ROUTER_ARG_NAMES}
   *   and {@link LAYER_ARG_NAMES}, every other key is an `UnknownOptionError`)
   * @param defaults subclass defaults of shared arguments (e.g. TopK's `loadBalanceLossWeight`)
   */
  constructor(args: RouterArgs, ownArgNames: readonly string[] = [], defaults: {loadBalanceLossWeight?: number} = {}) {
    super(args);
    const ctx = new.target.name;
    checkOptions(args, [...LAYER_ARG_NAMES, ...ROUTER_ARG_NAMES, ...ownArgNames], ctx);
    this.numExperts = assertPositiveInt('numExperts', args?.numExperts, ctx);
    this.kernelInitializer = resolveInitializer(args.kernelInitializer ?? 'leCunNormal', 'kernelInitializer');
    this.useBias = assertBoolean('useBias', args.useBias ?? false, ctx);
    this.biasInitializer = resolveInitializer(args.biasInitializer ?? 'zeros', 'biasInitializer');
    this.loadBalanceLossWeight = assertLossWeight('loadBalanceLossWeight', args.loadBalanceLossWeight ?? defaults.loadBalanceLossWeight ?? 0, ctx);
    this.zLossWeight = assertLossWeight('zLossWeight', args.zLossWeight ?? 0, ctx);
    const jitter = args.jitterNoise ?? 0;
    if (typeof jitter !== 'number' || !(jitter >= 0 && jitter < 1)) {
      throw new InvalidArgumentError('jitterNoise', 'a number in [0, 1)', jitter, ctx);
    }
    this.jitterNoise = jitter;
    this.logitNoise = assertLossWeight('logitNoise', args.logitNoise ?? 0, ctx);
    this.noiseSeed = args.seed == null ? null : assertSeed(args.seed, ctx);
  }

  /**
   * Seeds the training noise (jitter, logit noise) of the calls that follow, e.g. once per
   * training step from the step's seed; null makes it unseeded again.
   *
   * @example
   * ```ts
   * router.setNoiseSeed(deriveSeed(runSeed, 'step', step));
   * ```
   */
  setNoiseSeed(seed: number | null): void {
    this.noiseSeed = seed == null ? null : assertSeed(seed, this.getClassName());
    this.noiseDraws = 0;
  }

  /** The seed of the next noise draw (undefined when unseeded). */
  private nextNoiseSeed(): number | undefined {
    if (this.noiseSeed === null) return undefined;
    // Draw i uses seed + i * 2^32 / phi (mod 2^32): distinct and well spread.
    return (this.noiseSeed + Math.imul(this.noiseDraws++, 0x9e3779b9)) >>> 0;
  }

  /**
   * Whether {@link Router.route} computes the routing metrics (default true). A run-time switch,
   * not saved in the config. With false, a call launches none of the metric kernels (the
   * standard metrics, the losses kept as metrics, the rule's own metrics such as the OT solver's)
   * and its result's `metrics` is an empty record `{}`; the routing, the combine weights and the
   * auxiliary loss (computed whenever its weight is above 0) are unchanged, and so are their
   * gradients. A training loop switches it off on the steps that do not log
   * (`withRoutingMetrics` does it for every MoE layer of a model).
   *
   * @throws {InvalidArgumentError} when set to a non-boolean
   *
   * @example
   * ```ts
   * router.computeMetrics = false;
   * const r = router.route(tokens, {training: true, capacity: 4}); // r.metrics: {}
   * ```
   */
  get computeMetrics(): boolean {
    return this.metricsOn;
  }

  set computeMetrics(on: boolean) {
    this.metricsOn = assertBoolean('computeMetrics', on, this.getClassName());
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
    // The weight names carry 'router/' so that they stay unique inside an MoE layer's scope.
    this.kernel = this.addWeight('router/kernel', [d, this.numExperts], 'float32', this.kernelInitializer);
    if (this.useBias) this.bias = this.addWeight('router/bias', [this.numExperts], 'float32', this.biasInitializer);
    this.built = true;
  }

  /**
   * Routes groups of tokens: validates the inputs, builds the layer on first use, computes the
   * logits and gates, applies the routing rule, then the auxiliary losses and the metrics.
   *
   * @param tokens `<float32>[groups, groupSize, d]`
   * @param options mask, training mode and capacity ({@link RouteOptions})
   * @returns a {@link RoutingResult} owned by the caller
   * @throws {ShapeError} for tokens that are not a non-empty `[groups, groupSize, d]` or a mask of another shape
   * @throws {InvalidArgumentError} for a capacity outside `[1, groupSize]`
   * @throws {NonFiniteError} for tokens holding NaN or Infinity (`tokens`), or finite tokens whose
   *   logits are not finite (`router logits`: NaN in the router's weights). Checked on cpu and wasm
   *   and by routers that read back anyway; see `setRouterInputChecks`.
   */
  route(tokens: tf.Tensor3D, options: RouteOptions): RoutingResult {
    const ctx = this.getClassName();
    if (!(tokens instanceof tf.Tensor) || tokens.rank !== 3) {
      throw new ShapeError('tokens', 'a rank-3 tensor [groups, groupSize, d]', tokens instanceof tf.Tensor ? tokens.shape : tokens, ctx);
    }
    if (tokens.size === 0) throw new ShapeError('tokens', 'non-empty [groups, groupSize, d] (at least one token)', tokens.shape, ctx);
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
    const logits = tf.tidy(() => this.computeLogits(tokens, training));
    if (routerInputChecksOn(this.readsBack(training))) {
      try {
        assertFiniteRouting(logits, tokens, ctx);
      } catch (e) {
        logits.dispose();
        throw e;
      }
    }
    let parts: RoutingTensors;
    try {
      parts = this.allowsHostReads(training)
        ? this.routeLogits(logits, mask, training, capacity)
        : withoutHostReads(() => this.routeLogits(logits, mask, training, capacity));
    } catch (e) {
      logits.dispose();
      throw e;
    }
    return makeRoutingResult(parts);
  }

  /**
   * The routing rule, losses and metrics for computed `logits` (kept as the result's
   * `routerLogits`). Without metrics ({@link Router.computeMetrics} false) only the weighted
   * losses are computed, and only those whose weight is above 0.
   */
  private routeLogits(logits: tf.Tensor3D, mask: tf.Tensor | null | undefined, training: boolean, capacity: number): RoutingTensors {
    const metricsOn = this.metricsOn;
    return tf.tidy(() => {
      const m = mask == null ? undefined : (tf.cast(mask, 'float32') as tf.Tensor2D);
      const gates = tf.softmax(logits) as tf.Tensor3D;
      const decision = this.computeRouting({logits, gates, mask: m, training, capacity, metrics: metricsOn});
      if (!metricsOn) {
        const lb = this.loadBalanceLossWeight > 0
          ? tf.mul(loadBalancingLoss(gates, untracked(() => tf.argMax(gates, 2)) as tf.Tensor2D, m), this.loadBalanceLossWeight)
          : null;
        const z = this.zLossWeight > 0 ? tf.mul(routerZLoss(logits, m), this.zLossWeight) : null;
        const auxiliaryLoss = (lb && z ? tf.add(lb, z) : lb ?? z ?? tf.scalar(0)) as tf.Scalar;
        return {tokenIndices: decision.tokenIndices, combineWeights: decision.combineWeights, routerLogits: logits, auxiliaryLoss, metrics: {} as RoutingMetrics};
      }
      const firstChoice = untracked(() => tf.argMax(gates, 2)) as tf.Tensor2D;
      const loadBalanceLoss = loadBalancingLoss(gates, firstChoice, m);
      const zLoss = routerZLoss(logits, m);
      const auxiliaryLoss = tf.add(tf.mul(loadBalanceLoss, this.loadBalanceLossWeight), tf.mul(zLoss, this.zLossWeight)) as tf.Scalar;
      const metrics: RoutingMetrics = {
        ...standardMetrics({tokenIndices: decision.tokenIndices, gates, mask: m, demand: decision.demand}),
        loadBalanceLoss: stopGradient(loadBalanceLoss),
        zLoss: stopGradient(zLoss),
        auxiliaryLoss: stopGradient(auxiliaryLoss),
        ...decision.metrics,
      };
      return {tokenIndices: decision.tokenIndices, combineWeights: decision.combineWeights, routerLogits: logits, auxiliaryLoss, metrics};
    });
  }

  /**
   * Whether a call in this mode may read values back synchronously: false when the router's
   * arguments forbid any read (`hostReads: false`). The routers' host index bookkeeping and the
   * MoE layer's packed dispatch (`compactDispatch: 'auto'`) follow it.
   */
  allowsHostReads(training: boolean): boolean {
    return this.readsBack(training) !== null;
  }

  /**
   * Whether a call in this mode reads values back from the device anyway (then the input check
   * costs no extra pipeline flush on any backend; see `setRouterInputChecks`), or null when the
   * router's arguments forbid reads (`hostReads: false`). Default false.
   */
  protected readsBack(training: boolean): boolean | null {
    void training;
    return false;
  }

  /**
   * Router logits `<float32>[groups, groupSize, E] = tokens @ kernel (+ bias)`; in training the
   * tokens are first scaled by the multiplicative jitter and the logits get the Gaussian noise.
   */
  protected computeLogits(tokens: tf.Tensor3D, training: boolean): tf.Tensor3D {
    const [groups, groupSize, d] = tokens.shape;
    let x: tf.Tensor = tokens;
    if (training && this.jitterNoise > 0) x = tf.mul(x, tf.randomUniform(tokens.shape, 1 - this.jitterNoise, 1 + this.jitterNoise, 'float32', this.nextNoiseSeed()));
    let logits = tf.matMul(tf.reshape(x, [groups * groupSize, d]), (this.kernel as tf.LayerVariable).read());
    if (this.bias) logits = tf.add(logits, this.bias.read());
    if (training && this.logitNoise > 0) logits = tf.add(logits, tf.randomNormal(logits.shape, 0, this.logitNoise, 'float32', this.nextNoiseSeed()));
    return tf.reshape(logits, [groups, groupSize, this.numExperts]);
  }

  /**
   * The routing rule. Called inside a `tf.tidy`: return new tensors only.
   *
   * @param input logits, gates, mask, training mode and capacity ({@link RoutingInput})
   * @returns token indices and combine weights per expert slot, and optionally the demand and
   *   the rule's own metrics ({@link RoutingDecision})
   */
  protected abstract computeRouting(input: RoutingInput): RoutingDecision;

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      numExperts: this.numExperts,
      kernelInitializer: serializeInitializer(this.kernelInitializer),
      useBias: this.useBias,
      biasInitializer: serializeInitializer(this.biasInitializer),
      loadBalanceLossWeight: this.loadBalanceLossWeight,
      zLossWeight: this.zLossWeight,
      jitterNoise: this.jitterNoise,
      logitNoise: this.logitNoise,
      ...(this.noiseSeed === null ? {} : {seed: this.noiseSeed}),
    };
  }
}
