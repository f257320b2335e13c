/**
 * ViT configuration: every field documented, presets sized for 2 CPU cores, and validation that
 * names the bad field and echoes its value.
 */
import {checkOptions, ConfigError} from '@tfjs-moe/router';

/**
 * Rejects unknown keys of a user's ViT config (`UnknownOptionError` naming the nearest known key);
 * `extra` adds the keys of a config that extends it (the V-MoE's `moe`, `moeBlocks`).
 */
export function checkViTConfigKeys(config: unknown, extra: readonly string[] = [], context = 'vit config'): void {
  if (config != null && typeof config === 'object') checkOptions(config, [...VIT_CONFIG_KEYS, ...extra], context);
}
import {assertOneOf, assertPositiveInt, assertPositiveNumber} from './validate';
import {CLASSIFIERS, Classifier} from './layers/tokens';
import {MLP_ACTIVATIONS, MlpActivation} from './layers/mlp';

/** The activation of the classifier head: probabilities (`'softmax'`) or logits (`'linear'`). */
export type HeadActivation = 'softmax' | 'linear';
/** Accepted values of {@link HeadActivation}. */
export const HEAD_ACTIVATIONS: readonly HeadActivation[] = ['softmax', 'linear'];

/**
 * A Vision Transformer (Dosovitskiy et al. 2021): patch embedding, optional class token, learned
 * position embeddings, `depth` pre-LayerNorm encoder blocks
 * `x += MHSA(LN(x)); x += MLP(LN(x))`, a final LayerNorm, pooling and a dense classifier.
 */
export interface ViTConfig {
  /** Input image size in pixels: one number for square images, or `[height, width]`. */
  imageSize: number | [number, number];
  /** Input channels (1 for grey digits, 3 for RGB). */
  channels: number;
  /** Side of the square, non-overlapping patches; must divide the height and the width. */
  patchSize: number;
  /** Model width `d`: the size of every token. */
  hiddenSize: number;
  /** Number of encoder blocks. */
  depth: number;
  /** Attention heads per block; must divide `hiddenSize`. */
  numHeads: number;
  /** Hidden width `h` of each block's MLP (and of each expert in a V-MoE). */
  mlpDim: number;
  /** Number of output classes. */
  numClasses: number;
  /**
   * `'token'` prepends a learned class token and classifies from it; `'gap'` averages the
   * tokens (global average pooling). Default `'token'`.
   */
  classifier?: Classifier;
  /** MLP activation, one of `MLP_ACTIVATIONS` (shared with the experts). Default `'gelu'` (exact, erf-based). */
  activation?: MlpActivation;
  /**
   * Activation of the classifier head: `'linear'` (logits, the default: what `train()` of
   * `@tfjs-moe/training` and `tf.losses.softmaxCrossEntropy` take) or `'softmax'`
   * (probabilities, for tfjs's `categoricalCrossentropy` loss in `model.compile`).
   */
  headActivation?: HeadActivation;
  /** Epsilon of every LayerNormalization. Default 1e-6 (as in ViT). */
  layerNormEpsilon?: number;
  /**
   * Width of the pre-logits layer (ViT's `representation_size`): a dense `d -> R` layer with tanh,
   * named `pre_logits`, between the pooling and the head. Default `null` (no such layer).
   */
  representationSize?: number | null;
  /**
   * Seed for every weight initializer; each layer derives its own seed from it, so two models
   * built with the same seed start from the same weights. Unseeded when omitted.
   */
  seed?: number;
  /** Name of the tfjs model. Default `'vit'` (or `'vmoe'`). */
  name?: string;
}

/** Every key of a {@link ViTConfig} (and `preset`): anything else is an `UnknownOptionError`. */
export const VIT_CONFIG_KEYS: readonly string[] = [
  'preset', 'imageSize', 'channels', 'patchSize', 'hiddenSize', 'depth', 'numHeads', 'mlpDim', 'numClasses', 'classifier',
  'activation', 'headActivation', 'layerNormEpsilon', 'representationSize', 'seed', 'name',
];

/** The names of the built-in presets. */
export type ViTPresetName = 'mnist-tiny' | 'mnist-small' | 'cifar-tiny';

/**
 * Presets sized to train on 2 CPU cores in minutes:
 * - `'mnist-tiny'`: 28x28x1, patch 7 (16 tokens + class token), d 64, depth 4, 4 heads, MLP 128.
 * - `'mnist-small'`: 28x28x1, patch 4 (49 tokens + class token), d 64, depth 4, 4 heads, MLP 128.
 * - `'cifar-tiny'`: 32x32x3, patch 4 (64 tokens + class token), d 96, depth 6, 4 heads, MLP 192.
 */
export const VIT_PRESETS: Readonly<Record<ViTPresetName, Readonly<ViTConfig>>> = {
  'mnist-tiny': {imageSize: 28, channels: 1, patchSize: 7, hiddenSize: 64, depth: 4, numHeads: 4, mlpDim: 128, numClasses: 10},
  'mnist-small': {imageSize: 28, channels: 1, patchSize: 4, hiddenSize: 64, depth: 4, numHeads: 4, mlpDim: 128, numClasses: 10},
  'cifar-tiny': {imageSize: 32, channels: 3, patchSize: 4, hiddenSize: 96, depth: 6, numHeads: 4, mlpDim: 192, numClasses: 10},
};

