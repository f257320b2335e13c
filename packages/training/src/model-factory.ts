/** The models the CLI trains: the dense ViT or a V-MoE with any router, sized from the data. */
import * as tf from '@tensorflow/tfjs';
import {ConfigError, InvalidArgumentError} from '@tfjs-moe/router';
import {vit, vmoe, type ViTConfig, type ViTPresetName, type VMoEConfigLike} from '@tfjs-moe/models';
import {MODEL_DEFAULTS} from './defaults';

/**
 * Routers the CLI offers; `'dense'` is the plain ViT (no experts).
 *
 * @example
 * ```ts
 * ROUTER_CHOICES.includes('topk'); // true
 * ```
 */
export const ROUTER_CHOICES = ['sparse-ot', 'topk', 'expert-choice', 'sinkhorn', 'dense'] as const;
/** A router choice. */
export type RouterChoice = (typeof ROUTER_CHOICES)[number];
/**
 * Gradient modes of the sparse-OT router.
 *
 * @example
 * ```ts
 * GRADIENT_CHOICES; // ['softmax', 'implicit', 'unrolled']
 * ```
 */
export const GRADIENT_CHOICES = ['softmax', 'implicit', 'unrolled'] as const;
/** A gradient mode. */
export type GradientChoice = (typeof GRADIENT_CHOICES)[number];

/** What model to train. Every field has a default. */
export interface ModelSpec {
  /** Routing rule of every MoE block, or `'dense'`. Default `'sparse-ot'`. */
  router?: RouterChoice;
  /** Sparse-OT only: how gradients reach the router. Default `'softmax'`. */
  gradient?: GradientChoice;
  /** Experts per MoE block. Default 4. */
  experts?: number;
  /** Top-k only: experts per token (k; 1 is Switch, 2 is GShard / V-MoE's top-2). Default 1. */
  expertsPerToken?: number;
  /** Capacity factor in training (> 0). Default 1.25. */
  capacityFactor?: number;
  /** Capacity factor at evaluation. Default: `capacityFactor`. */
  evalCapacityFactor?: number;
  /**
   * Tokens per routing group. Default: one image's tokens (per-example groups). A group larger
   * than one image's tokens switches to `'flat'` grouping (tokens of several images routed
   * together, as V-MoE trains); inference stays per-example only without it.
   */
  groupSize?: number;
  /** ViT preset. Default `'mnist-tiny'` (patch 7: 16 patches + class token, d 64, depth 4). */
  preset?: ViTPresetName;
  /** Encoder depth override. */
  depth?: number;
  /** Model width override. */
  hiddenSize?: number;
  /** MLP / expert hidden width override. */
  mlpDim?: number;
  /** Attention heads override. */
  numHeads?: number;
  /** Patch size override. */
  patchSize?: number;
  /** Top-k only: experts per token (the same as `expertsPerToken`; the CLI flag is `--k`). Default 1. */
  k?: number;
  /** Top-k only: weight of the load-balancing loss. Default: the router's (0.01). */
  loadBalanceLossWeight?: number;
  /** Top-k, expert choice, Sinkhorn: weight of the router z-loss. Default: the router's (0). */
  zLossWeight?: number;
  /** Top-k only: multiplicative jitter on the router input in training. Default: the router's (0). */
  jitterNoise?: number;
}

/**
 * The router knobs of {@link ModelSpec} each router takes; any other is a {@link ConfigError}.
 *
 * @example
 * ```ts
 * ROUTER_KNOBS.topk; // ['k', 'loadBalanceLossWeight', 'zLossWeight', 'jitterNoise']
 * ```
 */
export const ROUTER_KNOBS: Readonly<Record<RouterChoice, readonly ('k' | 'loadBalanceLossWeight' | 'zLossWeight' | 'jitterNoise')[]>> = {
  topk: ['k', 'loadBalanceLossWeight', 'zLossWeight', 'jitterNoise'],
  'expert-choice': ['zLossWeight'],
  sinkhorn: ['zLossWeight'],
  'sparse-ot': [],
  dense: [],
};

