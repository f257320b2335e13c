/**
 * AdamW with explicit, serializable state (first and second moments per variable and the step
 * count), global-norm gradient clipping, and a learning rate given per step. The state can be
 * written to a checkpoint and restored bit for bit, which exact resumption needs.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, ShapeError} from '@tfjs-moe/router';

/** Options of {@link AdamW}. */
export interface AdamWOptions {
  /** Exponential decay of the first moment. Default 0.9. */
  beta1?: number;
  /** Exponential decay of the second moment. Default 0.999. */
  beta2?: number;
  /** Added to the root of the second moment. Default 1e-8. */
  epsilon?: number;
  /** Decoupled weight decay (Loshchilov & Hutter), applied to variables of rank >= 2 only. Default 0. */
  weightDecay?: number;
}

/**
 * Clips gradients by their global norm: if `||g||_2` over all of them exceeds `maxNorm`, each is
 * scaled by `maxNorm / ||g||_2`. Returns the clipped gradients and the norm before clipping
 * (`<float32>[]`), all new tensors; no value is read back.
 *
 * @example
 * ```ts
 * const {grads: clipped, norm} = clipByGlobalNorm(grads, 1.0);
 * ```
 */
export function clipByGlobalNorm(grads: tf.NamedTensorMap, maxNorm: number): {grads: tf.NamedTensorMap; norm: tf.Scalar} {
  if (!(maxNorm > 0)) throw new InvalidArgumentError('clipNorm', 'a number > 0', maxNorm);
  return tf.tidy(() => {
    const names = Object.keys(grads);
    const sq = names.map((n) => tf.sum(tf.square(grads[n])));
    const norm = tf.sqrt(sq.length ? tf.addN(sq) : tf.scalar(0)) as tf.Scalar;
    const scale = tf.minimum(tf.scalar(1), tf.div(maxNorm, tf.maximum(norm, 1e-12)));
    const out: tf.NamedTensorMap = {};
    for (const n of names) out[n] = tf.mul(grads[n], scale);
    return {grads: out, norm};
  });
}

/**
 * AdamW: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
 * `p -= lr * (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd * p)`.
 *
 * @example
 * ```ts
 * const opt = new AdamW(model.trainableWeights.map((w) => w.read() as tf.Variable), {weightDecay: 1e-4});
 * opt.apply(grads, 1e-3); // grads: NamedTensorMap keyed by variable name
 * ```
 */
export class AdamW {
  /** Number of updates applied so far. */
  step = 0;
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly epsilon: number;
  private readonly weightDecay: number;

  /** @param variables the variables to update, in a fixed order (the state is stored in it). */
  constructor(readonly variables: tf.Variable[], options: AdamWOptions = {}) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
    this.m = variables.map((x) => tf.tidy(() => tf.variable(tf.zerosLike(x), false)));
    this.v = variables.map((x) => tf.tidy(() => tf.variable(tf.zerosLike(x), false)));
  }

  /** Applies one update with learning rate `lr`; `grads` is keyed by variable name. */
  apply(grads: tf.NamedTensorMap, lr: number): void {
    this.step += 1;
    const t = this.step;
    const c1 = 1 / (1 - this.beta1 ** t);
    const c2 = 1 / (1 - this.beta2 ** t);
    tf.tidy(() => {
      this.variables.forEach((p, i) => {
        const g = grads[p.name];
        if (!g) return;
        const m = tf.add(tf.mul(this.m[i], this.beta1), tf.mul(g, 1 - this.beta1));
        const v = tf.add(tf.mul(this.v[i], this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        let update = tf.div(tf.mul(m, c1), tf.add(tf.sqrt(tf.mul(v, c2)), this.epsilon));
        if (this.weightDecay > 0 && p.rank >= 2) update = tf.add(update, tf.mul(p, this.weightDecay));
        this.m[i].assign(m);
        this.v[i].assign(v);
        p.assign(tf.sub(p, tf.mul(update, lr)));
      });
    });
  }

  /** The state as tensors (copies of m and v, in variable order) and the step count. */
  getState(): {step: number; m: tf.Tensor[]; v: tf.Tensor[]} {
    return {step: this.step, m: this.m.map((x) => x.clone()), v: this.v.map((x) => x.clone())};
  }

  /** Restores a state from {@link getState} (shapes must match; the tensors are not kept). */
  setState(state: {step: number; m: tf.Tensor[]; v: tf.Tensor[]}): void {
    if (state.m.length !== this.m.length || state.v.length !== this.v.length) {
      throw new ShapeError('optimizer state', `${this.m.length} moment tensors of each kind`, state.m.length);
    }
    state.m.forEach((x, i) => {
      if (!tf.util.arraysEqual(x.shape, this.m[i].shape)) throw new ShapeError(`optimizer m[${i}]`, `of shape [${this.m[i].shape}]`, x.shape);
      this.m[i].assign(x);
    });
    state.v.forEach((x, i) => {
      if (!tf.util.arraysEqual(x.shape, this.v[i].shape)) throw new ShapeError(`optimizer v[${i}]`, `of shape [${this.v[i].shape}]`, x.shape);
      this.v[i].assign(x);
    });
    this.step = state.step;
  }

  /** Disposes the moment variables. */
  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}
