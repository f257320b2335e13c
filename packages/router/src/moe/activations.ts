/**
 * The one list of feed-forward activations, shared by the experts of the MoE layer and the dense
 * MLPs of `@tfjs-moe/models` (so that every dense MLP can be upcycled into experts).
 */
import * as tf from '@tensorflow/tfjs';
import {assertOneOf} from '../core/errors';

/**
 * Feed-forward activations: the tfjs activation names, plus `'silu'` (the name PyTorch and
 * Hugging Face use for `x * sigmoid(x)`, which tfjs calls `'swish'`).
 *
 * - `'gelu'`: exact GELU `x * Phi(x)` (erf); `'gelu_new'`: its tanh approximation
 *   (Hendrycks & Gimpel 2016).
 * - `'silu'` / `'swish'`: `x * sigmoid(x)` (Ramachandran et al. 2017; Elfwing et al. 2018).
 * - With a gated feed-forward (`gated: true`), `'silu'` gives SwiGLU and `'gelu'` GeGLU
 *   (Shazeer 2020, "GLU Variants Improve Transformer").
 */
export type FeedForwardActivation =
  | 'gelu'
  | 'gelu_new'
  | 'relu'
  | 'relu6'
  | 'elu'
  | 'selu'
  | 'swish'
  | 'silu'
  | 'mish'
  | 'tanh'
  | 'sigmoid'
  | 'softplus'
  | 'linear';

/** Accepted values of {@link FeedForwardActivation}, in one list. */
export const FEED_FORWARD_ACTIVATIONS: readonly FeedForwardActivation[] = [
  'gelu', 'gelu_new', 'relu', 'relu6', 'elu', 'selu', 'swish', 'silu', 'mish', 'tanh', 'sigmoid', 'softplus', 'linear',
];

/** The tfjs activation class name of each accepted name. */
const TFJS_NAME: Readonly<Record<FeedForwardActivation, string>> = {
  gelu: 'gelu', gelu_new: 'gelu_new', relu: 'relu', relu6: 'relu6', elu: 'elu', selu: 'selu', swish: 'swish',
  silu: 'swish', mish: 'mish', tanh: 'tanh', sigmoid: 'sigmoid', softplus: 'softplus', linear: 'linear',
};

/**
 * Checks an activation name against {@link FEED_FORWARD_ACTIVATIONS}; throws `InvalidArgumentError`
 * naming `argument` (e.g. `Expected activation to be one of 'gelu', ..., but got 'gelu2'.`).
 *
 * @example
 * ```ts
 * assertActivation('activation', 'silu', 'MoE'); // 'silu'
 * ```
 */
export function assertActivation(argument: string, value: unknown, context?: string): FeedForwardActivation {
  // tfjs's model loader camel-cases string config values: a saved 'gelu_new' comes back as 'geluNew'.
  return assertOneOf(argument, value === 'geluNew' ? 'gelu_new' : value, FEED_FORWARD_ACTIVATIONS, context);
}

/**
 * The element-wise function of an activation name, computed by tfjs's own activation classes.
 *
 * @param name one of {@link FEED_FORWARD_ACTIVATIONS}
 * @returns a function `<float32>[...] -> <float32>[...]` of the same shape
 *
 * @example
 * ```ts
 * activationFunction('silu')(tf.tensor1d([0, 1])).print(); // [0, 0.7311]
 * ```
 */
export function activationFunction(name: FeedForwardActivation): (x: tf.Tensor) => tf.Tensor {
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[TFJS_NAME[assertActivation('activation', name)]];
  const instance = new (entry[0] as unknown as new () => {apply(x: tf.Tensor): tf.Tensor})();
  return (x) => instance.apply(x);
}
