/**
 * `vit(config)`: a dense Vision Transformer as a functional tfjs model whose custom layers are all
 * registered, so `model.save` + `tf.loadLayersModel` round-trip it.
 */
import * as tf from '@tensorflow/tfjs';
import {checkViTConfigKeys, ResolvedViTConfig, resolveViTConfig, ViTConfigLike} from './config';
import {patchEmbedding} from './layers/patch-embedding';
import {classToken, positionEmbedding, tokenPooling} from './layers/tokens';
import {multiHeadSelfAttention} from './layers/attention';
import {mlpBlock} from './layers/mlp';
import {layerNorm} from './layers/layer-norm';
import {guardImageInput} from './input-check';

/**
 * Layer names inside a ViT / V-MoE built here, for the `i`-th (0-based) encoder block.
 *
 * @example
 * ```ts
 * model.getLayer(blockLayerNames(1).moe); // the MoE layer of block 1 of a vmoe
 * ```
 */
export const blockLayerNames = (i: number) => ({
  /** LayerNorm before attention. */
  norm1: `block${i}_norm1`,
  /** MultiHeadSelfAttention. */
  attention: `block${i}_attention`,
  /** Residual add after attention. */
  add1: `block${i}_add1`,
  /** LayerNorm before the MLP / MoE. */
  norm2: `block${i}_norm2`,
  /** The dense MLP (MlpBlock). */
  mlp: `block${i}_mlp`,
  /** The mixture of experts that replaces the MLP in MoE blocks. */
  moe: `block${i}_moe`,
  /** Residual add after the MLP / MoE. */
  add2: `block${i}_add2`,
});

/** Name of the class-token layer in a model built here (absent with `classifier: 'gap'`). */
export const CLASS_TOKEN_LAYER = 'class_token';

/**
 * Tokens before the patch tokens in the encoder sequence of a model built by `vit` / `vmoe` /
 * `moeify` (1 with a class token, 0 with global average pooling).
 *
 * @example
 * ```ts
 * prefixTokens(vit('mnist-tiny')); // 1
 * prefixTokens(vit({preset: 'mnist-tiny', classifier: 'gap'})); // 0
 * ```
 */
export function prefixTokens(model: tf.LayersModel): number {
  return model.layers.some((l) => l.name === CLASS_TOKEN_LAYER) ? 1 : 0;
}

/**
 * Derives the seed of one layer from the model seed (undefined stays undefined).
 *
 * @example
 * ```ts
 * layerSeed({seed: 1}, 5); // 1014
 * ```
 */
export function layerSeed(config: {seed?: number}, index: number): number | undefined {
  return config.seed === undefined ? undefined : config.seed * 1009 + index;
}

/**
 * Builds the encoder model, calling `mlpSlot(i)` for the layer in each block's MLP position.
 * @internal shared by {@link vit} and `vmoe`.
 */
export function buildViT(c: ResolvedViTConfig, mlpSlot: (block: number) => tf.layers.Layer): tf.LayersModel {
  const [height, width] = c.imageSize;
  const input = tf.input({shape: [height, width, c.channels], name: 'image'});
  let x = patchEmbedding({
    patchSize: c.patchSize, hiddenSize: c.hiddenSize, seed: layerSeed(c, 0), name: 'patch_embedding',
  }).apply(input) as tf.SymbolicTensor;
  if (c.classifier === 'token') x = classToken({name: CLASS_TOKEN_LAYER}).apply(x) as tf.SymbolicTensor;
  x = positionEmbedding({seed: layerSeed(c, 1), name: 'position_embedding'}).apply(x) as tf.SymbolicTensor;
  for (let i = 0; i < c.depth; i++) {
    const names = blockLayerNames(i);
    const a = layerNorm({epsilon: c.layerNormEpsilon, name: names.norm1}).apply(x) as tf.SymbolicTensor;
    const attn = multiHeadSelfAttention({
      numHeads: c.numHeads, seed: layerSeed(c, 100 + 2 * i), name: names.attention,
    }).apply(a) as tf.SymbolicTensor;
    x = tf.layers.add({name: names.add1}).apply([x, attn]) as tf.SymbolicTensor;
    const m = layerNorm({epsilon: c.layerNormEpsilon, name: names.norm2}).apply(x) as tf.SymbolicTensor;
    const mlp = mlpSlot(i).apply(m) as tf.SymbolicTensor;
    x = tf.layers.add({name: names.add2}).apply([x, mlp]) as tf.SymbolicTensor;
  }
  x = layerNorm({epsilon: c.layerNormEpsilon, name: 'encoder_norm'}).apply(x) as tf.SymbolicTensor;
  x = tokenPooling({mode: c.classifier, name: 'pooling'}).apply(x) as tf.SymbolicTensor;
  if (c.representationSize != null) {
    const preInit = c.seed === undefined ? {} : {seed: layerSeed(c, 3)};
    x = tf.layers.dense({
      units: c.representationSize,
      activation: 'tanh',
      kernelInitializer: tf.initializers.glorotUniform(preInit),
      name: 'pre_logits',
    }).apply(x) as tf.SymbolicTensor;
  }
  const headInit = c.seed === undefined ? {} : {seed: layerSeed(c, 2)};
  const output = tf.layers.dense({
    units: c.numClasses,
    activation: c.headActivation,
    kernelInitializer: tf.initializers.glorotUniform(headInit),
    name: 'head',
  }).apply(x) as tf.SymbolicTensor;
  return guardImageInput(tf.model({inputs: input, outputs: output, name: c.name}), 'model');
}

/**
 * Builds a dense ViT classifier `<float32>[batch, height, width, channels]` ->
 * `<float32>[batch, numClasses]`: logits by default (what `train()` takes), probabilities with
 * `headActivation: 'softmax'`.
 * Pass a preset name (`'mnist-tiny'`, `'mnist-small'`, `'cifar-tiny'`), a full config, or
 * `{preset, ...overrides}`. Layer names follow {@link blockLayerNames}; the MLPs are
 * `MlpBlock` layers named `block<i>_mlp`, which `moeify` can replace by MoE layers.
 * The model's `predict`, `predictOnBatch`, `evaluate`, `fit`, and `apply` / `execute` on a
 * tensor throw a `ShapeError` naming `images` and the expected `[batch, height, width, channels]`
 * for images of another shape (as do `vmoe` and `moeify` models).
 *
 * @example
 * ```ts
 * const model = vit('mnist-tiny');
 * const logits = model.predict(tf.zeros([8, 28, 28, 1])) as tf.Tensor; // [8, 10]
 * const probs = vit({preset: 'mnist-tiny', headActivation: 'softmax'}); // for categoricalCrossentropy
 * const custom = vit({preset: 'mnist-tiny', depth: 2, classifier: 'gap', seed: 42});
 * ```
 */
export function vit(config: ViTConfigLike): tf.LayersModel {
  checkViTConfigKeys(config);
  const c = resolveViTConfig(config, 'vit');
  return buildViT(c, (i) =>
    mlpBlock({
      hiddenDim: c.mlpDim, activation: c.activation, seed: layerSeed(c, 101 + 2 * i), name: blockLayerNames(i).mlp,
    }));
}
