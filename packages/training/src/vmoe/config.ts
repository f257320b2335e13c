/**
 * vmoe's model config (`config.model` of a vmoe experiment, as `ml_collections`'s `to_json()`
 * writes it) to a tfjs-moe `vmoe()` / `vit()` config. Checkpoints hold no config, so the importer
 * needs this JSON. Every field is either mapped, accepted as training-only (it does not change
 * the logits at evaluation), or rejected with a {@link ConfigError} that names it.
 */
import {ConfigError, formatValue} from '@tfjs-moe/router';
import type {MoEBlockOptions, ViTConfig, VMoEConfig} from '@tfjs-moe/models';

/** The router classes that the importer maps, by the last component of `router.name`. */
export const SUPPORTED_ROUTERS = ['NoisyTopExpertsPerItemRouter', 'KSparseProjectionTransportTopItemsPerExpertRouter'] as const;

/** vmoe's routers that the importer knows but cannot reproduce, and why. */
const UNSUPPORTED_ROUTERS: Record<string, string> = {
  NoisyTopItemsPerExpertRouter: 'expert choice: each expert takes its top tokens; tfjs-moe\'s expert-choice router sizes capacity differently from vmoe\'s compute_capacity',
  KSparseProjectionTransportTopExpertsPerItemRouter: 'k-sparse OT with tokens choosing experts (the token-choice dispatcher on plan values, with or without batch priority)',
  SparseProjectionTransportTopItemsPerExpertRouter: 'unconstrained L2 OT',
  KLProjectionNoisyTopExpertsPerItemRouter: 'entropic OT (ott-jax Sinkhorn)',
  KLProjectionNoisyTopItemsPerExpertRouter: 'entropic OT (ott-jax Sinkhorn)',
};

/**
 * A vmoe router that the importer cannot reproduce exactly (`router` names it as the config
 * does). The message says which router and which ones are supported.
 *
 * @example
 * ```ts
 * try { vmoeConfigToTfjs(json, [224, 224], 3); } catch (e) {
 *   if (e instanceof UnsupportedRouterError) console.log(e.router); // 'NoisyTopItemsPerExpertRouter'
 * }
 * ```
 */
export class UnsupportedRouterError extends ConfigError {
  readonly router: string;
  constructor(router: string, what: string | undefined) {
    super('encoder.moe.router.name', `one of ${SUPPORTED_ROUTERS.map((n) => `'${n}'`).join(', ')}`, router, 'vmoe config');
    this.router = router;
    this.message = `vmoe config: encoder.moe.router.name ${JSON.stringify(router)}${what ? ` (${what})` : ''} is not supported by the importer. `
      + 'Supported: NoisyTopExpertsPerItemRouter (top-k experts per token, with or without batch priority) and '
      + 'KSparseProjectionTransportTopItemsPerExpertRouter (sparse OT, experts choose tokens, without batch priority).';
  }
}

/** Options of {@link vmoeConfigToTfjs} that the JSON does not hold. */
export interface VMoEImportOptions {
  /**
   * Input image size; default: from the position embedding's length (a square grid of patches).
   */
  imageSize?: number | [number, number];
  /** Input channels; default from the checkpoint's `embedding/kernel` (3 for vmoe's models). */
  channels?: number;
  /**
   * vmoe's `dispatcher.bfloat16: true` rounds expert inputs and outputs to bfloat16; tfjs-moe
   * computes them in float32 (logits differ by about 1e-3). Without this flag such a config is an
   * error; with it the import proceeds in float32. Default false.
   */
  acceptFloat32Dispatch?: boolean;
  /** Name of the tfjs model. Default `'vmoe'` (or `'vit'` for a dense model). */
  name?: string;
}

/** The tfjs config and what the importer needs to know besides. */
export interface ImportedConfig {
  /** `vmoe()` config for a model with MoE blocks, `vit()` config otherwise. */
  config: VMoEConfig | ViTConfig;
  /** True when the config has MoE blocks. */
  isMoE: boolean;
  /** Parameter naming of the checkpoint: vmoe (`Encoder/encoderblock_i/...`) or vit_jax (`Transformer/...`). */
  naming: 'vmoe' | 'vit_jax';
}

type Json = Record<string, unknown>;

/** Training-only or initialization-only fields: accepted, they do not change evaluation logits. */
const TRAINING_ONLY = new Set([
  'head_bias_init', 'head_kernel_zero_init', 'deterministic', 'dropout_rate', 'attention_dropout_rate',
  'split_rngs', 'noise_std', 'gshard_loss_weight', 'importance_loss_weight', 'load_loss_weight',
  'partition_spec', 'einsum_precision', 'model_name', 'dtype',
]);

