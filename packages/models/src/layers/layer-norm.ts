/**
 * Layer normalization over the last axis, built from broadcasting ops with a closed-form gradient.
 *
 * tfjs-layers' `LayerNormalization` tiles the mean, variance, gamma and beta up to the input's
 * shape; tfjs-core's `Tile` gradient is a loop of one `Slice` and one `Add` per repetition, which
 * made it 70-75% of a V-MoE training step on wasm (about 42,000 of 46,000 kernels). This layer
 * computes the same function with broadcasting ops (a handful of kernels per call, forward and
 * backward, independent of the batch size) and keeps the same weights (`gamma`, `beta`).
 */
import * as tf from '@tensorflow/tfjs';
import {assertPositiveNumber, ShapeError} from '@tfjs-moe/router';
import {Kwargs, LayerArgs, Shape, ShapePreservingLayer, singleShape, singleTensor} from './common';

/** Arguments of {@link LayerNorm}. */
export interface LayerNormArgs extends LayerArgs {
  /** Added to the variance before the square root. Default 1e-3 (as tfjs-layers); ViT uses 1e-6. */
  epsilon?: number;
}

function normalize(x: tf.Tensor, epsilon: number): {xHat: tf.Tensor; rstd: tf.Tensor} {
  const last = x.rank - 1;
  const centered = tf.sub(x, tf.mean(x, last, true));
  const variance = tf.mean(tf.square(centered), last, true);
  const rstd = tf.rsqrt(tf.add(variance, epsilon));
  return {xHat: tf.mul(centered, rstd), rstd};
}

/**
 * `y = gamma * (x - mean) / sqrt(var + epsilon) + beta` over the last axis (Ba, Kiros and Hinton
 * 2016, "Layer Normalization", eq. 4), as a tfjs op with its gradient in closed form:
 * with `g = dy * gamma` and `xHat` the normalized input,
 * `dx = rstd * (g - mean(g) - xHat * mean(g * xHat))`, `dgamma = sum(dy * xHat)`, `dbeta = sum(dy)`
 * (sums over every axis but the last).
 *
 * @param x `<float32>[..., d]`, any rank >= 1.
 * @param gamma `<float32>[d]` scale.
 * @param beta `<float32>[d]` offset.
 * @param epsilon added to the variance.
 * @returns `<float32>[..., d]`, the shape of `x`.
 *
 * @example
 * ```ts
 * const y = layerNorm1D(tf.tensor2d([[1, 2, 3]]), tf.ones([3]), tf.zeros([3]), 1e-6); // ~[[-1.22, 0, 1.22]]
 * ```
 */
export function layerNorm1D(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): tf.Tensor {
  const op = tf.customGrad((xIn, gIn, bIn, save) => {
    const {xHat, rstd} = normalize(xIn as tf.Tensor, epsilon);
    (save as (ts: tf.Tensor[]) => void)([xHat, rstd, gIn as tf.Tensor]);
    return {
      value: tf.add(tf.mul(xHat, gIn as tf.Tensor), bIn as tf.Tensor),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xh, r, g] = saved;
        const last = xh.rank - 1;
        const d = xh.shape[last];
        const rows = xh.size / d;
        const dy2 = tf.reshape(dy, [rows, d]);
        const xh2 = tf.reshape(xh, [rows, d]);
        const gdy = tf.mul(dy, g);
        const meanG = tf.mean(gdy, last, true);
        const meanGX = tf.mean(tf.mul(gdy, xh), last, true);
        const dx = tf.mul(r, tf.sub(tf.sub(gdy, meanG), tf.mul(xh, meanGX)));
        return [dx, tf.sum(tf.mul(dy2, xh2), 0), tf.sum(dy2, 0)];
      },
    };
  });
  return op(x, gamma, beta);
}

/**
 * Layer normalization over the last axis with learned `gamma <float32>[d]` (init 1) and
 * `beta <float32>[d]` (init 0): `<float32>[..., d]` -> same shape. Computes what tfjs-layers'
 * `LayerNormalization({axis: -1})` computes, with the same weight names, in a few kernels per call
 * on every backend (see {@link layerNorm1D}). Models saved before this layer existed name
 * `LayerNormalization` and still load with tfjs-layers' class.
 *
 * @throws ShapeError when the last axis of the input is unknown.
 * @throws InvalidArgumentError when `epsilon` is not a positive number.
 *
 * @example
 * ```ts
 * const y = layerNorm({epsilon: 1e-6}).apply(tf.randomNormal([2, 17, 64])) as tf.Tensor; // [2, 17, 64]
 * ```
 */
export class LayerNorm extends ShapePreservingLayer {
  /** @nocollapse */
  static className = 'LayerNorm';
  readonly epsilon: number;
  private gamma!: tf.LayerVariable;
  private beta!: tf.LayerVariable;

  constructor(args: LayerNormArgs = {}) {
    super(args);
    this.epsilon = assertPositiveNumber('epsilon', args.epsilon ?? 1e-3, 'LayerNorm');
    this.supportsMasking = true;
  }

  protected width(shape: Shape): number {
    const d = shape[shape.length - 1];
    if (shape.length < 1 || d == null) {
      throw new ShapeError('input shape', '[..., d] with a known last axis d', shape, this.name);
    }
    return d;
  }

  override build(inputShape: Shape | Shape[]): void {
    const d = this.width(singleShape(inputShape, this.name));
    this.gamma = this.addWeight('gamma', [d], 'float32', tf.initializers.ones());
    this.beta = this.addWeight('beta', [d], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = singleTensor(inputs);
      this.width(x.shape);
      return layerNorm1D(x, this.gamma.read() as tf.Tensor1D, this.beta.read() as tf.Tensor1D, this.epsilon);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), epsilon: this.epsilon};
  }
}
tf.serialization.registerClass(LayerNorm);

/**
 * Creates a {@link LayerNorm} layer.
 *
 * @example
 * ```ts
 * const normed = layerNorm({epsilon: 1e-6, name: 'norm'}).apply(tf.input({shape: [17, 64]})); // [null, 17, 64]
 * ```
 */
export function layerNorm(args: LayerNormArgs = {}): LayerNorm {
  return new LayerNorm(args);
}
