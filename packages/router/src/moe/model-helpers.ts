/**
 * One definition of each model-level fact about MoE layers: which layers are MoE layers, the
 * model's auxiliary loss, and the auxiliary loss as a `compile` metric (so that `History` and
 * `val_` logs carry it without a callback).
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError} from '../core/errors';
import type {MoE} from './moe-layer';

/**
 * The brand every MoE layer carries (a registry symbol, so the test also holds across two copies
 * of this package in one program, where `instanceof` would fail).
 */
export const MOE_LAYER_BRAND: unique symbol = Symbol.for('@tfjs-moe/router:MoE') as never;

/**
 * True for an MoE layer of this package (the one test used everywhere: models, training metrics,
 * the browser overlay).
 *
 * @example
 * ```ts
 * model.layers.filter(isMoELayer).map((l) => l.name); // ['block1_moe', 'block3_moe']
 * ```
 */
export function isMoELayer(layer: unknown): layer is MoE {
  return typeof layer === 'object' && layer !== null && (layer as Record<symbol, unknown>)[MOE_LAYER_BRAND] === true;
}

/**
 * The MoE layers of a model (or of a layer holding sub-layers), in layer order, searching nested
 * models.
 *
 * @example
 * ```ts
 * moeLayers(model).map((l) => l.name); // ['block1_moe', 'block3_moe']
 * ```
 */
export function moeLayers(model: tf.LayersModel | tf.layers.Layer): MoE[] {
  const out: MoE[] = [];
  const seen = new Set<unknown>();
  const visit = (layer: unknown): void => {
    if (!layer || seen.has(layer)) return;
    seen.add(layer);
    if (isMoELayer(layer)) out.push(layer);
    const children = (layer as {layers?: unknown[]}).layers;
    if (Array.isArray(children)) children.forEach(visit);
  };
  visit(model);
  return out;
}

/**
 * Seeds the training noise (jitter, logit noise) of every MoE layer's router for the calls that
 * follow: layer i gets a seed derived from `seed` and i (see `Router.setNoiseSeed`); null makes
 * them unseeded. A training loop calls it once per step with the step's seed, so the noise is a
 * function of (seed, step) and never of `Math.random`.
 *
 * @example
 * ```ts
 * seedRouterNoise(model, deriveSeed(runSeed, 'step', step));
 * ```
 */
export function seedRouterNoise(model: tf.LayersModel | tf.layers.Layer, seed: number | null): void {
  moeLayers(model).forEach((layer, i) => layer.router.setNoiseSeed(seed === null ? null : (seed + Math.imul(i + 1, 0x85ebca6b)) >>> 0));
}

/**
 * Runs `fn` with the routing metrics of every MoE layer of `model` switched on or off
 * (`MoE.computeMetrics`), then restores each layer's previous setting (also when `fn` throws,
 * and, for a `fn` that returns a promise, once it settles). A training loop wraps the steps that
 * do not log in `withRoutingMetrics(model, false, ...)`: they skip every metric kernel while
 * their outputs, auxiliary losses and gradients stay the same; the layers' `lastMetrics` keep
 * the values of the last step that computed them. A scope rather than a call argument, because
 * tfjs-layers' `model.apply` does not pass custom call arguments on to nested layers.
 *
 * @param model a model or layer holding MoE layers (nested models are searched)
 * @param enabled whether the metrics are computed inside `fn`
 * @param fn the work to run (e.g. one training step)
 * @returns what `fn` returns
 * @throws {InvalidArgumentError} when `enabled` is not a boolean or `fn` not a function
 *
 * @example
 * ```ts
 * const logs = (step + 1) % logEvery === 0;
 * const out = withRoutingMetrics(model, logs, () => trainStep(model, variables, optimizer, xs, ys, lr, clipNorm));
 * ```
 */