function fields(obj: unknown, where: string, known: string[]): Json {
  if (obj == null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new ConfigError(where || 'config', 'a JSON object', obj, 'vmoe config');
  }
  for (const k of Object.keys(obj)) {
    const v = (obj as Json)[k];
    if (k === 'dtype' && v != null && v !== 'float32') {
      throw new ConfigError(where ? `${where}.dtype` : 'dtype', 'null or \'float32\' (tfjs-moe computes in float32)', v, 'vmoe config');
    }
    if (!known.includes(k) && !TRAINING_ONLY.has(k)) {
      const field = where ? `${where}.${k}` : k;
      const e = new ConfigError(field, `one of the supported fields (${known.join(', ')})`, v, 'vmoe config');
      e.message = `vmoe config: field ${field} = ${formatValue(v)} is not supported by the importer. `
        + `Supported fields ${where ? `of ${where}` : 'at the top level'}: ${known.join(', ')} (and the training-only ${[...TRAINING_ONLY].join(', ')}, which do not change the logits).`;
      throw e;
    }
  }
  return obj as Json;
}

function posInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ConfigError(name, 'a positive integer', v, 'vmoe config');
  return v;
}

function zeroOrFalse(v: unknown, name: string, expected: string): void {
  if (v !== undefined && v !== null && v !== false && v !== 0) throw new ConfigError(name, `${expected} (other values are not supported)`, v, 'vmoe config');
}

/** Reads `patch_size: [p, p]` or vit_jax's `patches: {size: [p, p]}`; non-square patches are an error. */
function patchSize(c: Json): number {
  const raw = c.patch_size ?? (c.patches as Json | undefined)?.size;
  const where = c.patch_size !== undefined ? 'patch_size' : 'patches.size';
  const pair = Array.isArray(raw) ? raw : [raw, raw];
  if (pair.length !== 2 || pair[0] !== pair[1]) throw new ConfigError(where, 'square patches [p, p]', raw, 'vmoe config');
  return posInt(pair[0], where);
}

/**
 * Maps vmoe's `config.model` JSON onto a tfjs-moe config. GELU is the tanh approximation
 * (`'gelu_new'`), LayerNorm epsilon 1e-6, the head outputs logits (`headActivation: 'linear'`), MoE
 * blocks group `group_size` consecutive tokens of the whole batch (`groupingMode: 'flat'`, groups
 * may span images), with vmoe's capacity rule (`'vmoe-topk'` / `'vmoe-sparse-ot'` routers).
 *
 * Supported: `name` `VisionTransformerMoe` (or `VisionTransformer`, vit_jax's dense ViT with
 * `transformer` and `patches`), `classifier` `'token'` / `'gap'`, `representation_size`, learned
 * position embeddings, routers `NoisyTopExpertsPerItemRouter` (top-k per token, optional batch
 * priority) and the sparsity-constrained OT project's
 * `KSparseProjectionTransportTopItemsPerExpertRouter` (our sparse-OT `preset: 'paper'`), the
 * dispatcher's `capacity_factor` / `capacity`, `capacity_ceil_or_round`, `capacity_multiple_of`,
 * `batch_priority`. Training-only fields (dropout, router noise and loss weights, head init,
 * partition specs) are accepted.
 *
 * @param json the parsed JSON of vmoe's `config.model` (with the evaluation overrides applied
 *   when the logits of vmoe's evaluation are wanted)
 * @param imageSize `[height, width]` in pixels
 * @param channels input channels
 * @throws ConfigError naming the first unsupported or bad field with its value and what is
 *   supported; {@link UnsupportedRouterError} (a ConfigError) for a router that is not supported
 * @example
 * ```ts
 * const {config} = vmoeConfigToTfjs(JSON.parse(fs.readFileSync('model.json', 'utf8')), [224, 224], 3);
 * const model = vmoe(config as VMoEConfig);
 * ```
 */