const PRESET_NAMES = Object.keys(VIT_PRESETS) as ViTPresetName[];

/** A config with every optional field filled in and every field checked. */
export interface ResolvedViTConfig extends Required<Omit<ViTConfig, 'imageSize' | 'seed'>> {
  imageSize: [number, number];
  seed?: number;
}

/** A preset name, or a config, or a preset name with fields overridden. */
export type ViTConfigLike = ViTPresetName | ViTConfig | ({preset: ViTPresetName} & Partial<ViTConfig>);

/**
 * Resolves a preset or config into a complete, validated config.
 * Throws {@link ConfigError} naming the bad field (e.g. `Expected imageSize to be divisible by
 * patchSize 5, but got [28,28].`).
 *
 * @example
 * ```ts
 * resolveViTConfig({preset: 'mnist-tiny', depth: 2}).depth; // 2
 * ```
 */
export function resolveViTConfig(config: ViTConfigLike, defaultName = 'vit'): ResolvedViTConfig {
  const context = 'vit config';
  let c: ViTConfig;
  if (typeof config === 'string') {
    c = {...VIT_PRESETS[assertOneOf('preset', config, PRESET_NAMES, context)]};
  } else if (config != null && typeof config === 'object' && 'preset' in config && config.preset !== undefined) {
    const {preset, ...rest} = config as {preset: unknown} & Partial<ViTConfig>;
    const base = VIT_PRESETS[assertOneOf('preset', preset, PRESET_NAMES, context)];
    c = {...base, ...stripUndefined(rest)};
  } else if (config != null && typeof config === 'object') {
    c = config as ViTConfig;
  } else {
    throw new ConfigError('config', 'a preset name or a config object', config, context);
  }
  const size = c.imageSize;
  const imageSize: [number, number] = Array.isArray(size) ? [size[0], size[1]] : [size, size];
  if (!Array.isArray(size) && (typeof size !== 'number')) {
    throw new ConfigError('imageSize', 'a positive integer or [height, width]', size, context);
  }
  if (Array.isArray(size) && size.length !== 2) {
    throw new ConfigError('imageSize', 'a positive integer or [height, width]', size, context);
  }
  imageSize.forEach((s) => {
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 1) {
      throw new ConfigError('imageSize', 'a positive integer or [height, width] of positive integers', size, context);
    }
  });
  const channels = assertPositiveInt('channels', c.channels, context);
  const patchSize = assertPositiveInt('patchSize', c.patchSize, context);
  if (imageSize[0] % patchSize !== 0 || imageSize[1] % patchSize !== 0) {
    throw new ConfigError('imageSize', `divisible by patchSize ${patchSize}`, imageSize, context);
  }
  const hiddenSize = assertPositiveInt('hiddenSize', c.hiddenSize, context);
  const numHeads = assertPositiveInt('numHeads', c.numHeads, context);
  if (hiddenSize % numHeads !== 0) {
    throw new ConfigError('numHeads', `a divisor of hiddenSize ${hiddenSize}`, numHeads, context);
  }
  const seed = c.seed;
  if (seed !== undefined && (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0)) {
    throw new ConfigError('seed', 'a non-negative integer', seed, context);
  }
  const name = c.name ?? defaultName;
  if (typeof name !== 'string' || name.length === 0) {
    throw new ConfigError('name', 'a non-empty string', name, context);
  }
  return {
    imageSize,
    channels,
    patchSize,
    hiddenSize,
    depth: assertPositiveInt('depth', c.depth, context),
    numHeads,
    mlpDim: assertPositiveInt('mlpDim', c.mlpDim, context),
    numClasses: assertPositiveInt('numClasses', c.numClasses, context),
    classifier: assertOneOf('classifier', c.classifier ?? 'token', CLASSIFIERS, context),
    activation: assertOneOf('activation', c.activation ?? 'gelu', MLP_ACTIVATIONS, context),
    headActivation: assertOneOf('headActivation', c.headActivation ?? 'linear', HEAD_ACTIVATIONS, context),
    layerNormEpsilon: assertPositiveNumber('layerNormEpsilon', c.layerNormEpsilon ?? 1e-6, context),
    representationSize: c.representationSize == null ? null : assertPositiveInt('representationSize', c.representationSize, context),
    seed,
    name,
  };
}

/**
 * Number of patch tokens (without the class token) of a resolved config.
 *
 * @example
 * ```ts
 * numPatches(resolveViTConfig('mnist-small')); // 49
 * ```
 */
export function numPatches(config: ResolvedViTConfig): number {
  return (config.imageSize[0] / config.patchSize) * (config.imageSize[1] / config.patchSize);
}

/**
 * Sequence length inside the encoder: patches, plus 1 with a class token.
 *
 * @example
 * ```ts
 * sequenceLength(resolveViTConfig('mnist-tiny')); // 17
 * ```
 */
export function sequenceLength(config: ResolvedViTConfig): number {
  return numPatches(config) + (config.classifier === 'token' ? 1 : 0);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
