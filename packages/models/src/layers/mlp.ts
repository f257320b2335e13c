/**
 * The position-wise MLP of a transformer block, as one layer so that `moeify` can find it and
 * swap it for a mixture of experts whose experts copy its weights.
 */
import * as tf from '@tensorflow/tfjs';
import {activationFunction, assertActivation, FEED_FORWARD_ACTIVATIONS, FeedForwardActivation, ShapeError} from '@tfjs-moe/router';
import {assertPositiveInt} from '../validate';
import {glorotUniform, Kwargs, LayerArgs, Shape, ShapePreservingLayer, singleShape, singleTensor, subSeed} from './common';

/**
 * The activations that the MLP (and the models built here) accept: the one list shared with the
 * experts of the MoE layer (`FeedForwardActivation` of `@tfjs-moe/router`), so every MLP can be
 * upcycled into experts.
 */
export type MlpActivation = FeedForwardActivation;
/** Accepted values of {@link MlpActivation}. */
export const MLP_ACTIVATIONS: readonly MlpActivation[] = FEED_FORWARD_ACTIVATIONS;

/** Arguments of {@link MlpBlock}. */
export interface MlpBlockArgs extends LayerArgs {
  /** Width `h` of the hidden layer. */
  hiddenDim: number;
  /** Activation after the first projection, a tfjs activation name. Default `'gelu'` (exact, erf). */
  activation?: MlpActivation;
  /** Seed of the kernels' Glorot-uniform initializers (biases start at 0); unseeded when omitted. */
  seed?: number;
}

/**
 * `y = act(x W1 + b1) W2 + b2` applied to every token: `<float32>[batch, tokens, d]` -> same shape.
 * Weights, in this order: `kernel1 <float32>[d, h]`, `bias1 <float32>[h]`, `kernel2 <float32>[h, d]`,
 * `bias2 <float32>[d]`: `2 d h + h + d` parameters.
 *
 * @example
 * ```ts
 * const mlp = mlpBlock({hiddenDim: 128});
 * const y = mlp.apply(tf.randomNormal([2, 16, 64])) as tf.Tensor; // [2, 16, 64]
 * ```
 */
export class MlpBlock extends ShapePreservingLayer {
  /** @nocollapse */
  static className = 'MlpBlock';
  readonly hiddenDim: number;
  readonly activation: MlpActivation;
  readonly seed?: number;
  private readonly act: (x: tf.Tensor) => tf.Tensor;
  private kernel1!: tf.LayerVariable;
  private bias1!: tf.LayerVariable;
  private kernel2!: tf.LayerVariable;
  private bias2!: tf.LayerVariable;

  constructor(args: MlpBlockArgs) {
    super(args);
    this.hiddenDim = assertPositiveInt('hiddenDim', args.hiddenDim, 'MlpBlock');
    this.activation = assertActivation('activation', args.activation ?? 'gelu', 'MlpBlock');
    this.seed = args.seed;
    this.act = activationFunction(this.activation);
  }

  protected width(shape: Shape): number {
    const d = shape[shape.length - 1];
    if (shape.length < 2 || d == null) {
      throw new ShapeError('input shape', 'rank >= 2 with a known last dimension', shape, this.name);
    }
    return d;
  }

  override build(inputShape: Shape | Shape[]): void {
    const d = this.width(singleShape(inputShape, this.name));
    const h = this.hiddenDim;
    this.kernel1 = this.addWeight('kernel1', [d, h], 'float32', glorotUniform(subSeed(this.seed, 0)));
    this.bias1 = this.addWeight('bias1', [h], 'float32', tf.initializers.zeros());
    this.kernel2 = this.addWeight('kernel2', [h, d], 'float32', glorotUniform(subSeed(this.seed, 1)));
    this.bias2 = this.addWeight('bias2', [d], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = singleTensor(inputs);
      const d = this.width(x.shape);
      const flat = tf.reshape(x, [-1, d]);
      const hidden = this.act(tf.add(tf.matMul(flat, this.kernel1.read()), this.bias1.read()));
      const y = tf.add(tf.matMul(hidden, this.kernel2.read()), this.bias2.read());
      return tf.reshape(y, x.shape);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {hiddenDim: this.hiddenDim, activation: this.activation};
    if (this.seed !== undefined) config.seed = this.seed;
    return {...super.getConfig(), ...config};
  }
}
tf.serialization.registerClass(MlpBlock);

/**
 * Creates an {@link MlpBlock} layer.
 *
 * @example
 * ```ts
 * const y = mlpBlock({hiddenDim: 256, activation: 'relu'}).apply(tf.input({shape: [16, 64]})); // [null, 16, 64]
 * ```
 */
export function mlpBlock(args: MlpBlockArgs): MlpBlock {
  return new MlpBlock(args);
}