export function vmoeConfigToTfjs(json: unknown, imageSize: [number, number], channels: number, options: VMoEImportOptions = {}): ImportedConfig {
  const top = fields(json, '', ['name', 'num_classes', 'patch_size', 'patches', 'hidden_size', 'classifier', 'representation_size', 'encoder', 'transformer']);
  const name = top.name ?? (top.transformer !== undefined ? 'VisionTransformer' : 'VisionTransformerMoe');
  const naming = name === 'VisionTransformer' || top.transformer !== undefined ? 'vit_jax' : 'vmoe';
  if (name !== 'VisionTransformerMoe' && name !== 'VisionTransformer' && !/(^|\.)VisionTransformerMoe$/.test(String(name))) {
    throw new ConfigError('name', "'VisionTransformerMoe' or 'VisionTransformer'", name, 'vmoe config');
  }
  if (top.patches !== undefined) fields(top.patches, 'patches', ['size']);
  const classifier = top.classifier ?? 'token';
  if (classifier !== 'token' && classifier !== 'gap') {
    throw new ConfigError('classifier', "'token' or 'gap' ('map' and '0' are not supported)", classifier, 'vmoe config');
  }
  const encKey = naming === 'vit_jax' ? 'transformer' : 'encoder';
  const enc = fields(top[encKey], encKey, ['num_layers', 'mlp_dim', 'num_heads', 'moe', 'attention_qk_norm', 'position_emb']);
  zeroOrFalse(enc.attention_qk_norm, `${encKey}.attention_qk_norm`, 'false');
  if (enc.position_emb != null) {
    const pe = fields(enc.position_emb, `${encKey}.position_emb`, ['name']);
    if (pe.name !== undefined && pe.name !== 'learned') {
      throw new ConfigError(`${encKey}.position_emb.name`, "'learned' ('sincos2d' and 'none' are not supported)", pe.name, 'vmoe config');
    }
  }
  const hiddenSize = posInt(top.hidden_size, 'hidden_size');
  const depth = posInt(enc.num_layers, `${encKey}.num_layers`);
  const mlpDim = posInt(enc.mlp_dim, `${encKey}.mlp_dim`);
  const numHeads = posInt(enc.num_heads, `${encKey}.num_heads`);
  if (hiddenSize % numHeads !== 0) throw new ConfigError(`${encKey}.num_heads`, `a divisor of hidden_size ${hiddenSize}`, numHeads, 'vmoe config');
  const numClasses = posInt(top.num_classes, 'num_classes');
  const representationSize = top.representation_size == null ? null : posInt(top.representation_size, 'representation_size');
  const vitConfig: ViTConfig = {
    imageSize,
    channels,
    patchSize: patchSize(top),
    hiddenSize,
    depth,
    numHeads,
    mlpDim,
    numClasses,
    classifier,
    activation: 'gelu_new',
    headActivation: 'linear',
    layerNormEpsilon: 1e-6,
    representationSize,
    name: options.name ?? (enc.moe == null ? 'vit' : 'vmoe'),
  };
  if (enc.moe == null) return {config: vitConfig, isMoE: false, naming};
  if (naming === 'vit_jax') throw new ConfigError(`${encKey}.moe`, 'absent (vit_jax models are dense)', enc.moe, 'vmoe config');
  const moe = fields(enc.moe, 'encoder.moe', ['num_experts', 'layers', 'group_size', 'router']);
  const numExperts = posInt(moe.num_experts, 'encoder.moe.num_experts');
  if (!Array.isArray(moe.layers)) throw new ConfigError('encoder.moe.layers', 'a list of block indices', moe.layers, 'vmoe config');
  const layers = moe.layers.map((l, i) => {
    if (typeof l !== 'number' || !Number.isInteger(l) || l < 0 || l >= depth) {
      throw new ConfigError(`encoder.moe.layers[${i}]`, `a block index in [0, ${depth - 1}]`, l, 'vmoe config');
    }
    return l;
  });
  const groupSize = posInt(moe.group_size, 'encoder.moe.group_size');
  if (layers.length === 0) return {config: {...vitConfig, name: options.name ?? 'vit'}, isMoE: false, naming};
  const moeOptions = routerOptions(moe.router, numExperts, options);
  const config: VMoEConfig = {
    ...vitConfig,
    moe: {numExperts, hiddenDim: mlpDim, activation: 'gelu_new', groupSize, groupingMode: 'flat', ...moeOptions},
    moeBlocks: [...layers].sort((a, b) => a - b),
  };
  return {config, isMoE: true, naming};
}

