/**
 * The arguments of the MoE layer, each documented, the list of keys that `moe(args)` accepts
 * (anything else is an `UnknownOptionError`), and the helpers that check and rewrite them
 * (default names, the layer's `k` folded into the router spec, run-time choices kept out of a
 * saved config).
 */
import * as tf from '@tensorflow/tfjs';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import {ConfigError, InvalidArgumentError} from '../core/errors';
import type {FeedForwardActivation} from './activations';
import type {ExpertMatMul} from './experts';
import type {GroupingMode} from './grouping';
import type {RouterSpec} from '../routers/registry';
import type {InitializerLike} from '../routers/router';

/** Expert activations: the one list shared with the dense MLPs ({@link FeedForwardActivation}). */
export type MoEActivation = FeedForwardActivation;

/**
 * Constructor arguments of {@link MoE}. Unknown keys throw `UnknownOptionError` (see
 * {@link MOE_ARG_KEYS}).
 *
 * @example
 * ```ts
 * moe({numExperts: 8, hiddenDim: 256, router: 'topk', k: 2});                  // top-2 (GShard)
 * moe({numExperts: 8, hiddenDim: 256, activation: 'silu', gated: true});        // SwiGLU experts
 * moe({numExperts: 8, hiddenDim: 128, router: 'topk', numSharedExperts: 1});    // DeepSeek-MoE
 * moe({numExperts: 8, hiddenDim: 256, router: 'topk', residualExpert: true});   // residual MoE
 * moe({numExperts: 8, hiddenDim: 256, router: 'topk', dropTokens: false});      // dropless training
 * moe({numExperts: 8, hiddenDim: 256, router: 'topk', minCapacity: 4});         // >= 4 slots per expert
 * moe({numExperts: 8, hiddenDim: 256, outputRouterLogits: true});               // [y, logits, experts]
 * moe({numExperts: 8, hiddenDim: 256, kernelInitializer: tf.initializers.glorotUniform({seed: 1})});
 * ```
 */
export interface MoEArgs extends LayerArgs {
  /** Number of routed experts E (>= 1). */
  numExperts: number;
  /** Hidden width h of every expert FFN (`d -> h -> d`). */
  hiddenDim: number;
  /**
   * Activation between the two expert matMuls (one list with the dense MLPs, including `'silu'`).
   * Default `'gelu'` (ViT).
   */
  activation?: MoEActivation;
  /**
   * Gated experts: `(act(x W1 + b1) * (x Wg + bg)) W2 + b2` (Shazeer 2020): with
   * `activation: 'silu'` SwiGLU, with `'gelu'` GeGLU. Adds a gate kernel `[E, d, h]` (and bias).
   * Default false.
   */
  gated?: boolean;
  /**
   * The routing rule: a registered name (`'sparse-ot'`, `'topk'`, `'expert-choice'`,
   * `'sinkhorn'`), a name with router arguments (`{name: 'topk', k: 2}`), a serialized
   * `{className, config}`, or a `Router` instance with the same `numExperts`. Default
   * `'sparse-ot'`.
   */
  router?: RouterSpec;
  /**
   * Experts per token for routers where tokens choose experts: `'topk'` (its `k`) and
   * `'sparse-ot'` with `direction: 'tokens-choose-experts'` (its `expertsPerToken`). The
   * documented way to ask for top-2 routing: `moe({router: 'topk', k: 2, ...})`. A router that
   * cannot take it (e.g. `'expert-choice'`) throws `ConfigError`. Default: the router's own.
   */
  k?: number;
  /** Same as `k` (the Hugging Face / Tutel name). */
  topK?: number;
  /**
   * Capacity factor in training: slots per expert =
   * `min(S, max(minCapacity, ceil(S * capacityFactor * expertsPerToken / E)))` for groups of S
   * tokens (the router may round it, see `Router.computeCapacity`). Default per router (table in
   * the router package README, "Capacity factors"): 1.25 for token-choice routers and sparse-OT,
   * 2.0 for expert choice.
   */
  capacityFactor?: number;
  /**
   * Capacity factor at inference (`predict`, `evaluate`, validation). Default per router:
   * `max(capacityFactor, 2.0)` for token-choice routers (as Switch and V-MoE evaluate),
   * `capacityFactor` for routers where experts choose tokens.
   */
  evalCapacityFactor?: number;
  /** Smallest number of slots per expert (Tutel / DeepSpeed `min_capacity`), at most S. Default 1. */
  minCapacity?: number;
  /**
   * False: dropless routing in training and at inference: every expert gets `S` slots, so no
   * token-choice router drops a token (for expert-choice and OT routers, every expert may take
   * every token). Default true (capacity as above).
   */
  dropTokens?: boolean;
  /** Inference only: as `dropTokens: false`, at inference. Default false. */
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
  /**
   * Shared experts (DeepSeek-MoE, Dai et al. 2024): this many FFNs `d -> sharedHiddenDim -> d`
   * that every real token passes through, added to the routed output. Default 0.
   */
  numSharedExperts?: number;
  /** Hidden width of each shared expert. Default `hiddenDim`. */
  sharedHiddenDim?: number;
  /**
   * Residual MoE (DeepSpeed-MoE, Rajbhandari et al. 2022, section 4.1): a dense FFN beside the
   * experts and a per-token mixture `y = c0 * moe(x) + c1 * ffn(x)`, `[c0, c1] = softmax(x Wc + bc)`.
   * Default false.
   */
  residualExpert?: boolean;
  /**
   * Also output per-token routing (Hugging Face's `output_router_logits`): the layer returns
   * `[y, routerLogits <float32>[..., tokens, E], expertIndices <int32>[..., tokens, E]]`
   * (experts by decreasing combine weight, -1 after the last). Default false.
   */
  outputRouterLogits?: boolean;
  /** Expert biases `[E, h]` and `[E, d]`. Default true. */
  useBias?: boolean;
  /**
   * Initializer of one expert's kernel `[d, h]` / `[h, d]`, applied per expert through a
   * `PerExpertInitializer`: a seeded initializer (`tf.initializers.glorotUniform({seed: 1})` or
   * `{className: 'GlorotUniform', config: {seed: 1}}`) gives each expert (and each kernel) its
   * own deterministic draw derived from the seed. Default `'glorotUniform'` (unseeded).
   */
  kernelInitializer?: InitializerLike;
  /** Initializer of the expert biases. Default `'zeros'`. */
  biasInitializer?: InitializerLike;
  /**
   * How the experts' matMuls run: `'batched'` (default) or `'per-expert'` (see `experts.ts`). A
   * run-time choice for the device at hand: it gives the same numbers and is not saved in the
   * layer's config.
   */
  expertMatMul?: ExpertMatMul;
  /**
   * Whether the experts run only on the filled slots (`compactSlots` in `dispatch.ts`): each
   * expert's filled slots of all groups packed into `n` rows (n = the most filled slots of any
   * expert) instead of `groups * capacity` rows, so empty capacity costs no expert FLOPs. Needs one
   * synchronous read of the token indices per call. `'auto'` (default): on the backends whose
   * kernels run synchronously (cpu, wasm), where that read costs only a copy, unless the router
   * promises no read (`hostReads: false`); `true`: always
   * (on webgl it waits for the pipeline; webgpu in Node cannot read synchronously); `false`: never. A
   * run-time choice: the same numbers (up to float32 summation order), not saved in the config.
   */
  compactDispatch?: CompactDispatch;
}

