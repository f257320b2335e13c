/**
 * The mixture-of-experts layer: a router plus `numExperts` expert FFNs held as stacked weights,
 * with index-based dispatch and combine (`dispatch.ts`), optional shared experts and a residual
 * expert, and a per-token view of its routing (`inspect`).
 */
import * as tf from '@tensorflow/tfjs';
import type {Initializer} from '@tensorflow/tfjs-layers/dist/initializers';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {activationFunction, assertActivation, FeedForwardActivation} from './activations';
import {defaultCapacityFactors} from './capacity-defaults';
import {combine, combineCompact, compactSlots, dispatch, dispatchCompact, normalizeCombineWeights as normalizeWeights} from './dispatch';
import {asPerExpert} from './expert-initializer';
import {ExpertMatMul, expertFeedForward} from './experts';
import {addFeedForwardWeights, denseExpertPaths, readFeedForward, type FeedForwardVariables, type ResidualExpertVariables} from './expert-weights';
import {GroupingMode, ungroupTokens} from './grouping';
import {inspectLayer, type MoERouting, rankExperts, slotsToTokens} from './inspect';
import {groupLogits, routeGroups} from './route-groups';
import {bool, type CompactDispatch, defaultName, MOE_ARG_KEYS, MoEArgs, positive, routerWithK, withoutDeviceChoices} from './moe-args';
import {MOE_LAYER_BRAND} from './model-helpers';
import {assertOneOf, assertPositiveInt, ConfigError, InvalidArgumentError, ShapeError} from '../core/errors';
import {checkOptions} from '../core/options';
import {LastCall} from './last-call';
import type {RoutingMetrics, RoutingMetricValues} from '../routers/routing-result';
import {createRouter, RouterSpec} from '../routers/registry';
import {synchronousBackend} from '../routers/input-checks';
import {resolveInitializer, Router, serializeInitializer} from '../routers/router';
import '../routers';

export type {CompactDispatch, MoEArgs, MoEActivation} from './moe-args';

/**
 * Mixture-of-experts layer (V-MoE style). Input `<float32>[...batch, tokens, d]` (any rank >= 2;
 * optionally a token mask `<float32>[...batch, tokens]` as a second input, 1 = real token);
 * output `<float32>[...batch, tokens, d]` (with `outputRouterLogits`, also the per-token router
 * logits and expert indices). Dropped and masked tokens get 0 from the routed experts: put the
 * layer inside a residual connection so that they pass through unchanged.
 *
 * Pipeline per call: group tokens -> router logits and routing -> gather each expert's tokens
 * into `[E, groups * capacity, d]` (on cpu and wasm only its filled slots, packed:
 * `[E, n, d]`, see `compactDispatch`) -> the expert FFNs as batched matMuls -> weighted
 * scatter-add back -> ungroup; plus shared experts and the residual expert when configured.
 * The router's auxiliary loss is registered with `addLoss`, so `model.fit` minimizes it; the
 * metrics of the last call are in {@link MoE.lastMetrics} (and per mode in
 * {@link MoE.lastTrainingMetrics} / {@link MoE.lastInferenceMetrics}).
 * Throws `InvalidArgumentError` / `ConfigError` / `UnknownOptionError` for bad arguments;
 * `ShapeError` naming `inputs` for inputs of rank < 2, the wrong model dimension or no tokens;
 * `NonFiniteError` naming `inputs` (with the layer's name and the shape) for NaN/Infinity tokens,
 * where the router checks them (cpu and wasm, and every backend whose router reads the device
 * anyway; see `setRouterInputChecks`).
 *
 * @example
 * ```ts
 * const x = tf.input({shape: [64, 192]});
 * const y = moe({numExperts: 8, hiddenDim: 768, router: 'topk', k: 2}).apply(x);
 * const model = tf.model({inputs: x, outputs: y as tf.SymbolicTensor});
 * ```
 */
