/**
 * Small shared pieces of the model layers: the tfjs types that the public tfjs barrel does not
 * export by name, shape helpers, and seeded initializers.
 */
import * as tf from '@tensorflow/tfjs';
import {ShapeError} from '@tfjs-moe/router';

/** The constructor arguments of every tfjs layer (`name`, `trainable`, `inputShape`, ...). */
export type LayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]>;

/** The keyword arguments that tfjs passes to `Layer.call` (`training`, `mask`). */
export type Kwargs = Parameters<tf.layers.Layer['call']>[1];

/** A symbolic or concrete shape as tfjs layers use it; `null` is an unknown (batch) size. */
export type Shape = (number | null)[];

/** Returns the one shape of a single-input layer, or throws when given a list of several. */
export function singleShape(inputShape: Shape | Shape[], context: string): Shape {
  if (Array.isArray(inputShape[0])) {
    const shapes = inputShape as Shape[];
    if (shapes.length !== 1) {
      throw new ShapeError('inputShape', 'a single input shape', shapes, context);
    }
    return shapes[0];
  }
  return inputShape as Shape;
}

/** Returns the one tensor of a single-input layer. */
export function singleTensor(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  return Array.isArray(inputs) ? inputs[0] : inputs;
}

/** A tfjs weight initializer (the class is not exported by name from the tfjs barrel). */
export type Initializer = ReturnType<typeof tf.initializers.zeros>;

/** Glorot-uniform initializer, seeded when `seed` is a number (then reproducible on cpu). */
export function glorotUniform(seed: number | undefined): Initializer {
  return tf.initializers.glorotUniform(seed === undefined ? {} : {seed});
}

/** N(0, stddev^2) initializer, seeded when `seed` is a number. */
export function normal(stddev: number, seed: number | undefined): Initializer {
  return tf.initializers.randomNormal(seed === undefined ? {mean: 0, stddev} : {mean: 0, stddev, seed});
}

/** Derives a distinct seed for the `index`-th weight of a layer, or undefined when unseeded. */
export function subSeed(seed: number | undefined, index: number): number | undefined {
  return seed === undefined ? undefined : seed * 7919 + index * 104729 + 17;
}

/**
 * A layer whose output has its input's shape `[batch, tokens, d]` (attention, MLP, layer norm):
 * `computeOutputShape` checks the shape with the subclass's `width` (which returns d or throws
 * a `ShapeError` / `ConfigError`) and returns it unchanged.
 *
 * @example
 * ```ts
 * class Scale extends ShapePreservingLayer {
 *   protected width(shape: Shape): number { return shape[2] as number; }
 * }
 * ```
 */
export abstract class ShapePreservingLayer extends tf.layers.Layer {
  /** The model width d of an input shape; throws for a shape the layer cannot take. */
  protected abstract width(shape: Shape): number;

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shape = singleShape(inputShape, this.name);
    this.width(shape);
    return shape;
  }
}