export function withRoutingMetrics<T>(model: tf.LayersModel | tf.layers.Layer, enabled: boolean, fn: () => T): T {
  if (typeof enabled !== 'boolean') throw new InvalidArgumentError('enabled', 'a boolean', enabled, 'withRoutingMetrics');
  if (typeof fn !== 'function') throw new InvalidArgumentError('fn', 'a function', fn, 'withRoutingMetrics');
  const layers = moeLayers(model);
  const before = layers.map((l) => l.computeMetrics);
  const restore = () => layers.forEach((l, i) => (l.computeMetrics = before[i]));
  layers.forEach((l) => (l.computeMetrics = enabled));
  let result: T;
  try {
    result = fn();
  } catch (e) {
    restore();
    throw e;
  }
  if (result instanceof Promise) return result.finally(restore) as T;
  restore();
  return result;
}

/**
 * `<float32>[]`: the sum of the auxiliary losses that the model's MoE layers computed in their last
 * call (0 before any call): exactly what `model.fit` adds to the loss through `addLoss`. Call it
 * inside the same gradient tape as the forward pass (e.g. in the function given to
 * `tf.variableGrads`) to train with it in a custom loop. The caller owns the returned scalar.
 *
 * @example
 * ```ts
 * const {value, grads} = tf.variableGrads(() => {
 *   const logits = model.apply(images, {training: true}) as tf.Tensor;
 *   return tf.add(tf.losses.softmaxCrossEntropy(labels, logits), auxiliaryLoss(model)) as tf.Scalar;
 * });
 * ```
 */
export function auxiliaryLoss(model: tf.LayersModel | tf.layers.Layer): tf.Scalar {
  const losses = moeLayers(model).map((l) => l.lastAuxiliaryLoss).filter((t): t is tf.Scalar => t != null && !t.isDisposed);
  return tf.tidy(() => (losses.length === 0 ? tf.scalar(0) : tf.addN(losses.map((l) => tf.clone(l)))) as tf.Scalar);
}

/**
 * A `compile` metric that reports {@link auxiliaryLoss} of the forward pass it follows, named
 * `auxiliary_loss`: `History` then holds `auxiliary_loss` (training) and `val_auxiliary_loss`
 * (validation, the auxiliary loss of the inference-mode pass), with no callback.
 *
 * @example
 * ```ts
 * model.compile({optimizer: 'adam', loss: 'categoricalCrossentropy', metrics: ['accuracy', auxiliaryLossMetric(model)]});
 * const history = await model.fit(xs, ys, {epochs: 2, validationSplit: 0.25});
 * history.history.val_auxiliary_loss; // one value per epoch
 * ```
 */
export function auxiliaryLossMetric(model: tf.LayersModel): (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Tensor {
  const metric = (_yTrue: tf.Tensor, _yPred: tf.Tensor) => auxiliaryLoss(model);
  Object.defineProperty(metric, 'name', {value: 'auxiliary_loss'});
  return metric;
}

/**
 * Wraps a loss so that `val_loss` includes the auxiliary loss, as the training `loss` of
 * `model.fit` does (tfjs adds `addLoss` terms to the training loss only): the wrapped loss adds
 * {@link auxiliaryLoss} when the last forward pass ran in inference mode, and nothing in
 * training (where `fit` adds it already). `loss` is a tfjs loss function or the name of one of
 * `tf.losses` / `tf.metrics` (`'categoricalCrossentropy'`, `'meanSquaredError'`, ...).
 *
 * @example
 * ```ts
 * model.compile({optimizer: 'adam', loss: withAuxiliaryLoss(model, 'categoricalCrossentropy')});
 * ```
 */
export function withAuxiliaryLoss(
  model: tf.LayersModel,
  loss: string | ((yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Tensor),
): (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Tensor {
  const base = typeof loss === 'function' ? loss : lossByName(loss);
  const wrapped = (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.tidy(() => {
    const value = base(yTrue, yPred);
    const layers = moeLayers(model);
    const inference = layers.length > 0 && layers.every((l) => l.lastCallTraining === false);
    return inference ? tf.add(value, auxiliaryLoss(model)) : value;
  });
  Object.defineProperty(wrapped, 'name', {value: typeof loss === 'string' ? loss : base.name || 'loss'});
  return wrapped;
}

function lossByName(name: string): (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Tensor {
  const fn = (tf.metrics as unknown as Record<string, unknown>)[name];
  if (typeof fn !== 'function') {
    throw new InvalidArgumentError('loss', 'a tfjs loss function or the name of one of tf.metrics', name, 'withAuxiliaryLoss');
  }
  return fn as (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Tensor;
}
