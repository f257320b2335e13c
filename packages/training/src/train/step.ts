/**
 * One training step (forward pass with the MoE layers' auxiliary losses, gradients, clipping,
 * AdamW update), the variables it trains, and the error a diverged run stops with.
 */
import * as tf from '@tensorflow/tfjs';
import {auxiliaryLoss, NonFiniteError} from '@tfjs-moe/router';
import type {AdamW} from './optimizer';

/**
 * The trainable variables of a model, in `model.trainableWeights` order.
 *
 * @example
 * ```ts
 * const opt = new AdamW(trainableVariables(model));
 * ```
 */
export function trainableVariables(model: tf.LayersModel): tf.Variable[] {
  return model.trainableWeights.map((w) => w.read() as tf.Variable);
}

/**
 * Training produced a non-finite loss or gradient norm and stopped. `firstStep`..`lastStep` is the
 * logging interval it happened in; the newest checkpoint (step `lastCheckpoint`, 0 for none) holds
 * the last good weights.
 *
 * @example
 * ```ts
 * try { await train({...options, learningRate: 1e30}); } catch (e) { if (e instanceof DivergedError) console.error(e.lastCheckpoint); }
 * ```
 */
export class DivergedError extends NonFiniteError {
  readonly firstStep: number;
  readonly lastStep: number;
  readonly lastCheckpoint: number;
  constructor(firstStep: number, lastStep: number, loss: number, gradNorm: number, lastCheckpoint: number, learningRate: number) {
    super('loss', 'finite', loss);
    this.firstStep = firstStep;
    this.lastStep = lastStep;
    this.lastCheckpoint = lastCheckpoint;
    const steps = firstStep === lastStep ? `step ${lastStep}` : `steps ${firstStep}-${lastStep}`;
    this.message =
      `Training stopped: non-finite values in ${steps} (mean loss ${loss}, gradient norm ${gradNorm}). ` +
      (lastCheckpoint > 0 ? `The newest checkpoint (step ${lastCheckpoint}) holds the last good weights. ` : 'No checkpoint was written. ') +
      `Lower the learning rate (now ${learningRate}) or check the data for NaN/Infinity.`;
  }
}

/** The scalars of one step, as tensors (nothing read back). */
export interface StepOutput {
  loss: tf.Scalar;
  crossEntropy: tf.Scalar;
  aux: tf.Scalar;
  correct: tf.Scalar;
  norm: tf.Scalar;
}

/**
 * Sum of the model's auxiliary losses, `<float32>[]`: the one definition, `auxiliaryLoss` of
 * `@tfjs-moe/router` (what `model.fit` adds through `addLoss`).
 */
export {auxiliaryLoss};

/**
 * One optimization step: forward in training mode, loss = mean cross-entropy + auxWeight *
 * auxiliary losses, gradients of every trainable variable, global-norm clipping, AdamW update.
 * Returns the step's scalars as tensors (no value is read back).
 *
 * @example
 * ```ts
 * const out = trainStep(model, vars, opt, xs, ys, 1e-3, 1.0);
 * console.log((await out.loss.data())[0]);
 * tf.dispose(Object.values(out));
 * ```
 */
export function trainStep(
  model: tf.LayersModel,
  variables: tf.Variable[],
  optimizer: AdamW,
  xs: tf.Tensor,
  ys: tf.Tensor1D,
  lr: number,
  clipNorm: number,
  auxWeight = 1,
): StepOutput {
  let ce: tf.Scalar | null = null;
  let aux: tf.Scalar | null = null;
  let correct: tf.Scalar | null = null;
  const {value, grads} = tf.variableGrads(() => {
    const logits = model.apply(xs, {training: true}) as tf.Tensor2D;
    const numClasses = logits.shape[1];
    const onehot = tf.oneHot(ys, numClasses);
    const c = tf.losses.softmaxCrossEntropy(onehot, logits) as tf.Scalar;
    const a = auxiliaryLoss(model);
    ce = tf.keep(c.clone());
    aux = tf.keep(a.clone());
    correct = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.cast(ys, 'int32')), 'float32')) as tf.Scalar);
    return tf.add(c, tf.mul(a, auxWeight)) as tf.Scalar;
  }, variables);
  const norm = optimizer.applyClipped(grads, lr, clipNorm);
  tf.dispose(Object.values(grads));
  return {loss: value, crossEntropy: ce!, aux: aux!, correct: correct!, norm};
}
