/**
 * Adam ascent on the (semi-)dual, as the released V-MoE reference runs it: optax.adam with
 * learning rate 1e-2, betas 0.9 / 0.999, eps 1e-8 added to `sqrt(v_hat)`, bias-corrected
 * moments, a fixed number of steps (20) from zero potentials. It ascends the concave objective.
 * Runs entirely on the device: nothing is read back while it iterates.
 */
import * as tf from '@tensorflow/tfjs';

/** Adam hyper-parameters; defaults are the reference's. */
export interface AdamConfig {
  /** Step size. Default 1e-2. */
  learningRate?: number;
  /** Number of steps. Default 20. */
  steps?: number;
  /** First-moment decay. Default 0.9. */
  beta1?: number;
  /** Second-moment decay. Default 0.999. */
  beta2?: number;
  /** Added to `sqrt(v_hat)`. Default 1e-8. */
  epsilon?: number;
}

/** What the objective returns at the current parameters: its gradients and its value. */
export interface AscentEval {
  grads: tf.Tensor[];
  value: tf.Tensor;
}

/**
 * Runs Adam ascent: `p += lr * m_hat / (sqrt(v_hat) + eps)` with `g = grad(objective)`.
 * Takes ownership of nothing: `params` are cloned. Returns the final parameters and the
 * objective value at the parameters before the last step (to judge the last step's change).
 *
 * @param params Initial parameters (e.g. `<float32>[groups, m]` alpha).
 * @param evaluate Gradient and value at given parameters; its tensors are disposed here.
 */
export function adamAscent(
  params: tf.Tensor[], evaluate: (p: tf.Tensor[]) => AscentEval, config: AdamConfig = {},
): {params: tf.Tensor[]; lastValue: tf.Tensor | null} {
  const lr = config.learningRate ?? 1e-2;
  const steps = config.steps ?? 20;
  const b1 = config.beta1 ?? 0.9;
  const b2 = config.beta2 ?? 0.999;
  const eps = config.epsilon ?? 1e-8;
  let p = params.map((t) => tf.clone(t));
  let m = params.map((t) => tf.zerosLike(t));
  let v = params.map((t) => tf.zerosLike(t));
  let lastValue: tf.Tensor | null = null;
  for (let t = 1; t <= steps; t++) {
    const ev = evaluate(p);
    const c1 = 1 - b1 ** t;
    const c2 = 1 - b2 ** t;
    const next = tf.tidy(() => {
      const mN = ev.grads.map((g, i) => tf.add(tf.mul(m[i], b1), tf.mul(g, 1 - b1)));
      const vN = ev.grads.map((g, i) => tf.add(tf.mul(v[i], b2), tf.mul(tf.square(g), 1 - b2)));
      const pN = p.map((pi, i) => tf.add(pi, tf.mul(lr, tf.div(tf.div(mN[i], c1), tf.add(tf.sqrt(tf.div(vN[i], c2)), eps)))));
      return {mN, vN, pN};
    });
    tf.dispose([...p, ...m, ...v, ...ev.grads]);
    if (lastValue) lastValue.dispose();
    lastValue = ev.value;
    p = next.pN;
    m = next.mN;
    v = next.vN;
  }
  tf.dispose([...m, ...v]);
  return {params: p, lastValue};
}