/** The keys of {@link ModelSpec}. */
export const MODEL_SPEC_KEYS = [
  'router', 'gradient', 'experts', 'capacityFactor', 'evalCapacityFactor', 'groupSize', 'preset', 'depth', 'hiddenSize', 'mlpDim', 'numHeads', 'patchSize',
  'expertsPerToken', 'k', 'loadBalanceLossWeight', 'zLossWeight', 'jitterNoise',
] as const;

/** A {@link ModelSpec} with defaults filled in and every field checked. */
export type ResolvedModelSpec = Required<Pick<ModelSpec, 'router' | 'gradient' | 'experts' | 'capacityFactor' | 'preset'>> & ModelSpec;

/**
 * Checks a model spec and fills in defaults. Errors name the field and echo the value, e.g.
 * `Expected router to be one of 'sparse-ot', 'topk', 'expert-choice', 'sinkhorn', 'dense', but got "switch".`
 *
 * @example
 * ```ts
 * resolveModelSpec({router: 'topk', capacityFactor: 1.0}).experts; // 4
 * ```
 */
export function resolveModelSpec(spec: ModelSpec = {}): ResolvedModelSpec {
  const router = spec.router ?? MODEL_DEFAULTS.router;
  if (!(ROUTER_CHOICES as readonly string[]).includes(router)) {
    throw new ConfigError('router', `one of ${ROUTER_CHOICES.map((r) => `'${r}'`).join(', ')}`, router);
  }
  const gradient = spec.gradient ?? MODEL_DEFAULTS.gradient;
  if (!(GRADIENT_CHOICES as readonly string[]).includes(gradient)) {
    throw new ConfigError('gradient', `one of ${GRADIENT_CHOICES.map((r) => `'${r}'`).join(', ')}`, gradient);
  }
  if (gradient !== 'softmax' && router !== 'sparse-ot') {
    throw new ConfigError('gradient', `'softmax' for router '${router}' (implicit and unrolled are sparse-ot modes)`, gradient);
  }
  const experts = spec.experts ?? MODEL_DEFAULTS.experts;
  if (spec.expertsPerToken !== undefined) {
    if (router !== 'topk') throw new ConfigError('expertsPerToken', `unset for router '${router}' (a top-k setting)`, spec.expertsPerToken);
    if (!Number.isInteger(spec.expertsPerToken) || spec.expertsPerToken < 1 || spec.expertsPerToken > experts) {
      throw new InvalidArgumentError('expertsPerToken', `an integer in [1, ${experts}] (the experts)`, spec.expertsPerToken);
    }
  }
  if (!Number.isInteger(experts) || experts < 1) throw new InvalidArgumentError('experts', 'a positive integer', experts);
  const capacityFactor = spec.capacityFactor ?? MODEL_DEFAULTS.capacityFactor;
  if (typeof capacityFactor !== 'number' || !Number.isFinite(capacityFactor) || capacityFactor <= 0) {
    throw new InvalidArgumentError('capacityFactor', 'a finite number > 0', capacityFactor);
  }
  if (spec.evalCapacityFactor !== undefined && !(spec.evalCapacityFactor > 0)) {
    throw new InvalidArgumentError('evalCapacityFactor', 'a finite number > 0', spec.evalCapacityFactor);
  }
  if (spec.groupSize !== undefined && (!Number.isInteger(spec.groupSize) || spec.groupSize < 1)) {
    throw new InvalidArgumentError('groupSize', 'a positive integer', spec.groupSize);
  }
  for (const knob of ['k', 'loadBalanceLossWeight', 'zLossWeight', 'jitterNoise'] as const) {
    const v = spec[knob];
    if (v === undefined) continue;
    if (!ROUTER_KNOBS[router].includes(knob)) {
      throw new ConfigError(knob, `unset for router '${router}' (it applies to ${Object.entries(ROUTER_KNOBS).filter(([, ks]) => ks.includes(knob)).map(([r]) => `'${r}'`).join(', ')})`, v);
    }
    if (knob === 'k' ? !Number.isInteger(v) || v < 1 || v > experts : typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new InvalidArgumentError(knob, knob === 'k' ? `an integer in [1, ${experts}] (the experts)` : 'a finite number >= 0', v);
    }
  }
  return {...spec, router, gradient, experts, capacityFactor, preset: spec.preset ?? MODEL_DEFAULTS.preset};
}

