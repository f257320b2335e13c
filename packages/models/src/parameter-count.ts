/**
 * Closed-form parameter counts of the models built here, checked in the tests against
 * `model.countParams()`.
 */
import {resolveViTConfig, sequenceLength, ViTConfigLike} from './config';

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
 * - final LayerNorm `2d`; head `d K + K` for `K` classes.
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
  const head = d * c.numClasses + c.numClasses;
  return patch + cls + pos + c.depth * block + layerNormParameterCount(d) + head;
}
