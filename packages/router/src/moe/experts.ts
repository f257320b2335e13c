/**
 * The experts' feed-forward networks held as stacked weights, run for all experts at once: plain
 * `act(x W1 + b1) W2 + b2` or gated `(act(x W1 + b1) * (x Wg + bg)) W2 + b2` (GLU variants,
 * Shazeer 2020).
 */
import * as tf from '@tensorflow/tfjs';

/** How the experts' matMuls run (a run-time choice; it never changes the numbers). */
export type ExpertMatMul = 'batched' | 'per-expert';

/** Stacked weights of E feed-forward networks `d -> h -> d` (tensors read from the layer's variables). */
export interface FeedForwardWeights {
  /** `<float32>[E, d, h]`. */
  kernelIn: tf.Tensor3D;
  /** `<float32>[E, h]`, absent without biases. */
  biasIn?: tf.Tensor2D;
  /** `<float32>[E, d, h]`: the gate projection of a gated network, absent otherwise. */
  kernelGate?: tf.Tensor3D;
  /** `<float32>[E, h]`. */
  biasGate?: tf.Tensor2D;
  /** `<float32>[E, h, d]`. */
  kernelOut: tf.Tensor3D;
  /** `<float32>[E, d]`. */
  biasOut?: tf.Tensor2D;
}

function addRowBias(x: tf.Tensor, bias: tf.Tensor | undefined, E: number): tf.Tensor {
  return bias ? tf.add(x, tf.reshape(bias, [E, 1, -1])) : x;
}

/**
 * Runs expert `e` on its rows `x[e]`: `<float32>[E, n, d]` -> `<float32>[E, n, d]`.
 * `'batched'` uses one batched matMul per projection; `'per-expert'` uses E separate 2-D matMuls
 * (faster where batched matMul is slow per FLOP, such as tfjs-wasm with few, large experts).
 *
 * @example
 * ```ts
 * const y = expertFeedForward(xe, {kernelIn, kernelOut}, activationFunction('gelu'));
 * ```
 */
export function expertFeedForward(
  xe: tf.Tensor3D,
  w: FeedForwardWeights,
  act: (x: tf.Tensor) => tf.Tensor,
  mode: ExpertMatMul = 'batched',
): tf.Tensor3D {
  return tf.tidy(() => {
    if (mode === 'per-expert') return perExpert(xe, w, act);
    const E = w.kernelIn.shape[0];
    let hidden = act(addRowBias(tf.matMul(xe, w.kernelIn), w.biasIn, E));
    if (w.kernelGate) hidden = tf.mul(hidden, addRowBias(tf.matMul(xe, w.kernelGate), w.biasGate, E));
    return addRowBias(tf.matMul(hidden as tf.Tensor3D, w.kernelOut), w.biasOut, E) as tf.Tensor3D;
  });
}

function perExpert(xe: tf.Tensor3D, w: FeedForwardWeights, act: (x: tf.Tensor) => tf.Tensor): tf.Tensor3D {
  const E = w.kernelIn.shape[0];
  const split = (t: tf.Tensor | undefined) => (t ? tf.unstack(t) : undefined);
  const [xs, k1, kg, k2] = [tf.unstack(xe), tf.unstack(w.kernelIn), split(w.kernelGate), tf.unstack(w.kernelOut)];
  const [b1, bg, b2] = [split(w.biasIn), split(w.biasGate), split(w.biasOut)];
  const outs = Array.from({length: E}, (_, e) => {
    const x = xs[e] as tf.Tensor2D;
    const lin = (k: tf.Tensor, b: tf.Tensor | undefined, v: tf.Tensor2D) => {
      const y = tf.matMul(v, k as tf.Tensor2D);
      return b ? tf.add(y, b) : y;
    };
    let hidden = act(lin(k1[e], b1?.[e], x)) as tf.Tensor2D;
    if (kg) hidden = tf.mul(hidden, lin(kg[e], bg?.[e], x));
    return lin(k2[e], b2?.[e], hidden);
  });
  return tf.stack(outs) as tf.Tensor3D;
}
