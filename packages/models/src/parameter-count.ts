/**
 * Closed-form parameter counts of the models built here, checked in the tests against
 * `model.countParams()`.
 */
import {resolveViTConfig, sequenceLength, ViTConfigLike} from './config';
import {MoEBlockSelection, selectMoEBlocks} from './moe-options';
import type {MoeifyOptions} from './moeify';
import {resolveVMoEConfig, VMoEConfigLike} from './vmoe';

/** Parameters of one `MultiHeadSelfAttention` of width `d`: `Wqkv [d, 3d] + b [3d] + Wo [d, d] + b [d] = 4d^2 + 4d`. */
export function attentionParameterCount(d: number): number {
  return 4 * d * d + 4 * d;
}

/** Parameters of one `MlpBlock` `d -> h -> d`: `W1 [d, h] + b1 [h] + W2 [h, d] + b2 [d] = 2dh + h + d`. */
export function mlpParameterCount(d: number, h: number): number {
  return 2 * d * h + h + d;
}

/** Parameters of one LayerNormalization of width `d` (gamma and beta): `2d`. */
export function layerNormParameterCount(d: number): number {
  return 2 * d;
}

/**
 * The parameter count of `vit(config)`, term by term:
 * - patch embedding `p^2 c d + d`;
 * - class token `d` (classifier `'token'` only);
 * - position embeddings `T d`, with `T` = patches (+1 with a class token);
 * - per block: two LayerNorms `4d`, attention `4d^2 + 4d`, MLP `2dh + h + d`;
 * - final LayerNorm `2d`; pre-logits `d R + R` with `representationSize` R; head `(R or d) K + K`
 *   for `K` classes.
 *
 * @example
 * ```ts
 * vitParameterCount('mnist-tiny') === vit('mnist-tiny').countParams(); // true
 * ```
 */
export function vitParameterCount(config: ViTConfigLike): number {
  const c = resolveViTConfig(config);
  const d = c.hiddenSize;
  const patch = c.patchSize * c.patchSize * c.channels * d + d;
  const cls = c.classifier === 'token' ? d : 0;
  const pos = sequenceLength(c) * d;
  const block = 2 * layerNormParameterCount(d) + attentionParameterCount(d) + mlpParameterCount(d, c.mlpDim);
  const R = c.representationSize;
  const preLogits = R == null ? 0 : d * R + R;
  const head = (R ?? d) * c.numClasses + c.numClasses;
  return patch + cls + pos + c.depth * block + layerNormParameterCount(d) + preLogits + head;
}

/**
 * Parameters of one MoE layer of `@tfjs-moe/router` with `E` experts `d -> h -> d`: expert kernels
 * `2 E d h`, expert biases `E (h + d)` (when `useBias`, the default), and the bias-free router
 * kernel `d E`.
 *
 * @example
 * ```ts
 * moeParameterCount(64, 128, 4); // 4 * (2*64*128 + 128 + 64) + 64 * 4 = 66560
 * ```
 */
export function moeParameterCount(d: number, h: number, numExperts: number, useBias = true): number {
  return numExperts * (2 * d * h + (useBias ? h + d : 0)) + d * numExperts;
}

/**
 * The parameter count of `vmoe(config)`: {@link vitParameterCount} of the same ViT, with each MoE
 * block's MLP `2dh + h + d` replaced by {@link moeParameterCount}.
 *
 * @example
 * ```ts
 * vmoeParameterCount({preset: 'mnist-tiny', moe: {numExperts: 4}}); // 139018 + 2 * (66560 - 16576) = 238986
 * ```
 */
export function vmoeParameterCount(config: VMoEConfigLike): number {
  const c = resolveVMoEConfig(config);
  const d = c.hiddenSize;
  const h = c.moe.hiddenDim ?? c.mlpDim;
  const useBias = (c.moe.useBias as boolean | undefined) ?? true;
  const perBlock = moeParameterCount(d, h, c.moe.numExperts, useBias) - mlpParameterCount(d, c.mlpDim);
  const {moe: _moe, moeBlocks, ...vitPart} = c;
  return vitParameterCount(vitPart) + moeBlocks.length * perBlock;
}

/**
 * The parameter count of `moeify(model, options)` when `model` was built by `vit(config)`.
 *
 * @example
 * ```ts
 * moeifyParameterCount('mnist-tiny', {numExperts: 4, blocks: 'all'}); // 139018 + 4 * (66560 - 16576)
 * ```
 */
export function moeifyParameterCount(config: ViTConfigLike, options: MoeifyOptions): number {
  const c = resolveViTConfig(config);
  const blocks = options.blocks;
  const count = Array.isArray(blocks) && blocks.every((b) => typeof b === 'string')
    ? blocks.length
    : selectMoEBlocks((blocks ?? 'every-other') as MoEBlockSelection, c.depth, 'blocks').length;
  const h = options.hiddenDim ?? c.mlpDim;
  const useBias = (options.useBias as boolean | undefined) ?? true;
  return vitParameterCount(c) + count * (moeParameterCount(c.hiddenSize, h, options.numExperts, useBias) - mlpParameterCount(c.hiddenSize, c.mlpDim));
}
