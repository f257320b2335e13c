/**
 * The mixture-of-experts layer: a router plus `numExperts` two-layer expert FFNs held as batched
 * weights, with index-based dispatch and combine (see `dispatch.ts`).
 */
import * as tf from '@tensorflow/tfjs';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import type {Initializer} from '@tensorflow/tfjs-layers/dist/initializers';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {combine, dispatch, normalizeCombineWeights as normalizeWeights} from './dispatch';
import {assertOneOf, assertPositiveInt, ConfigError, InvalidArgumentError, ShapeError} from '../core/errors';
import {GroupingMode, groupTokens, ungroupTokens} from './grouping';
import {metricsToValues, RoutingMetrics, RoutingMetricValues} from '../routers/routing-result';
import {createRouter, RouterSpec} from '../routers/registry';
import {InitializerLike, resolveInitializer, Router, serializeInitializer} from '../routers/router';
import '../routers';

/** Expert activations: the tfjs activation names. */
export type MoEActivation = 'gelu' | 'gelu_new' | 'relu' | 'relu6' | 'elu' | 'selu' | 'swish' | 'mish' | 'tanh' | 'sigmoid' | 'linear';

const ACTIVATIONS: readonly MoEActivation[] = ['gelu', 'gelu_new', 'relu', 'relu6', 'elu', 'selu', 'swish', 'mish', 'tanh', 'sigmoid', 'linear'];

/** Constructor arguments of {@link MoE}. */
export interface MoEArgs extends LayerArgs {
  /** Number of experts E (>= 1). */
  numExperts: number;
  /** Hidden width h of every expert FFN (`d -> h -> d`). */
  hiddenDim: number;
  /** Activation between the two expert matMuls. Default `'gelu'` (ViT). */
  activation?: MoEActivation;
  /**
   * The routing rule: a registered name (`'sparse-ot'`, `'topk'`, `'expert-choice'`,
   * `'sinkhorn'`), a name with router arguments (`{name: 'topk', k: 2}`), a serialized
   * `{className, config}`, or a `Router` instance with the same `numExperts`. Default
   * `'sparse-ot'`.
   */
  router?: RouterSpec;
  /**
   * Capacity factor in training: slots per expert =
   * `min(S, ceil(S * capacityFactor * expertsPerToken / E))` for groups of S tokens (the router may
   * round it, see `Router.computeCapacity`). Default 1.0: exactly the balanced share, the
   * setting where balanced routing matters most.
   */
  capacityFactor?: number;
  /** Capacity factor at inference. Default: `capacityFactor`. */
  evalCapacityFactor?: number;
  /**
   * Inference only: give every expert `groupSize` slots, so no token-choice router drops a token
   * (for expert-choice and OT routers this means every expert may take every token). Default false.
   */
  dropless?: boolean;
  /**
   * Tokens per routing group. Default: the number of tokens per example. Clamped to the tokens
   * available; a partial last group is padded with masked tokens (see `grouping.ts`).
   */
  groupSize?: number;
  /**
   * `'per-example'` (default): groups never mix examples, so an example's output never depends on
   * the rest of the batch. `'flat'`: tokens of the whole batch are grouped together.
   * Expert-choice and OT routing look at the whole group (every token of it), so neither is causal
   * and neither should be used where a token must not see later tokens.
   */
  groupingMode?: GroupingMode;
  /** Rescale each kept token's combine weights to sum to 1. Default false. */
  normalizeCombineWeights?: boolean;
  /** Expert biases `[E, h]` and `[E, d]`. Default true. */
  useBias?: boolean;
  /** Initializer of each expert's kernels, applied per expert to `[d, h]` and `[h, d]`. Default `'glorotUniform'`. */
  kernelInitializer?: InitializerLike;
  /** Initializer of the expert biases. Default `'zeros'`. */
  biasInitializer?: InitializerLike;
  /**
   * How the experts' matMuls run: `'batched'` (default) as one batched `[E, n, d] x [E, d, h]`
   * matMul per layer, or `'per-expert'` as E separate 2-D matMuls (faster on backends whose
   * batched matMul is slow per FLOP, such as tfjs-wasm with few, large experts; see
   * bench/RESULTS-moe.md). Both give the same numbers.
   */
  expertMatMul?: 'batched' | 'per-expert';
}

/**
 * Applies an initializer to every expert separately, so that fan-in and fan-out are those of one
 * expert's `[d, h]` matrix and not of the stacked `[E, d, h]` tensor.
 */
function perExpert(inner: Initializer): Initializer {
  return {
    apply: (shape: tf.Shape, dtype?: tf.DataType) =>
      tf.tidy(() => tf.stack(Array.from({length: shape[0] as number}, () => inner.apply(shape.slice(1) as number[], dtype)))),
  } as unknown as Initializer;
}