export class MoE extends tf.layers.Layer {
  /** @nocollapse */
  static className = 'MoE';
  readonly numExperts: number;
  readonly hiddenDim: number;
  readonly activation: FeedForwardActivation;
  readonly gated: boolean;
  readonly router: Router;
  readonly capacityFactor: number;
  readonly evalCapacityFactor: number;
  readonly minCapacity: number;
  readonly dropTokens: boolean;
  readonly dropless: boolean;
  readonly groupSize: number | undefined;
  readonly groupingMode: GroupingMode;
  readonly normalizeCombineWeights: boolean;
  readonly numSharedExperts: number;
  readonly sharedHiddenDim: number;
  readonly residualExpert: boolean;
  readonly outputRouterLogits: boolean;
  readonly useBias: boolean;
  readonly kernelInitializer: Initializer;
  readonly biasInitializer: Initializer;
  /** Run-time choice, not saved in the config (see `MoEArgs.expertMatMul`). */
  expertMatMul: ExpertMatMul;
  /** Run-time choice, not saved in the config (see `MoEArgs.compactDispatch`). */
  compactDispatch: CompactDispatch;
  /** `<float32>[E, d, h]`. */
  kernelIn: tf.LayerVariable | null = null;
  /** `<float32>[E, h]`. */
  biasIn: tf.LayerVariable | null = null;
  /** `<float32>[E, h, d]`. */
  kernelOut: tf.LayerVariable | null = null;
  /** `<float32>[E, d]`. */
  biasOut: tf.LayerVariable | null = null;
  /** `<float32>[E, d, h]`: gate kernel of gated experts. */
  kernelGate: tf.LayerVariable | null = null;
  /** `<float32>[E, h]`. */
  biasGate: tf.LayerVariable | null = null;
  private shared: FeedForwardVariables | null = null;
  private residual: ResidualExpertVariables | null = null;
  private readonly activationFn: (x: tf.Tensor) => tf.Tensor;
  /** The auxiliary loss and metrics kept from the last calls. */
  private readonly last = new LastCall();

  constructor(args: MoEArgs) {
    super({...checkOptions(args, MOE_ARG_KEYS, 'moe'), name: args?.name ?? defaultName()});
    const ctx = 'MoE';
    (this as unknown as Record<symbol, boolean>)[MOE_LAYER_BRAND] = true;
    this.numExperts = assertPositiveInt('numExperts', args?.numExperts, ctx);
    this.hiddenDim = assertPositiveInt('hiddenDim', args.hiddenDim, ctx);
    this.activation = assertActivation('activation', args.activation ?? 'gelu', ctx);
    this.gated = bool('gated', args.gated, false, ctx);
    this.activationFn = activationFunction(this.activation);
    if (args.k !== undefined && args.topK !== undefined && args.k !== args.topK) {
      throw new ConfigError('topK', `equal to k = ${args.k} (they are one setting)`, args.topK, ctx);
    }
    const k = args.k ?? args.topK;
    if (k !== undefined) assertPositiveInt(args.k !== undefined ? 'k' : 'topK', k, ctx);
    this.router = createRouter(routerWithK(args.router ?? 'sparse-ot', k), {numExperts: this.numExperts});
    if (this.router.numExperts !== this.numExperts) {
      throw new ConfigError('router', `a router with numExperts = ${this.numExperts}`, `${this.router.getClassName()} with numExperts = ${this.router.numExperts}`, ctx);
    }
    if (k !== undefined && this.router.expertsPerToken !== k) {
      throw new ConfigError('k', `the router's experts per token ${this.router.expertsPerToken}`, k, ctx);
    }
    const defaults = defaultCapacityFactors(this.router);
    this.capacityFactor = positive('capacityFactor', args.capacityFactor ?? defaults.training, ctx);
    const evalDefault = defaults.evaluation === defaults.training ? this.capacityFactor : Math.max(this.capacityFactor, defaults.evaluation);
    this.evalCapacityFactor = positive('evalCapacityFactor', args.evalCapacityFactor ?? evalDefault, ctx);
    this.minCapacity = assertPositiveInt('minCapacity', args.minCapacity ?? 1, ctx);
    this.dropTokens = bool('dropTokens', args.dropTokens, true, ctx);
    this.dropless = bool('dropless', args.dropless, false, ctx);
    this.groupSize = args.groupSize == null ? undefined : assertPositiveInt('groupSize', args.groupSize, ctx);
    this.groupingMode = assertOneOf('groupingMode', args.groupingMode ?? 'per-example', ['per-example', 'flat'] as const, ctx);
    this.normalizeCombineWeights = bool('normalizeCombineWeights', args.normalizeCombineWeights, false, ctx);
    this.numSharedExperts = assertPositiveInt('numSharedExperts', args.numSharedExperts ?? 0, ctx, 0);
    this.sharedHiddenDim = assertPositiveInt('sharedHiddenDim', args.sharedHiddenDim ?? this.hiddenDim, ctx);
    this.residualExpert = bool('residualExpert', args.residualExpert, false, ctx);
    this.outputRouterLogits = bool('outputRouterLogits', args.outputRouterLogits, false, ctx);
    this.useBias = bool('useBias', args.useBias, true, ctx);
    this.kernelInitializer = resolveInitializer(args.kernelInitializer ?? 'glorotUniform', 'kernelInitializer');
    this.biasInitializer = resolveInitializer(args.biasInitializer ?? 'zeros', 'biasInitializer');
    this.expertMatMul = assertOneOf('expertMatMul', args.expertMatMul ?? 'batched', ['batched', 'per-expert'] as const, ctx);
    this.compactDispatch = args.compactDispatch ?? 'auto';
    if (this.compactDispatch !== 'auto' && typeof this.compactDispatch !== 'boolean') {
      throw new InvalidArgumentError('compactDispatch', "'auto', true or false", this.compactDispatch, ctx);
    }
    this.addLoss(() => {
      const aux = this.last.auxiliaryLoss;
      return aux && !aux.isDisposed ? aux : tf.scalar(0);
    });
  }

