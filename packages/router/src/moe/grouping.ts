/**
 * Grouping: how `[batch, tokens, d]` inputs become routing groups `[groups, groupSize, d]`.
 *
 * - `'per-example'`: each example is split into `ceil(tokens / groupSize)` groups; a group never
 *   mixes examples, so a prediction does not depend on the rest of the batch (the default).
 * - `'flat'`: all `batch * tokens` tokens are concatenated in batch order and cut into groups of
 *   `groupSize`; a group may span examples (larger groups balance better, as in V-MoE training).
 *
 * Padding policy: when the tokens do not fill the last group, it is completed with zero tokens
 * that are masked out (mask 0). Masked tokens take no part in routing, marginals, losses or
 * metrics and receive no expert output; they are cut off again by {@link ungroupTokens}.
 * The group size is clamped to the tokens available (`tokens` per example, or `batch * tokens`).
 */
import * as tf from '@tensorflow/tfjs';
import {ShapeError} from '../core/errors';

/** How tokens are grouped for routing. */
export type GroupingMode = 'per-example' | 'flat';

/** Output of {@link groupTokens}. */
export interface TokenGroups {
  /** `<float32>[groups, groupSize, d]`. */
  tokens: tf.Tensor3D;
  /** `<float32>[groups, groupSize]`, 1 = real token; undefined when every slot is a real token. */
  mask?: tf.Tensor2D;
  /** The effective group size S (after clamping). */
  groupSize: number;
}

/** Effective group size: `groupSize` (default `tokens`) clamped to the tokens one group can see. */
export function effectiveGroupSize(batch: number, tokens: number, mode: GroupingMode, groupSize?: number): number {
  const available = mode === 'per-example' ? tokens : batch * tokens;
  return Math.max(1, Math.min(groupSize ?? tokens, available));
}

/**
 * Splits `[batch, tokens, d]` into routing groups, padding (and masking) the last group.
 *
 * @param x `<float32>[batch, tokens, d]`
 * @param mode `'per-example'` or `'flat'`
 * @param groupSize tokens per group (default: `tokens`)
 * @param mask `<float32>[batch, tokens]` token mask, 1 = real (optional)
 *
 * @example
 * ```ts
 * const g = groupTokens(tf.zeros([2, 5, 4]) as tf.Tensor3D, 'per-example', 3);
 * g.tokens.shape; // [4, 3, 4]: each example is 2 groups of 3 (the second has 1 padded token)
 * ```
 */
export function groupTokens(x: tf.Tensor3D, mode: GroupingMode, groupSize?: number, mask?: tf.Tensor2D): TokenGroups {
  const [batch, tokens, d] = x.shape;
  if (mask != null && (mask.rank !== 2 || mask.shape[0] !== batch || mask.shape[1] !== tokens)) {
    throw new ShapeError('mask', `a tensor of shape [${batch}, ${tokens}]`, mask.shape, 'groupTokens');
  }
  const S = effectiveGroupSize(batch, tokens, mode, groupSize);
  return tf.tidy(() => {
    const m = mask == null ? undefined : tf.cast(mask, 'float32');
    if (mode === 'per-example') {
      const n = Math.ceil(tokens / S);
      const pad = n * S - tokens;
      const xp = pad > 0 ? tf.pad(x, [[0, 0], [0, pad], [0, 0]]) : x;
      let mp: tf.Tensor | undefined = m;
      if (pad > 0) mp = tf.pad(m ?? tf.ones([batch, tokens]), [[0, 0], [0, pad]]);
      return {
        tokens: tf.reshape(xp, [batch * n, S, d]) as tf.Tensor3D,
        mask: mp == null ? undefined : (tf.reshape(mp, [batch * n, S]) as tf.Tensor2D),
        groupSize: S,
      };
    }
    const total = batch * tokens;
    const G = Math.ceil(total / S);
    const pad = G * S - total;
    let flat: tf.Tensor = tf.reshape(x, [total, d]);
    if (pad > 0) flat = tf.pad(flat, [[0, pad], [0, 0]]);
    let mp: tf.Tensor | undefined = m == null ? undefined : tf.reshape(m, [total]);
    if (pad > 0) mp = tf.pad(mp ?? tf.ones([total]), [[0, pad]]);
    return {
      tokens: tf.reshape(flat, [G, S, d]) as tf.Tensor3D,
      mask: mp == null ? undefined : (tf.reshape(mp, [G, S]) as tf.Tensor2D),
      groupSize: S,
    };
  });
}

/**
 * Inverse of {@link groupTokens}: `[groups, groupSize, d]` back to `[batch, tokens, d]`, dropping
 * the padding.
 *
 * @example
 * ```ts
 * const y = ungroupTokens(g.tokens, 2, 5, 'per-example'); // [2, 5, 4]
 * ```
 */
export function ungroupTokens(y: tf.Tensor3D, batch: number, tokens: number, mode: GroupingMode): tf.Tensor3D {
  return tf.tidy(() => {
    const [groups, S, d] = y.shape;
    if (mode === 'per-example') {
      const n = groups / batch;
      const r = tf.reshape(y, [batch, n * S, d]);
      return (n * S === tokens ? r : tf.slice(r, [0, 0, 0], [batch, tokens, d])) as tf.Tensor3D;
    }
    const flat = tf.reshape(y, [groups * S, d]);
    const cut = groups * S === batch * tokens ? flat : tf.slice(flat, [0, 0], [batch * tokens, d]);
    return tf.reshape(cut, [batch, tokens, d]) as tf.Tensor3D;
  });
}