/**
 * Mixture-of-experts layer (V-MoE style). Input `<float32>[batch, tokens, d]` (and optionally a
 * token mask `<float32>[batch, tokens]` as a second input, 1 = real token); output
 * `<float32>[batch, tokens, d]`. Dropped and masked tokens get 0: put the layer inside a residual
 * connection so that they pass through unchanged.
 *
 * Pipeline per call: group tokens -> router logits and routing -> gather each expert's tokens
 * into `[E, groups * capacity, d]` -> two batched matMuls -> weighted scatter-add back.
 * The router's auxiliary loss is registered with `addLoss`, so `model.fit` minimizes it; the
 * metrics of the last call are in {@link MoE.lastMetrics}.
 *
 * @example
 * ```ts
 * const x = tf.input({shape: [64, 192]});
 * const y = moe({numExperts: 8, hiddenDim: 768, router: 'topk', capacityFactor: 1.25}).apply(x);
 * const model = tf.model({inputs: x, outputs: y as tf.SymbolicTensor});
 * ```
 */
export class MoE extends tf.layers.Layer {
  static className = 'MoE';
  readonly numExperts: number;
  readonly hiddenDim: number;
  readonly activation: MoEActivation;
  readonly router: Router;
  readonly capacityFactor: number;
  readonly evalCapacityFactor: number;
  readonly dropless: boolean;
  readonly groupSize: number | undefined;
  readonly groupingMode: GroupingMode;
  readonly normalizeCombineWeights: boolean;
  readonly useBias: boolean;
  readonly kernelInitializer: Initializer;
  readonly biasInitializer: Initializer;
  readonly expertMatMul: 'batched' | 'per-expert';
  /** `<float32>[E, d, h]`. */
  kernelIn: tf.LayerVariable | null = null;
  /** `<float32>[E, h]`. */
  biasIn: tf.LayerVariable | null = null;
  /** `<float32>[E, h, d]`. */
  kernelOut: tf.LayerVariable | null = null;
  /** `<float32>[E, d]`. */
  biasOut: tf.LayerVariable | null = null;
  private readonly activationFn: {apply(x: tf.Tensor): tf.Tensor};
  private lastAux: tf.Scalar | null = null;
  private lastMetricTensors: RoutingMetrics | null = null;
  private lastMetricValues: RoutingMetricValues | null = null;

  constructor(args: MoEArgs) {
    super(args);
    const ctx = 'MoE';
    this.numExperts = assertPositiveInt('numExperts', args?.numExperts, ctx);
    this.hiddenDim = assertPositiveInt('hiddenDim', args.hiddenDim, ctx);
    // tfjs's model loader camel-cases string config values: a saved 'gelu_new' comes back as 'geluNew'.
    const activation = (args.activation as string | undefined) === 'geluNew' ? 'gelu_new' : args.activation;
    this.activation = assertOneOf('activation', activation ?? 'gelu', ACTIVATIONS, ctx);
    const entry = tf.serialization.SerializationMap.getMap().classNameMap[this.activation];
    this.activationFn = new (entry[0] as unknown as new () => {apply(x: tf.Tensor): tf.Tensor})();
    this.router = createRouter(args.router ?? 'sparse-ot', {numExperts: this.numExperts});
    if (this.router.numExperts !== this.numExperts) {
      throw new ConfigError('router', `a router with numExperts = ${this.numExperts}`, `${this.router.getClassName()} with numExperts = ${this.router.numExperts}`, ctx);
    }
    this.capacityFactor = positive('capacityFactor', args.capacityFactor ?? 1.0, ctx);
    this.evalCapacityFactor = positive('evalCapacityFactor', args.evalCapacityFactor ?? this.capacityFactor, ctx);
    this.dropless = args.dropless ?? false;
    this.groupSize = args.groupSize == null ? undefined : assertPositiveInt('groupSize', args.groupSize, ctx);
    this.groupingMode = assertOneOf('groupingMode', args.groupingMode ?? 'per-example', ['per-example', 'flat'] as const, ctx);
    this.normalizeCombineWeights = args.normalizeCombineWeights ?? false;
    this.useBias = args.useBias ?? true;
    this.kernelInitializer = resolveInitializer(args.kernelInitializer ?? 'glorotUniform', 'kernelInitializer');
    this.biasInitializer = resolveInitializer(args.biasInitializer ?? 'zeros', 'biasInitializer');
    this.expertMatMul = assertOneOf('expertMatMul', args.expertMatMul ?? 'batched', ['batched', 'per-expert'] as const, ctx);
    this.addLoss(() => (this.lastAux && !this.lastAux.isDisposed ? this.lastAux : tf.scalar(0)));
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    if (shape.length !== 3) throw new ShapeError('inputs', 'a rank-3 shape [batch, tokens, d]', shape, 'MoE');
    const d = shape[2];
    if (d == null) throw new ShapeError('inputs', 'a known model dimension (last axis)', shape, 'MoE');
    const E = this.numExperts;
    const h = this.hiddenDim;
    this.kernelIn = this.addWeight('kernel_in', [E, d, h], 'float32', perExpert(this.kernelInitializer));
    this.kernelOut = this.addWeight('kernel_out', [E, h, d], 'float32', perExpert(this.kernelInitializer));
    if (this.useBias) {
      this.biasIn = this.addWeight('bias_in', [E, h], 'float32', this.biasInitializer);
      this.biasOut = this.addWeight('bias_out', [E, d], 'float32', this.biasInitializer);
    }
    this.router.build([null, null, d]);
    this.built = true;
  }

