/**
 * Multi-head self-attention as a serializable tfjs layer (tfjs 4.22 has none).
 */
import * as tf from '@tensorflow/tfjs';
import {ConfigError, ShapeError} from '@tfjs-moe/router';
import {assertPositiveInt} from '../validate';
import {glorotUniform, Kwargs, LayerArgs, Shape, ShapePreservingLayer, singleShape, singleTensor, subSeed} from './common';

/** Arguments of {@link MultiHeadSelfAttention}. */
export interface MultiHeadSelfAttentionArgs extends LayerArgs {
  /** Number of attention heads; the model width `d` must be a multiple of it. */
  numHeads: number;
  /** Seed of the kernels' Glorot-uniform initializers (biases start at 0); unseeded when omitted. */
  seed?: number;
}

/**
 * Multi-head scaled dot-product self-attention over `<float32>[batch, tokens, d]` -> same shape,
 * without masking (every token attends to every token, as in ViT):
 * `q, k, v = x Wqkv + bqkv` split into `numHeads` heads of width `d / numHeads`,
 * `head = softmax(q k^T / sqrt(d / numHeads)) v`, `y = concat(heads) Wo + bo`.
 * Weights: `qkvKernel <float32>[d, 3d]` (columns: queries, keys, values; each head-major),
 * `qkvBias <float32>[3d]`, `outKernel <float32>[d, d]`, `outBias <float32>[d]`: `4 d^2 + 4 d`
 * parameters.
 *
 * @example
 * ```ts
 * const attn = multiHeadSelfAttention({numHeads: 4});
 * const y = attn.apply(tf.randomNormal([2, 16, 64])) as tf.Tensor; // [2, 16, 64]
 * ```
 */
export class MultiHeadSelfAttention extends ShapePreservingLayer {
  /** @nocollapse */
  static className = 'MultiHeadSelfAttention';
  readonly numHeads: number;
  readonly seed?: number;
  private qkvKernel!: tf.LayerVariable;
  private qkvBias!: tf.LayerVariable;
  private outKernel!: tf.LayerVariable;
  private outBias!: tf.LayerVariable;

  constructor(args: MultiHeadSelfAttentionArgs) {
    super(args);
    this.numHeads = assertPositiveInt('numHeads', args.numHeads, 'MultiHeadSelfAttention');
    this.seed = args.seed;
  }

  protected width(shape: Shape): number {
    if (shape.length !== 3 || shape[2] == null) {
      throw new ShapeError('input shape', 'rank 3 [batch, tokens, d] with known d', shape, this.name);
    }
    const d = shape[2];
    if (d % this.numHeads !== 0) {
      throw new ConfigError('numHeads', `a divisor of the model width ${d}`, this.numHeads, this.name);
    }
    return d;
  }

  override build(inputShape: Shape | Shape[]): void {
    const d = this.width(singleShape(inputShape, this.name));
    this.qkvKernel = this.addWeight('qkvKernel', [d, 3 * d], 'float32', glorotUniform(subSeed(this.seed, 0)));
    this.qkvBias = this.addWeight('qkvBias', [3 * d], 'float32', tf.initializers.zeros());
    this.outKernel = this.addWeight('outKernel', [d, d], 'float32', glorotUniform(subSeed(this.seed, 1)));
    this.outBias = this.addWeight('outBias', [d], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = singleTensor(inputs);
      const d = this.width(x.shape);
      const [b, t] = x.shape;
      const h = this.numHeads;
      const dh = d / h;
      const flat = tf.reshape(x, [b * t, d]);
      const kernel = this.qkvKernel.read();
      const bias = this.qkvBias.read();
      // q, k and v from column blocks of the fused [d, 3d] kernel: three 2-D matMuls. (Unstacking a
      // rank-5 [b, t, 3, h, dh] tensor instead made its gradient dominate the step on wasm.)
      const project = (part: number): tf.Tensor => {
        const y = tf.add(tf.matMul(flat, tf.slice(kernel, [0, part * d], [d, d])), tf.slice(bias, [part * d], [d]));
        return tf.transpose(tf.reshape(y, [b, t, h, dh]), [0, 2, 1, 3]); // [b, h, t, dh]
      };
      const q = project(0);
      const k = project(1);
      const v = project(2);
      const scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(dh)); // [b, h, t, t]
      const attended = tf.matMul(tf.softmax(scores), v); // [b, h, t, dh]
      const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [b * t, d]);
      const y = tf.add(tf.matMul(merged, this.outKernel.read()), this.outBias.read());
      return tf.reshape(y, [b, t, d]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {numHeads: this.numHeads};
    if (this.seed !== undefined) config.seed = this.seed;
    return {...super.getConfig(), ...config};
  }
}
tf.serialization.registerClass(MultiHeadSelfAttention);

/**
 * Creates a {@link MultiHeadSelfAttention} layer.
 *
 * @example
 * ```ts
 * const y = multiHeadSelfAttention({numHeads: 2, seed: 0}).apply(tf.input({shape: [16, 32]})); // [null, 16, 32]
 * ```
 */
export function multiHeadSelfAttention(args: MultiHeadSelfAttentionArgs): MultiHeadSelfAttention {
  return new MultiHeadSelfAttention(args);
}