function routerOptions(routerJson: unknown, numExperts: number, options: VMoEImportOptions): Omit<MoEBlockOptions, 'numExperts'> {
  const r = routerJson == null ? {} : (routerJson as Json);
  const rawName = String(r.name ?? 'NoisyTopExpertsPerItemRouter');
  const cls = rawName.split('.').pop() as string;
  if (!(SUPPORTED_ROUTERS as readonly string[]).includes(cls)) throw new UnsupportedRouterError(rawName, UNSUPPORTED_ROUTERS[cls]);
  const ot = cls === 'KSparseProjectionTransportTopItemsPerExpertRouter';
  const known = ot ? ['name', 'maxiter', 'adam_lr', 'use_softmax_combine_weights', 'dispatcher', 'num_selected_experts']
    : ['name', 'num_selected_experts', 'dispatcher'];
  fields(r, 'encoder.moe.router', known);
  const d = fields(r.dispatcher ?? {}, 'encoder.moe.router.dispatcher',
    ['name', 'capacity_factor', 'capacity', 'capacity_ceil_or_round', 'capacity_multiple_of', 'batch_priority', 'bfloat16']);
  const where = 'encoder.moe.router.dispatcher';
  if (d.name !== undefined && d.name !== 'einsum' && d.name !== 'indices') {
    throw new ConfigError(`${where}.name`, "'einsum' or 'indices'", d.name, 'vmoe config');
  }
  if (d.bfloat16 === true && !options.acceptFloat32Dispatch) {
    throw new ConfigError(`${where}.bfloat16`, 'false, or the import option acceptFloat32Dispatch (CLI --accept-float32-dispatch): tfjs-moe does not round expert inputs and outputs to bfloat16 (logits differ by about 1e-3)', d.bfloat16, 'vmoe config');
  }
  const hasFactor = d.capacity_factor != null;
  const hasCapacity = d.capacity != null;
  if (hasFactor === hasCapacity) {
    throw new ConfigError(`${where}.capacity_factor`, 'given, or capacity given instead (exactly one of the two)', d.capacity_factor, 'vmoe config');
  }
  if (hasFactor && (typeof d.capacity_factor !== 'number' || !(d.capacity_factor > 0))) {
    throw new ConfigError(`${where}.capacity_factor`, 'a number > 0', d.capacity_factor, 'vmoe config');
  }
  const rounding = d.capacity_ceil_or_round ?? 'ceil';
  if (rounding !== 'ceil' && rounding !== 'round') throw new ConfigError(`${where}.capacity_ceil_or_round`, "'ceil' or 'round'", rounding, 'vmoe config');
  const multipleOf = d.capacity_multiple_of === undefined ? 4 : d.capacity_multiple_of;
  if (multipleOf !== null && (typeof multipleOf !== 'number' || !Number.isInteger(multipleOf) || multipleOf < 0)) {
    throw new ConfigError(`${where}.capacity_multiple_of`, 'a non-negative integer or null', multipleOf, 'vmoe config');
  }
  const capacityArgs = {
    capacityRounding: rounding,
    capacityMultipleOf: multipleOf as number | null,
    fixedCapacity: hasCapacity ? posInt(d.capacity, `${where}.capacity`) : null,
  };
  const capacityFactor = hasFactor ? (d.capacity_factor as number) : 1;
  if (ot) {
    zeroOrFalse(d.batch_priority, `${where}.batch_priority`, `absent or false (${cls} lets experts choose tokens; batch priority is not supported with it)`);
    if (r.use_softmax_combine_weights === false) {
      throw new ConfigError('encoder.moe.router.use_softmax_combine_weights', 'true (plan-valued combine weights are not supported)', false, 'vmoe config');
    }
    const maxiter = r.maxiter === undefined ? 20 : posInt(r.maxiter, 'encoder.moe.router.maxiter');
    const lr = r.adam_lr === undefined ? 1e-2 : r.adam_lr;
    if (typeof lr !== 'number' || !(lr > 0)) throw new ConfigError('encoder.moe.router.adam_lr', 'a number > 0', lr, 'vmoe config');
    return {
      router: {name: 'vmoe-sparse-ot', numExperts, preset: 'paper', maxIterations: maxiter, learningRate: lr, ...capacityArgs},
      capacityFactor,
      evalCapacityFactor: capacityFactor,
    };
  }
  const k = r.num_selected_experts === undefined ? 1 : posInt(r.num_selected_experts, 'encoder.moe.router.num_selected_experts');
  if (k > numExperts) throw new ConfigError('encoder.moe.router.num_selected_experts', `at most num_experts ${numExperts}`, k, 'vmoe config');
  return {
    router: {name: 'vmoe-topk', numExperts, k, batchPrioritizedRouting: d.batch_priority === true, normalizeGates: false, ...capacityArgs},
    capacityFactor,
    evalCapacityFactor: capacityFactor,
  };
}