  /** Own weights, then the router's (so model.fit, save and load all include the router). */
  override get trainableWeights(): tf.LayerVariable[] {
    if (!this.trainable) return [];
    return [...super.trainableWeights, ...this.router.trainableWeights];
  }

  override set trainableWeights(weights: tf.LayerVariable[]) {
    super.trainableWeights = weights;
  }

  override get nonTrainableWeights(): tf.LayerVariable[] {
    if (!this.trainable) return [...super.nonTrainableWeights, ...this.router.weights];
    return [...super.nonTrainableWeights, ...this.router.nonTrainableWeights];
  }

  override set nonTrainableWeights(weights: tf.LayerVariable[]) {
    super.nonTrainableWeights = weights;
  }

  /**
   * Slots per expert for groups of `groupSize` tokens in the given mode: `groupSize` when dropless
   * at inference, else the router's capacity at `capacityFactor` (training) or
   * `evalCapacityFactor` (inference).
   */
  capacityFor(groupSize: number, training: boolean): number {
    if (!training && this.dropless) return groupSize;
    return this.router.computeCapacity(groupSize, training ? this.capacityFactor : this.evalCapacityFactor);
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    const x = list[0] as tf.Tensor3D;
    const userMask = (list[1] ?? kwargs?.mask) as tf.Tensor2D | undefined;
    const ctx = 'MoE';
    if (x.rank !== 3) throw new ShapeError('inputs', 'a rank-3 tensor [batch, tokens, d]', x.shape, ctx);
    const [batch, tokens, d] = x.shape;
    if (!this.built) this.build(x.shape);
    const dModel = (this.kernelIn as tf.LayerVariable).shape[1];
    if (d !== dModel) throw new ShapeError('inputs', `a model dimension (last axis) of ${dModel}`, x.shape, ctx);
    if (userMask != null && (userMask.rank !== 2 || userMask.shape[0] !== batch || userMask.shape[1] !== tokens)) {
      throw new ShapeError('mask', `a tensor of shape [${batch}, ${tokens}]`, userMask.shape, ctx);
    }
    const training = kwargs?.training === true;
    let aux: tf.Scalar | null = null;
    let metrics: RoutingMetrics | null = null;
    const out = tf.tidy(() => {
      const groups = groupTokens(x, this.groupingMode, this.groupSize, userMask);
      const S = groups.groupSize;
      const routing = this.router.route(groups.tokens, {mask: groups.mask, training, capacity: this.capacityFor(S, training)});
      const weights = this.normalizeCombineWeights
        ? normalizeWeights(routing.expertIndices, routing.combineWeights, S)
        : routing.combineWeights;
      const y = this.experts(dispatch(groups.tokens, routing.expertIndices, 'expert-major'));
      const combined = combine(y, routing.expertIndices, weights, S, 'expert-major');
      aux = tf.keep(routing.auxiliaryLoss);
      metrics = Object.fromEntries(Object.entries(routing.metrics).map(([k, v]) => [k, tf.keep(v)]));
      return ungroupTokens(combined, batch, tokens, this.groupingMode);
    });
    this.replaceLast(aux, metrics);
    return out;
  }

  /** Runs every expert on its slots: `<float32>[E, n, d]` -> `<float32>[E, n, d]`. */
  private experts(xe: tf.Tensor): tf.Tensor {
    if (this.expertMatMul === 'per-expert') return this.expertsOneByOne(xe);
    const E = this.numExperts;
    let hidden = tf.matMul(xe as tf.Tensor3D, (this.kernelIn as tf.LayerVariable).read() as tf.Tensor3D);
    if (this.biasIn) hidden = tf.add(hidden, tf.reshape(this.biasIn.read(), [E, 1, this.hiddenDim]));
    hidden = this.activationFn.apply(hidden) as tf.Tensor3D;
    let y = tf.matMul(hidden, (this.kernelOut as tf.LayerVariable).read() as tf.Tensor3D);
    if (this.biasOut) y = tf.add(y, tf.reshape(this.biasOut.read(), [E, 1, -1]));
    return y;
  }

