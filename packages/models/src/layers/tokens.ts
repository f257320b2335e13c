/**
 * Token-level layers of a ViT: a learned class token prepended to the sequence, learned position
 * embeddings added to it, and the pooling that turns the sequence into one vector per image.
 */
import * as tf from '@tensorflow/tfjs';
import {ShapeError} from '@tfjs-moe/router';
import {assertOneOf} from '../validate';
import {Kwargs, LayerArgs, normal, Shape, singleShape, singleTensor} from './common';

function tokensShape(shape: Shape, name: string): [number, number] {
  if (shape.length !== 3 || shape[1] == null || shape[2] == null) {
    throw new ShapeError('input shape', 'rank 3 [batch, tokens, d] with known tokens and d', shape, name);
  }
  return [shape[1], shape[2]];
}

/**
 * Prepends one learned token (weight `token <float32>[1, 1, d]`, initialized to 0 as in ViT) to
 * every sequence: `<float32>[batch, tokens, d]` -> `<float32>[batch, tokens + 1, d]`.
 *
 * @example
 * ```ts
 * const y = classToken().apply(tf.zeros([2, 16, 64])) as tf.Tensor; // [2, 17, 64]
 * ```
 */
export class ClassToken extends tf.layers.Layer {
  /** @nocollapse */
  static className = 'ClassToken';
  private token!: tf.LayerVariable;

  constructor(args: LayerArgs = {}) {
    super(args);
  }

  override build(inputShape: Shape | Shape[]): void {
    const [, d] = tokensShape(singleShape(inputShape, this.name), this.name);
    this.token = this.addWeight('token', [1, 1, d], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shape = singleShape(inputShape, this.name);
    const [t, d] = tokensShape(shape, this.name);
    return [shape[0], t + 1, d];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = singleTensor(inputs);
      const [, d] = tokensShape(x.shape, this.name);
      // A broadcasting add, not tf.broadcastTo: broadcastTo runs the Tile kernel, whose gradient
      // is one Slice and one Add per batch entry; the add's gradient is one sum over the batch.
      const cls = tf.add(tf.zeros([x.shape[0], 1, d]), this.token.read());
      return tf.concat([cls, x], 1);
    });
  }
}
tf.serialization.registerClass(ClassToken);

/**
 * Creates a {@link ClassToken} layer.
 *
 * @example
 * ```ts
 * const withCls = classToken({name: 'cls'}).apply(tf.input({shape: [16, 64]})); // [null, 17, 64]
 * ```
 */
export function classToken(args: LayerArgs = {}): ClassToken {
  return new ClassToken(args);
}

/** Arguments of {@link PositionEmbedding}. */
export interface PositionEmbeddingArgs extends LayerArgs {
  /** Standard deviation of the normal initializer (ViT uses 0.02). Default 0.02. */
  stddev?: number;
  /** Seed of the initializer; unseeded when omitted. */
  seed?: number;
}

/**
 * Adds a learned embedding per position (weight `embedding <float32>[1, tokens, d]`):
 * `<float32>[batch, tokens, d]` -> same shape. The sequence length is fixed at build time.
 *
 * @example
 * ```ts
 * const y = positionEmbedding({seed: 1}).apply(tf.zeros([2, 17, 64])) as tf.Tensor; // [2, 17, 64]
 * ```
 */
export class PositionEmbedding extends tf.layers.Layer {
  /** @nocollapse */
  static className = 'PositionEmbedding';
  readonly stddev: number;
  readonly seed?: number;
  private embedding!: tf.LayerVariable;

  constructor(args: PositionEmbeddingArgs = {}) {
    super(args);
    this.stddev = args.stddev ?? 0.02;
    this.seed = args.seed;
  }

  override build(inputShape: Shape | Shape[]): void {
    const [t, d] = tokensShape(singleShape(inputShape, this.name), this.name);
    this.embedding = this.addWeight('embedding', [1, t, d], 'float32', normal(this.stddev, this.seed));
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shape = singleShape(inputShape, this.name);
    tokensShape(shape, this.name);
    return shape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = singleTensor(inputs);
      const [t, d] = tokensShape(x.shape, this.name);
      const [, et, ed] = this.embedding.shape as number[];
      if (t !== et || d !== ed) {
        throw new ShapeError('input shape', `[batch, ${et}, ${ed}] as built`, x.shape, this.name);
      }
      return tf.add(x, this.embedding.read());
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {stddev: this.stddev};
    if (this.seed !== undefined) config.seed = this.seed;
    return {...super.getConfig(), ...config};
  }
}
tf.serialization.registerClass(PositionEmbedding);

/**
 * Creates a {@link PositionEmbedding} layer.
 *
 * @example
 * ```ts
 * const y = positionEmbedding().apply(tf.input({shape: [17, 64]})); // [null, 17, 64]
 * ```
 */
export function positionEmbedding(args: PositionEmbeddingArgs = {}): PositionEmbedding {
  return new PositionEmbedding(args);
}

/** How a ViT turns its token sequence into one vector: the class token, or the token mean. */
export type Classifier = 'token' | 'gap';
/** Accepted values of {@link Classifier}. */
export const CLASSIFIERS: readonly Classifier[] = ['token', 'gap'];

/** Arguments of {@link TokenPooling}. */
export interface TokenPoolingArgs extends LayerArgs {
  /** `'token'` takes token 0 (the class token); `'gap'` averages over all tokens. */
  mode: Classifier;
}

/**
 * Pools `<float32>[batch, tokens, d]` -> `<float32>[batch, d]`: token 0 for `mode: 'token'`, the
 * mean over tokens for `mode: 'gap'` (global average pooling). No weights.
 *
 * @example
 * ```ts
 * const y = tokenPooling({mode: 'gap'}).apply(tf.ones([2, 16, 64])) as tf.Tensor; // [2, 64] of 1s
 * ```
 */
export class TokenPooling extends tf.layers.Layer {
  /** @nocollapse */
  static className = 'TokenPooling';
  readonly mode: Classifier;

  constructor(args: TokenPoolingArgs) {
    super(args);
    this.mode = assertOneOf('mode', args.mode, CLASSIFIERS, 'TokenPooling');
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shape = singleShape(inputShape, this.name);
    const [, d] = tokensShape(shape, this.name);
    return [shape[0], d];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = singleTensor(inputs);
      const [, d] = tokensShape(x.shape, this.name);
      if (this.mode === 'gap') return tf.mean(x, 1);
      return tf.reshape(tf.slice(x, [0, 0, 0], [x.shape[0], 1, d]), [x.shape[0], d]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), mode: this.mode};
  }
}
tf.serialization.registerClass(TokenPooling);

/**
 * Creates a {@link TokenPooling} layer.
 *
 * @example
 * ```ts
 * const pooled = tokenPooling({mode: 'token'}).apply(tf.input({shape: [17, 64]})); // [null, 64]
 * ```
 */
export function tokenPooling(args: TokenPoolingArgs): TokenPooling {
  return new TokenPooling(args);
}