/** The data shape a model is built for. */
export interface InputSpec {
  height: number;
  width: number;
  channels: number;
  numClasses: number;
}

/** The model config of a spec: a ViT config (`router: 'dense'`) or a V-MoE config. */
export type ModelConfig = {kind: 'vit'; config: ViTConfig} | {kind: 'vmoe'; config: VMoEConfigLike};

/**
 * The `vit` / `vmoe` config that {@link buildModel} builds for `spec` and `input` (one place,
 * shared with the FLOP count of `compare`).
 *
 * @example
 * ```ts
 * modelConfig({router: 'topk'}, {height: 28, width: 28, channels: 1, numClasses: 10}).kind; // 'vmoe'
 * ```
 */
export function modelConfig(spec: ModelSpec, input: InputSpec, seed?: number): ModelConfig {
  const s = resolveModelSpec(spec);
  const vitPart = {
    ...(seed !== undefined ? {seed} : {}),
    preset: s.preset,
    imageSize: [input.height, input.width] as [number, number],
    channels: input.channels,
    numClasses: input.numClasses,
    headActivation: 'linear' as const,
    ...(s.depth !== undefined ? {depth: s.depth} : {}),
    ...(s.hiddenSize !== undefined ? {hiddenSize: s.hiddenSize} : {}),
    ...(s.mlpDim !== undefined ? {mlpDim: s.mlpDim} : {}),
    ...(s.numHeads !== undefined ? {numHeads: s.numHeads} : {}),
    ...(s.patchSize !== undefined ? {patchSize: s.patchSize} : {}),
  };
  const patch = s.patchSize ?? ({'mnist-tiny': 7, 'mnist-small': 4, 'cifar-tiny': 4} as const)[s.preset];
  if (input.height % patch !== 0 || input.width % patch !== 0) {
    // Named for the run's settings (the data's image size against the preset's or given patch),
    // not as the ViT's internal imageSize check.
    throw new InvalidArgumentError(
      'patchSize', `a divisor of the data's ${input.height}x${input.width} images (${s.patchSize !== undefined ? 'given' : `preset '${s.preset}'`}; ` +
        "set patchSize in a --config file, or pick another --preset)", patch, 'model');
  }
  if (s.router === 'dense') return {kind: 'vit', config: {...vitPart, name: 'vit'} as unknown as ViTConfig};
  const tokensPerImage = (input.height / patch) * (input.width / patch) + 1;
  const flat = s.groupSize !== undefined && s.groupSize > tokensPerImage;
  const knobs: Record<string, unknown> = Object.fromEntries(ROUTER_KNOBS[s.router].filter((k) => s[k] !== undefined).map((k) => [k, s[k]]));
  if (s.router === 'topk' && s.expertsPerToken !== undefined) knobs.k = s.expertsPerToken;
  const router = s.router === 'sparse-ot' ? {name: 'sparse-ot', gradient: s.gradient, warmStart: true} : Object.keys(knobs).length ? {name: s.router, ...knobs} : s.router;
  return {
    kind: 'vmoe',
    config: {
      ...vitPart,
      name: 'vmoe',
      moe: {
        numExperts: s.experts,
        router,
        capacityFactor: s.capacityFactor,
        ...(s.evalCapacityFactor !== undefined ? {evalCapacityFactor: s.evalCapacityFactor} : {}),
        ...(s.groupSize !== undefined ? {groupSize: s.groupSize} : {}),
        ...(flat ? {groupingMode: 'flat' as const} : {}),
      },
    },
  };
}

/**
 * Builds the model of `spec` for `input`: a ViT (`router: 'dense'`) or a V-MoE with MoE blocks
 * every other block; outputs logits `<float32>[batch, numClasses]` (linear head). With `seed`
 * (a non-negative integer) every initializer is seeded from it; without, initial weights are
 * unseeded.
 *
 * @example
 * ```ts
 * const model = buildModel({router: 'sparse-ot', experts: 4}, {height: 28, width: 28, channels: 1, numClasses: 10});
 * ```
 */
export function buildModel(spec: ModelSpec, input: InputSpec, seed?: number): tf.LayersModel {
  const m = modelConfig(spec, input, seed);
  return m.kind === 'vit' ? vit(m.config) : vmoe(m.config);
}
