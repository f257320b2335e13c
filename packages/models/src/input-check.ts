/**
 * A typed error for images of the wrong size at the model's entry points. tfjs checks the input
 * of `predict` / `evaluate` / `fit` itself, but with an untyped `Error when checking : expected
 * image to have shape [null,28,28,1] ...`, and `apply` / `execute` on a concrete tensor reach the
 * patch embedding with a shape error from deep inside. The models of this package check first and
 * throw a `ShapeError` naming `images` and the expected `[batch, height, width, channels]`.
 */
import * as tf from '@tensorflow/tfjs';
import {ShapeError} from '@tfjs-moe/router';

/** The model methods whose first argument is the images (a tensor, or a one-element array of one). */
const ENTRY_POINTS = ['predict', 'predictOnBatch', 'evaluate', 'fit', 'apply', 'execute'] as const;

/**
 * Throws a `ShapeError` unless `images` is a tensor `[batch, height, width, channels]` of the
 * given image shape (a symbolic tensor, an array of several inputs and other values are left to
 * tfjs).
 *
 * @param images what was passed (e.g. to `model.predict`)
 * @param imageShape `[height, width, channels]`
 * @param context names the model in the message
 *
 * @example
 * ```ts
 * checkImages(tf.zeros([1, 16, 16, 1]), [28, 28, 1], "model 'vit'");
 * // ShapeError: model 'vit': Expected images to be of shape [batch, 28, 28, 1] ([batch, height, width, channels]), but got [1,16,16,1].
 * ```
 */
export function checkImages(images: unknown, imageShape: readonly number[], context: string): void {
  const t = Array.isArray(images) && images.length === 1 ? images[0] : images;
  if (!(t instanceof tf.Tensor)) return;
  const [h, w, c] = imageShape;
  if (t.rank !== 4 || t.shape[1] !== h || t.shape[2] !== w || t.shape[3] !== c) {
    throw new ShapeError('images', `of shape [batch, ${h}, ${w}, ${c}] ([batch, height, width, channels])`, t.shape, context);
  }
}

/**
 * Makes `model`'s entry points (`predict`, `predictOnBatch`, `evaluate`, `fit`, and `apply` /
 * `execute` on a concrete tensor) check the image shape first (see {@link checkImages}), when the
 * model has one input of a known `[null, height, width, channels]` shape. The check is a shape
 * comparison (no read of values). Returns the model.
 *
 * @example
 * ```ts
 * const model = guardImageInput(tf.model({inputs, outputs}), 'model');
 * model.predict(tf.zeros([1, 16, 16, 1])); // ShapeError naming images and [batch, 28, 28, 1]
 * ```
 */
export function guardImageInput(model: tf.LayersModel, kind: string): tf.LayersModel {
  if (model.inputs.length !== 1) return model;
  const shape = model.inputs[0].shape;
  if (shape.length !== 4 || shape.slice(1).some((s) => s == null)) return model;
  const imageShape = shape.slice(1) as number[];
  const context = `${kind} '${model.name}'`;
  const target = model as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const method of ENTRY_POINTS) {
    const original = (tf.LayersModel.prototype as unknown as Record<string, (...args: unknown[]) => unknown>)[method];
    target[method] = function (this: tf.LayersModel, ...args: unknown[]) {
      try {
        checkImages(args[0], imageShape, context);
      } catch (e) {
        if (method === 'fit') return Promise.reject(e); // fit is async: fail as its promise
        throw e;
      }
      return original.apply(this, args);
    };
  }
  return model;
}
