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
 * What stopped a diverged run: the interval's mean loss or last gradient norm read back as
 * non-finite (`loss`, `gradNorm`); the weights after an update (`weight`: the first non-finite
 * variable's name, with the interval's finite loss and norm); or a layer's own check that
 * found NaN or Infinity in what it computes on (`error`, e.g. an MoE layer's inputs).
 */
export type DivergenceCause =
  | {loss: number; gradNorm: number}
  | {weight: string; loss: number; gradNorm: number}
  | {error: NonFiniteError};

/** The parenthesis of the message: what was found non-finite. */
function describeCause(cause: DivergenceCause): string {
  if ('error' in cause) return `found by ${cause.error.message.replace(/\.$/, '')}`;
  if ('weight' in cause) return `weight ${cause.weight} after the update; mean loss ${cause.loss}, gradient norm ${cause.gradNorm}`;
  return `mean loss ${cause.loss}, gradient norm ${cause.gradNorm}`;
}

/**
 * Training produced a non-finite value and stopped. `firstStep`..`lastStep` is the logging
 * interval it happened in; the newest checkpoint (step `lastCheckpoint`, 0 for none) holds the
 * last good weights. The message says what was non-finite ({@link DivergenceCause}): the loss
 * and gradient norm when they were, the variable when an update overflowed the weights, or the
 * layer and tensor when a layer's check found NaN / Infinity (`cause` then holds that error).
 *
 * @example
 * ```ts
 * try { await train({...options, learningRate: 1e30}); } catch (e) { if (e instanceof DivergedError) console.error(e.lastCheckpoint); }
 * // Training stopped: non-finite values in step 3 (found by MoE 'block1_moe': Expected inputs to be
 * // finite (no NaN or Infinity; shape [16, 50, 16]), but got NaN). The newest checkpoint (step 2) ...
 * ```
 */
export class DivergedError extends NonFiniteError {
  readonly firstStep: number;
  readonly lastStep: number;
  readonly lastCheckpoint: number;
  /** The layer's error, when one found the non-finite value. */
  override readonly cause: NonFiniteError | undefined;
  constructor(firstStep: number, lastStep: number, found: DivergenceCause, lastCheckpoint: number, learningRate: number) {
    super('error' in found ? found.error.argument : 'weight' in found ? found.weight : 'loss', 'finite', 'error' in found ? found.error.value : found.loss);
    this.firstStep = firstStep;
    this.lastStep = lastStep;
    this.lastCheckpoint = lastCheckpoint;
    this.cause = 'error' in found ? found.error : undefined;
    const steps = firstStep === lastStep ? `step ${lastStep}` : `steps ${firstStep}-${lastStep}`;
    this.message =
      `Training stopped: non-finite values in ${steps} (${describeCause(found)}). ` +
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
  let failure: unknown = null;
  const {value, grads} = tf.variableGrads(() => {
    try {
      const logits = model.apply(xs, {training: true}) as tf.Tensor2D;
      const numClasses = logits.shape[1];
      const onehot = tf.oneHot(ys, numClasses);
      const c = tf.losses.softmaxCrossEntropy(onehot, logits) as tf.Scalar;
      const a = auxiliaryLoss(model);
      ce = tf.keep(c.clone());
      aux = tf.keep(a.clone());
      correct = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.cast(ys, 'int32')), 'float32')) as tf.Scalar);
      return tf.add(c, tf.mul(a, auxWeight)) as tf.Scalar;
    } catch (e) {
      // A layer's check failed mid-forward (e.g. NaN inputs). A throw out of variableGrads would
      // leave the tape's saved forward tensors kept for good: end the tape on a zero loss instead
      // and throw once it is closed.
      failure = e;
      tf.dispose([ce, aux, correct].filter((t): t is tf.Scalar => t !== null));
      return tf.mul(tf.sum(variables[0]), 0) as tf.Scalar;
    }
  }, variables);
  if (failure !== null) {
    tf.dispose([value, ...Object.values(grads)]);
    throw failure;
  }
  const norm = optimizer.applyClipped(grads, lr, clipNorm);
  tf.dispose(Object.values(grads));
  return {loss: value, crossEntropy: ce!, aux: aux!, correct: correct!, norm};
}