/** See {@link MoEArgs.compactDispatch}. */
export type CompactDispatch = 'auto' | boolean;

/** The tfjs `LayerArgs` keys that the layer accepts besides its own. */
const LAYER_ARG_KEYS = ['name', 'trainable', 'inputShape', 'batchInputShape', 'batchSize', 'dtype', 'weights', 'inputDType'] as const;

/** Every key that `moe(args)` accepts. */
export const MOE_ARG_KEYS: readonly string[] = [
  ...LAYER_ARG_KEYS,
  'numExperts', 'hiddenDim', 'activation', 'gated', 'router', 'k', 'topK', 'capacityFactor', 'evalCapacityFactor',
  'minCapacity', 'dropTokens', 'dropless', 'groupSize', 'groupingMode', 'normalizeCombineWeights', 'numSharedExperts',
  'sharedHiddenDim', 'residualExpert', 'outputRouterLogits', 'useBias', 'kernelInitializer', 'biasInitializer',
  'expertMatMul', 'compactDispatch',
];

let layerCount = 0;

/** Default layer names `moe_1`, `moe_2`, ... (as Keras numbers its layers). */
export function defaultName(): string {
  layerCount += 1;
  return `moe_${layerCount}`;
}

/** The router argument that holds experts per token, by router name or class name. */
const EXPERTS_PER_TOKEN_ARG: Readonly<Record<string, string>> = {
  topk: 'k', TopKRouter: 'k', 'sparse-ot': 'expertsPerToken', SparseOTRouter: 'expertsPerToken',
};

/** Puts the layer's `k` into the router spec (see `MoEArgs.k`). */
export function routerWithK(spec: RouterSpec, k: number | undefined): RouterSpec {
  if (k === undefined || spec instanceof tf.layers.Layer) return spec;
  const name = typeof spec === 'string' ? spec : ((spec as {name?: string}).name ?? (spec as {className?: string}).className);
  const arg = name === undefined ? undefined : EXPERTS_PER_TOKEN_ARG[name];
  if (arg === undefined) {
    throw new ConfigError('k', "a router where tokens choose experts ('topk', or 'sparse-ot' with direction 'tokens-choose-experts')", name, 'MoE');
  }
  const extra: Record<string, unknown> = {[arg]: k};
  if (arg === 'expertsPerToken') extra.direction = 'tokens-choose-experts';
  if (typeof spec === 'string') return {name: spec, ...extra} as RouterSpec;
  if ('config' in spec && typeof (spec as {className?: unknown}).className === 'string') {
    const s = spec as {className: string; config: tf.serialization.ConfigDict};
    return {className: s.className, config: {...extra, ...s.config} as tf.serialization.ConfigDict};
  }
  return {...extra, ...(spec as object)} as RouterSpec;
}

/**
 * A router config without its run-time device choices (`hostReads`): a saved model must behave the
 * same wherever it is loaded, and the loading program picks the device's default.
 */
export function withoutDeviceChoices(config: tf.serialization.ConfigDict): tf.serialization.ConfigDict {
  const {hostReads: _hostReads, ...rest} = config;
  return rest;
}

/** A finite number > 0, else `InvalidArgumentError` naming the argument. */
export function positive(argument: string, value: unknown, context: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(argument, 'a finite number > 0', value, context);
  }
  return value;
}

/** A boolean (`fallback` when absent), else `InvalidArgumentError` naming the argument. */
export function bool(argument: string, value: unknown, fallback: boolean, context: string): boolean {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw new InvalidArgumentError(argument, 'a boolean', value, context);
  return value;
}
