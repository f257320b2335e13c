/**
 * A per-expert initializer: applies an ordinary tfjs initializer to each expert's matrix of a
 * stacked `[experts, ...]` weight, so that fan-in and fan-out are those of one expert, and, when
 * the initializer is seeded, gives each expert its own deterministic draw derived from the seed
 * (one seeded initializer applied E times would make every expert a copy of the first).
 */
import * as tf from '@tensorflow/tfjs';
import type {Initializer} from '@tensorflow/tfjs-layers/dist/initializers';
import {assertPositiveInt, ShapeError} from '../core/errors';
import {checkOptions} from '../core/options';
import {InitializerLike, resolveInitializer, serializeInitializer} from '../routers/router';

/**
 * Mixes integers into one 32-bit seed (a murmur3-style finalizer over each input), so that nearby
 * inputs give unrelated seeds. Deterministic and the same on every platform.
 *
 * @example
 * ```ts
 * deriveSeed(1, 0, 3) !== deriveSeed(1, 0, 4); // true
 * ```
 */
export function deriveSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    // Fold in the high bits of large seeds too.
    h = Math.imul(h ^ Math.floor(p / 4294967296), 0x27d4eb2f);
  }
  return h >>> 0;
}

/** Constructor arguments of {@link PerExpertInitializer}. */
export interface PerExpertInitializerArgs {
  /** The initializer of one expert's weight (name, `{className, config}` or instance). */
  initializer: InitializerLike;
  /**
   * Distinguishes the weights of one layer that share an initializer (e.g. 0 for the first
   * kernel, 1 for the second), so that their seeded draws differ too. Default 0.
   */
  salt?: number;
}

/**
 * Initializes a stacked weight `[experts, ...shape]` expert by expert with `initializer`.
 * When `initializer`'s config holds a numeric `seed`, expert `e` draws from a copy seeded with
 * `deriveSeed(seed, salt, e)`: distinct per expert and per salt, identical for equal seeds.
 * Unseeded initializers draw independently per expert; constant ones (zeros, ones) repeat.
 * Registered with `tf.serialization`, so it round-trips through `getConfig` / `fromConfig`.
 *
 * @example
 * ```ts
 * const init = perExpertInitializer({initializer: tf.initializers.glorotUniform({seed: 1})});
 * const w = init.apply([4, 16, 64]); // 4 experts, each Glorot-uniform for fan-in 16, fan-out 64
 * ```
 */
export class PerExpertInitializer extends tf.serialization.Serializable {
  /** @nocollapse */
  static className = 'PerExpertInitializer';
  /** The initializer of one expert. */
  readonly initializer: Initializer;
  /** See {@link PerExpertInitializerArgs.salt}. */
  readonly salt: number;

  constructor(args: PerExpertInitializerArgs) {
    super();
    checkOptions(args, ['initializer', 'salt'], 'PerExpertInitializer');
    this.initializer = resolveInitializer(args?.initializer, 'initializer');
    this.salt = assertPositiveInt('salt', args.salt ?? 0, 'PerExpertInitializer', 0);
  }

  /** The initializer that expert `e` uses (a reseeded copy when the initializer is seeded). */
  forExpert(e: number): Initializer {
    const {className, config} = serializeInitializer(this.initializer) as {className: string; config: tf.serialization.ConfigDict};
    if (typeof config.seed !== 'number') return this.initializer;
    return resolveInitializer({className, config: {...config, seed: deriveSeed(config.seed, this.salt, e)}}, 'initializer');
  }

  /**
   * @param shape `[experts, ...expertShape]`
   * @returns `<dtype>[experts, ...expertShape]`
   * @throws {ShapeError} for a shape of rank < 2
   */
  apply(shape: tf.Shape, dtype?: tf.DataType): tf.Tensor {
    if (shape.length < 2 || typeof shape[0] !== 'number') {
      throw new ShapeError('shape', 'a shape [experts, ...] of rank >= 2', shape, 'PerExpertInitializer');
    }
    const inner = shape.slice(1) as number[];
    return tf.tidy(() => tf.stack(Array.from({length: shape[0] as number}, (_, e) => this.forExpert(e).apply(inner, dtype))));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {initializer: serializeInitializer(this.initializer), salt: this.salt};
  }

  /** Rebuilds the initializer from {@link PerExpertInitializer.getConfig} output. */
  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    // tfjs may add `customObjects` to a config it deserializes.
    const {customObjects: _customObjects, ...args} = config;
    return new cls(args) as T;
  }
}
tf.serialization.registerClass(PerExpertInitializer);

/**
 * Creates a {@link PerExpertInitializer}.
 *
 * @example
 * ```ts
 * perExpertInitializer({initializer: {className: 'GlorotUniform', config: {seed: 7}}, salt: 1});
 * ```
 */
export function perExpertInitializer(args: PerExpertInitializerArgs): PerExpertInitializer {
  return new PerExpertInitializer(args);
}

/**
 * The per-expert form of an initializer: `init` itself when it already is a
 * {@link PerExpertInitializer}, else a {@link PerExpertInitializer} around it with `salt`.
 */
export function asPerExpert(init: Initializer | PerExpertInitializer, salt: number): Initializer {
  if (init instanceof PerExpertInitializer) return init as unknown as Initializer;
  return new PerExpertInitializer({initializer: init, salt}) as unknown as Initializer;
}