  /** Same as {@link MoE.experts}, with one 2-D matMul pair per expert. */
  private expertsOneByOne(xe: tf.Tensor): tf.Tensor {
    const E = this.numExperts;
    const [, n, d] = xe.shape as number[];
    const h = this.hiddenDim;
    const xs = tf.split(xe, E, 0);
    const w1 = tf.split((this.kernelIn as tf.LayerVariable).read(), E, 0);
    const w2 = tf.split((this.kernelOut as tf.LayerVariable).read(), E, 0);
    const b1 = this.biasIn ? tf.split(this.biasIn.read(), E, 0) : null;
    const b2 = this.biasOut ? tf.split(this.biasOut.read(), E, 0) : null;
    const outs = xs.map((x, e) => {
      let hidden = tf.matMul(tf.reshape(x, [n, d]) as tf.Tensor2D, tf.reshape(w1[e], [d, h]) as tf.Tensor2D);
      if (b1) hidden = tf.add(hidden, tf.reshape(b1[e], [1, h]));
      hidden = this.activationFn.apply(hidden) as tf.Tensor2D;
      let y = tf.matMul(hidden, tf.reshape(w2[e], [h, d]) as tf.Tensor2D);
      if (b2) y = tf.add(y, tf.reshape(b2[e], [1, d]));
      return y;
    });
    return tf.stack(outs);
  }

  private replaceLast(aux: tf.Scalar | null, metrics: RoutingMetrics | null): void {
    if (this.lastAux) this.lastAux.dispose();
    if (this.lastMetricTensors) tf.dispose(Object.values(this.lastMetricTensors));
    this.lastAux = aux;
    this.lastMetricTensors = metrics;
    this.lastMetricValues = null;
  }

  /**
   * Metrics of the last call as plain numbers and arrays (names in `routing-result.ts`), or null
   * before the first call. Read lazily (one read per metric, cached), so calls stay asynchronous
   * until someone asks.
   */
  get lastMetrics(): RoutingMetricValues | null {
    if (this.lastMetricValues == null && this.lastMetricTensors != null) {
      this.lastMetricValues = metricsToValues(this.lastMetricTensors);
    }
    return this.lastMetricValues;
  }

  /** `<float32>[]`: the auxiliary loss of the last call (owned by the layer), or null. */
  get lastAuxiliaryLoss(): tf.Scalar | null {
    return this.lastAux;
  }

  /** Frees the tensors kept from the last call (metrics and auxiliary loss). */
  disposeLast(): void {
    this.replaceLast(null, null);
  }

  /** Disposes the layer's weights (as tfjs layers do) and the tensors kept from the last call. */
  override dispose(): ReturnType<tf.layers.Layer['dispose']> {
    this.disposeLast();
    return super.dispose();
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      numExperts: this.numExperts,
      hiddenDim: this.hiddenDim,
      activation: this.activation,
      router: {className: this.router.getClassName(), config: this.router.getConfig()},
      capacityFactor: this.capacityFactor,
      evalCapacityFactor: this.evalCapacityFactor,
      dropless: this.dropless,
      groupSize: this.groupSize ?? null,
      groupingMode: this.groupingMode,
      normalizeCombineWeights: this.normalizeCombineWeights,
      useBias: this.useBias,
      kernelInitializer: serializeInitializer(this.kernelInitializer),
      biasInitializer: serializeInitializer(this.biasInitializer),
      expertMatMul: this.expertMatMul,
    };
  }

  /** Rebuilds the layer and its nested router from {@link MoE.getConfig} output. */
  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    const args = {...config, groupSize: config.groupSize ?? undefined} as unknown as MoEArgs;
    return new cls(args as unknown as tf.serialization.ConfigDict) as T;
  }
}
tf.serialization.registerClass(MoE);

function positive(argument: string, value: unknown, context: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(argument, 'a finite number > 0', value, context);
  }
  return value;
}

/**
 * Creates an {@link MoE} layer.
 *
 * @example
 * ```ts
 * const layer = moe({numExperts: 8, hiddenDim: 768, router: {name: 'topk', k: 2}});
 * const y = layer.apply(tf.randomNormal([4, 64, 192])) as tf.Tensor; // [4, 64, 192]
 * console.log(layer.lastMetrics?.droppedFraction);
 * ```
 */
export function moe(args: MoEArgs): MoE {
  return new MoE(args);
}
