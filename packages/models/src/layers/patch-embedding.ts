/**
 * Patch embedding: cut an image into non-overlapping `patch x patch` squares and project each
 * flattened square linearly to the model width. This equals a convolution whose kernel size and
 * stride are both `patchSize` (as in ViT), written as reshape + transpose + matMul so that it has
 * gradients on every tfjs backend.
 */
import * as tf from '@tensorflow/tfjs';
import {ShapeError} from '@tfjs-moe/router';
import {assertPositiveInt} from '../validate';
import {glorotUniform, Kwargs, LayerArgs, Shape, singleShape, singleTensor, subSeed} from './common';

/** Arguments of {@link PatchEmbedding}. */
export interface PatchEmbeddingArgs extends LayerArgs {
  /** Side of the square patches in pixels; the image height and width must be multiples of it. */
  patchSize: number;
  /** Width `d` of each token after the projection. */
  hiddenSize: number;
  /** Seed of the kernel's Glorot-uniform initializer (bias starts at 0); unseeded when omitted. */
  seed?: number;
}

/**
 * Layer `<float32>[batch, height, width, channels]` -> `<float32>[batch, tokens, hiddenSize]`
 * with `tokens = (height / patchSize) * (width / patchSize)`, patches in row-major order.
 * Weights: `kernel <float32>[patchSize * patchSize * channels, hiddenSize]`, `bias <float32>[hiddenSize]`.
 * A patch is flattened in (row, column, channel) order, the order of a conv kernel
 * `[patch, patch, channels, d]` reshaped to 2-D.
 *
 * @example
 * ```ts
 * const layer = patchEmbedding({patchSize: 7, hiddenSize: 64});
 * const tokens = layer.apply(tf.zeros([2, 28, 28, 1])) as tf.Tensor; // [2, 16, 64]
 * ```
 */
export class PatchEmbedding extends tf.layers.Layer {
  /** @nocollapse */
  static className = 'PatchEmbedding';
  readonly patchSize: number;
  readonly hiddenSize: number;
  readonly seed?: number;
  private kernel!: tf.LayerVariable;
  private bias!: tf.LayerVariable;

  constructor(args: PatchEmbeddingArgs) {
    super(args);
    this.patchSize = assertPositiveInt('patchSize', args.patchSize, 'PatchEmbedding');
    this.hiddenSize = assertPositiveInt('hiddenSize', args.hiddenSize, 'PatchEmbedding');
    this.seed = args.seed;
  }

  private checkShape(shape: Shape): [number, number, number] {
    const p = this.patchSize;
    if (shape.length !== 4) {
      throw new ShapeError('input shape', 'rank 4 [batch, height, width, channels]', shape, this.name);
    }
    const [, h, w, c] = shape;
    if (h == null || w == null || c == null) {
      throw new ShapeError('input shape', 'known height, width and channels', shape, this.name);
    }
    if (h % p !== 0 || w % p !== 0) {
      throw new ShapeError('input shape', `height and width divisible by patchSize ${p}`, shape, this.name);
    }
    return [h, w, c];
  }

  override build(inputShape: Shape | Shape[]): void {
    const [, , c] = this.checkShape(singleShape(inputShape, this.name));
    const fanIn = this.patchSize * this.patchSize * c;
    this.kernel = this.addWeight('kernel', [fanIn, this.hiddenSize], 'float32', glorotUniform(subSeed(this.seed, 0)));
    this.bias = this.addWeight('bias', [this.hiddenSize], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shape = singleShape(inputShape, this.name);
    const [h, w] = this.checkShape(shape);
    return [shape[0], (h / this.patchSize) * (w / this.patchSize), this.hiddenSize];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = singleTensor(inputs);
      const [h, w, c] = this.checkShape(x.shape);
      const b = x.shape[0];
      const p = this.patchSize;
      const gh = h / p;
      const gw = w / p;
      // [b, gh, p, gw, p, c] -> [b, gh, gw, p, p, c] -> [b * tokens, p * p * c]
      const patches = tf.reshape(
        tf.transpose(tf.reshape(x, [b, gh, p, gw, p, c]), [0, 1, 3, 2, 4, 5]),
        [b * gh * gw, p * p * c],
      );
      const y = tf.add(tf.matMul(patches, this.kernel.read()), this.bias.read());
      return tf.reshape(y, [b, gh * gw, this.hiddenSize]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {patchSize: this.patchSize, hiddenSize: this.hiddenSize};
    if (this.seed !== undefined) config.seed = this.seed;
    return {...super.getConfig(), ...config};
  }
}
tf.serialization.registerClass(PatchEmbedding);

/**
 * Creates a {@link PatchEmbedding} layer.
 *
 * @example
 * ```ts
 * const tokens = patchEmbedding({patchSize: 4, hiddenSize: 32}).apply(tf.input({shape: [28, 28, 1]}));
 * // SymbolicTensor [null, 49, 32]
 * ```
 */
export function patchEmbedding(args: PatchEmbeddingArgs): PatchEmbedding {
  return new PatchEmbedding(args);
}