  /** Adds one set of stacked FFN weights `[n, d, h]` / `[n, h, d]` named `<prefix>kernel_in`, ... */
  private addFeedForward(prefix: string, n: number, d: number, h: number, salt: number): FeedForwardVariables {
    return addFeedForwardWeights((name, shape, init) => this.addWeight(name, shape, 'float32', init), prefix, n, d, h, salt, this);
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    if (shape.length < 2) throw new ShapeError('inputs', 'a shape [..., tokens, d] of rank >= 2', shape, 'MoE');
    const d = shape[shape.length - 1];
    if (d == null) throw new ShapeError('inputs', 'a known model dimension (last axis)', shape, 'MoE');
    const routed = this.addFeedForward('', this.numExperts, d, this.hiddenDim, 0);
    this.kernelIn = routed.kernelIn;
    this.biasIn = routed.biasIn ?? null;
    this.kernelOut = routed.kernelOut;
    this.biasOut = routed.biasOut ?? null;
    this.kernelGate = routed.kernelGate ?? null;
    this.biasGate = routed.biasGate ?? null;
    if (this.numSharedExperts > 0) this.shared = this.addFeedForward('shared_', this.numSharedExperts, d, this.sharedHiddenDim, 10);
    if (this.residualExpert) {
      const ffn = this.addFeedForward('residual_', 1, d, this.hiddenDim, 20);
      const coefKernel = this.addWeight('residual_coef_kernel', [1, d, 2], 'float32', asPerExpert(this.kernelInitializer, 30));
      const coefBias = this.addWeight('residual_coef_bias', [2], 'float32', tf.initializers.zeros());
      this.residual = {...ffn, coefKernel, coefBias};
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
   * Slots per expert for groups of `groupSize` tokens in the given mode: `groupSize` when
   * `dropTokens` is false (or `dropless` at inference), else the router's capacity at
   * `capacityFactor` (training) or `evalCapacityFactor` (inference), at least `minCapacity`,
   * at most `groupSize`.
   *
   * @example
   * ```ts
   * moe({numExperts: 8, hiddenDim: 64, router: 'topk', minCapacity: 4}).capacityFor(16, true); // max(4, ceil(16 * 1.25 / 8) = 3) = 4
   * ```
   */
  capacityFor(groupSize: number, training: boolean): number {
    if (!this.dropTokens || (!training && this.dropless)) return groupSize;
    const c = this.router.computeCapacity(groupSize, training ? this.capacityFactor : this.evalCapacityFactor);
    return Math.min(groupSize, Math.max(c, this.minCapacity));
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor | tf.Tensor[] {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    const x = list[0];
    const userMask = (list[1] ?? kwargs?.mask) as tf.Tensor | undefined;
    const training = kwargs?.training === true;
    const metricsOn = this.router.computeMetrics;
    let aux: tf.Scalar | null = null;
    let metrics: RoutingMetrics | null = null;
    const out = tf.tidy(() => {
      const r = routeGroups(this, x, userMask, training);
      const {groups, routing, lead, batch, tokens} = r;
      const S = groups.groupSize;
      const d = x.shape[x.rank - 1];
      const weights = this.normalizeCombineWeights
        ? normalizeWeights(routing.tokenIndices, routing.combineWeights, S)
        : routing.combineWeights;
      let combined: tf.Tensor3D;
      if (this.compactDispatch === true || (this.compactDispatch === 'auto' && synchronousBackend() && this.router.allowsHostReads(training))) {
        const slots = compactSlots(routing.tokenIndices, S);
        combined = combineCompact(this.experts(dispatchCompact(groups.tokens, slots)), slots, weights, S);
      } else {
        const routedOut = this.experts(dispatch(groups.tokens, routing.tokenIndices, 'expert-major'));
        combined = combine(routedOut, routing.tokenIndices, weights, S, 'expert-major');
      }
      let y: tf.Tensor = ungroupTokens(combined, batch, tokens, this.groupingMode);
      if (this.residual || this.shared) {
        const flat = tf.reshape(x, [batch * tokens, d]) as tf.Tensor2D;
        let dense: tf.Tensor = tf.reshape(denseExpertPaths(tf.reshape(y, [batch * tokens, d]) as tf.Tensor2D, flat, this.residual, this.shared, this.activationFn, this.expertMatMul), [batch, tokens, d]);
        if (userMask != null) dense = tf.mul(dense, tf.reshape(tf.cast(userMask, 'float32'), [batch, tokens, 1]));
        y = dense;
      }
      y = tf.reshape(y, [...lead, tokens, d]);
      aux = tf.keep(routing.auxiliaryLoss);
      if (metricsOn) metrics = Object.fromEntries(Object.entries(routing.metrics).map(([k, v]) => [k, tf.keep(v)])) as RoutingMetrics;
      if (!this.outputRouterLogits) return y;
      const logits = groupLogits(this.router, r);
      const back = (t: tf.Tensor3D) => tf.reshape(ungroupTokens(t, batch, tokens, this.groupingMode), [...lead, tokens, this.numExperts]);
      const ones = tf.cast(tf.greaterEqual(routing.tokenIndices, 0), 'float32') as tf.Tensor3D;
      const mask = back(slotsToTokens(ones, routing.tokenIndices, S));
      const w = back(slotsToTokens(routing.combineWeights, routing.tokenIndices, S));
      return [y, back(logits), rankExperts(mask, w)];
    });
    if (metricsOn) this.last.replace(aux, metrics, training);
    else this.last.replaceLossOnly(aux, training);
    return out;
  }

  /** Runs every routed expert on its slots: `<float32>[E, n, d]` -> `<float32>[E, n, d]`. */
  private experts(xe: tf.Tensor): tf.Tensor3D {
    const w: FeedForwardVariables = {
      kernelIn: this.kernelIn as tf.LayerVariable, biasIn: this.biasIn ?? undefined,
      kernelGate: this.kernelGate ?? undefined, biasGate: this.biasGate ?? undefined,
      kernelOut: this.kernelOut as tf.LayerVariable, biasOut: this.biasOut ?? undefined,
    };
    return expertFeedForward(xe as tf.Tensor3D, readFeedForward(w), this.activationFn, this.expertMatMul);
  }

  /**
   * The per-token routing of an inference call on `x`, exactly as `call` groups, routes and
   * ungroups it (same groups, capacity and router state), without running the experts and without
   * touching {@link MoE.lastMetrics}. The caller owns the result and frees it with `dispose()`.
   *
   * @param x `<float32>[...batch, tokens, d]`
   * @param options `mask`: `<float32>[...batch, tokens]`, 1 = real token (default: all real)
   * @returns {@link MoERouting}: per-token router logits, gates, dispatch mask, combine weights and
   *   experts `[...batch, tokens, E]`, and the grouped routing
   * @throws {ShapeError} as `call` does
   *
   * @example
   * ```ts
   * const routing = layer.inspect(tokens);           // tokens: <float32>[2, 17, 64]
   * const main = routing.expertIndices.slice([0, 0, 0], [-1, -1, 1]); // [2, 17, 1]: each token's main expert
   * routing.dispose();
   * ```
   */
  inspect(x: tf.Tensor, options: {mask?: tf.Tensor} = {}): MoERouting {
    checkOptions(options, ['mask'], 'MoE.inspect');
    return inspectLayer(this, x, options.mask);
  }

  /**
   * Whether calls compute the routing metrics (default true): the router's
   * `Router.computeMetrics`, a run-time switch not saved in the config. With false a call
   * launches no metric kernel (a training step of the default V-MoE on wasm: 2,263 -> 1,704
   * kernels); the output, the auxiliary loss and every gradient are the same, and
   * {@link MoE.lastMetrics} keeps the values of the last call that computed metrics.
   * `withRoutingMetrics(model, false, fn)` switches every MoE layer of a model for one scope
   * (tfjs-layers' `model.apply` does not pass custom call arguments to nested layers).
   *
   * @throws {InvalidArgumentError} when set to a non-boolean
   *
   * @example
   * ```ts
   * layer.computeMetrics = false;
   * layer.apply(x, {training: true}); // no metric kernels; layer.lastMetrics unchanged
   * ```
   */
  get computeMetrics(): boolean {
    return this.router.computeMetrics;
  }

  set computeMetrics(on: boolean) {
    this.router.computeMetrics = on;
  }

  /**
   * Metrics of the last call that computed them (training or inference; every call, unless
   * {@link MoE.computeMetrics} is off) as plain numbers and arrays (names in
   * `routing-result.ts`), or null before the first such call. Read lazily (one read per metric,
   * cached), so calls stay asynchronous until someone asks.
   */
  get lastMetrics(): RoutingMetricValues | null {
    return this.last.lastMetrics;
  }

  /** Metrics of the last training-mode call that computed them (e.g. the last `fit` batch), or null. */
  get lastTrainingMetrics(): RoutingMetricValues | null {
    return this.last.metricsOf('training');
  }

  /** Metrics of the last inference-mode call that computed them (e.g. the last validation batch), or null. */
  get lastInferenceMetrics(): RoutingMetricValues | null {
    return this.last.metricsOf('inference');
  }

  /** Mode of the last call: true (training), false (inference), null before any call. */
  get lastCallTraining(): boolean | null {
    return this.last.training;
  }

  /**
   * Metrics of the last call, read asynchronously (`await data()`), so that it works on every
   * backend, also webgpu in Node, where synchronous reads are unavailable. Same values as
   * {@link MoE.lastMetrics}, which afterwards serves them from the values read here.
   *
   * @example
   * ```ts
   * const m = await layer.readLastMetrics(); // {tokensPerExpert: [...], ...} or null
   * ```
   */
  readLastMetrics(): Promise<RoutingMetricValues | null> {
    return this.last.read();
  }

  /** `<float32>[]`: the auxiliary loss of the last call (owned by the layer), or null. */
  get lastAuxiliaryLoss(): tf.Scalar | null {
    return this.last.auxiliaryLoss;
  }

  /** Frees the tensors kept from the last calls (metrics and auxiliary loss). */
  disposeLast(): void {
    this.last.replace(null, null, null);
  }

  /** Disposes the layer's weights (as tfjs layers do) and the tensors kept from the last call. */
  override dispose(): ReturnType<tf.layers.Layer['dispose']> {
    this.disposeLast();
    return super.dispose();
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    if (!this.outputRouterLogits) return shape;
    const perToken = [...shape.slice(0, -1), this.numExperts];
    return [shape, perToken, perToken];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      numExperts: this.numExperts,
      hiddenDim: this.hiddenDim,
      activation: this.activation,
      gated: this.gated,
      router: {className: this.router.getClassName(), config: withoutDeviceChoices(this.router.getConfig())},
      capacityFactor: this.capacityFactor,
      evalCapacityFactor: this.evalCapacityFactor,
      minCapacity: this.minCapacity,
      dropTokens: this.dropTokens,
      dropless: this.dropless,
      groupSize: this.groupSize ?? null,
      groupingMode: this.groupingMode,
      normalizeCombineWeights: this.normalizeCombineWeights,
      numSharedExperts: this.numSharedExperts,
      sharedHiddenDim: this.sharedHiddenDim,
      residualExpert: this.residualExpert,
      outputRouterLogits: this.outputRouterLogits,
      useBias: this.useBias,
      kernelInitializer: serializeInitializer(this.kernelInitializer),
      biasInitializer: serializeInitializer(this.biasInitializer),
    };
  }

  /**
   * Rebuilds the layer from {@link MoE.getConfig} output; the nested router is rebuilt through
   * `tf.serialization` from its `{className, config}`. Configs saved by earlier versions (with
   * `expertMatMul`, without the newer fields) load unchanged.
   */
  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    // tfjs adds `customObjects` to every config it deserializes.
    const {customObjects: _customObjects, ...rest} = config;
    const args = {...rest, groupSize: config.groupSize ?? undefined} as unknown as MoEArgs;
    const spec = config.router as {className?: unknown; config?: tf.serialization.ConfigDict} | undefined;
    if (spec && typeof spec.className === 'string' && spec.config) {
      const entry = tf.serialization.SerializationMap.getMap().classNameMap[spec.className];
      // Registered class names deserialize directly; older names go through the router aliases.
      args.router = entry
        ? (entry[1](entry[0], {numExperts: config.numExperts, ...spec.config}) as unknown as Router)
        : (spec as RouterSpec);
    }
    return new cls(args as unknown as tf.serialization.ConfigDict) as T;
  }
}
tf.serialization.registerClass(MoE);

/**
 * Creates an {@link MoE} layer.
 *
 * @example
 * ```ts
 * const layer = moe({numExperts: 8, hiddenDim: 768, router: 'topk', k: 2});
 * const y = layer.apply(tf.randomNormal([4, 64, 192])) as tf.Tensor; // [4, 64, 192]
 * console.log(layer.lastMetrics?.droppedFraction);
 * ```
 */
export function moe(args: MoEArgs): MoE {
  return new MoE(args);
}
