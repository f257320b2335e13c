/**
 * The MoE layer's feed-forward weights as variables: one set of stacked expert FFNs (routed,
 * shared or residual) created with per-expert initializers, read for the forward pass, and the
 * dense paths that run on every token (the residual expert's mixture and the shared experts).
 */
import * as tf from '@tensorflow/tfjs';
import type {Initializer} from '@tensorflow/tfjs-layers/dist/initializers';
import {asPerExpert} from './expert-initializer';
import {expertFeedForward, type ExpertMatMul, type FeedForwardWeights} from './experts';

/** Weights of one set of feed-forward networks (routed, shared or residual): `[n, d, h]`, `[n, h]`, `[n, h, d]`, `[n, d]`. */
export interface FeedForwardVariables {
  kernelIn: tf.LayerVariable;
  biasIn?: tf.LayerVariable;
  kernelGate?: tf.LayerVariable;
  biasGate?: tf.LayerVariable;
  kernelOut: tf.LayerVariable;
  biasOut?: tf.LayerVariable;
}

/** The residual expert (Residual-MoE): one FFN and the mixing coefficients `coefKernel <float32>[1, d, 2]`, `coefBias <float32>[2]`. */
export type ResidualExpertVariables = FeedForwardVariables & {coefKernel: tf.LayerVariable; coefBias: tf.LayerVariable};

/** Creates a weight of the layer (its `addWeight` with dtype float32). */
export type AddWeight = (name: string, shape: number[], initializer: Initializer) => tf.LayerVariable;

/**
 * Adds one set of `n` stacked FFNs `d -> h -> d`, named `<prefix>kernel_in`, `<prefix>bias_in`,
 * `<prefix>kernel_out`, `<prefix>bias_out` (and `kernel_gate` / `bias_gate` when gated). Kernels
 * draw one independent initialization per expert (`asPerExpert(kernelInitializer, salt + i)`).
 *
 * @example
 * ```ts
 * const w = addFeedForwardWeights((n, s, i) => layer.addWeight(n, s, 'float32', i), '', 8, 64, 256, 0, layer);
 * ```
 */
export function addFeedForwardWeights(
  addWeight: AddWeight, prefix: string, n: number, d: number, h: number, salt: number,
  settings: {kernelInitializer: Initializer; biasInitializer: Initializer; useBias: boolean; gated: boolean},
): FeedForwardVariables {
  const kernel = (name: string, shape: number[], s: number) => addWeight(`${prefix}${name}`, shape, asPerExpert(settings.kernelInitializer, s));
  const bias = (name: string, shape: number[]) => (settings.useBias ? addWeight(`${prefix}${name}`, shape, settings.biasInitializer) : undefined);
  const w: FeedForwardVariables = {
    kernelIn: kernel('kernel_in', [n, d, h], salt),
    biasIn: bias('bias_in', [n, h]),
    kernelOut: kernel('kernel_out', [n, h, d], salt + 1),
    biasOut: bias('bias_out', [n, d]),
  };
  if (settings.gated) {
    w.kernelGate = kernel('kernel_gate', [n, d, h], salt + 2);
    w.biasGate = bias('bias_gate', [n, h]);
  }
  return w;
}

/**
 * The current values of a set of FFN variables, for `expertFeedForward`.
 *
 * @example
 * ```ts
 * const y = expertFeedForward(xe, readFeedForward(w), gelu, 'batched');
 * ```
 */
export function readFeedForward(w: FeedForwardVariables): FeedForwardWeights {
  const read = <T extends tf.Tensor>(v: tf.LayerVariable | undefined) => (v ? (v.read() as T) : undefined);
  return {
    kernelIn: read<tf.Tensor3D>(w.kernelIn)!, biasIn: read(w.biasIn), kernelGate: read(w.kernelGate),
    biasGate: read(w.biasGate), kernelOut: read<tf.Tensor3D>(w.kernelOut)!, biasOut: read(w.biasOut),
  };
}

/**
 * The dense paths on every token: `routed <float32>[N, d]` (the routed experts' output) mixed
 * with the residual expert by its per-token softmax coefficients, plus the shared experts' sum,
 * on the inputs `flat <float32>[N, d]`. Returns `<float32>[N, d]`.
 *
 * @example
 * ```ts
 * const y = denseExpertPaths(routed, flat, residual, shared, gelu, 'batched');
 * ```
 */
export function denseExpertPaths(
  routed: tf.Tensor2D, flat: tf.Tensor2D, residual: ResidualExpertVariables | null, shared: FeedForwardVariables | null,
  activation: (x: tf.Tensor) => tf.Tensor, expertMatMul: ExpertMatMul,
): tf.Tensor2D {
  let y: tf.Tensor = routed;
  const N = flat.shape[0];
  const run = (w: FeedForwardVariables) => {
    const n = w.kernelIn.shape[0] as number;
    const xe = tf.tile(tf.expandDims(flat, 0), [n, 1, 1]) as tf.Tensor3D;
    return tf.sum(expertFeedForward(xe, readFeedForward(w), activation, expertMatMul), 0) as tf.Tensor2D;
  };
  if (residual) {
    const coef = tf.softmax(tf.add(tf.matMul(flat, tf.reshape(residual.coefKernel.read(), [-1, 2])), residual.coefBias.read()));
    const [c0, c1] = tf.split(coef, 2, 1);
    y = tf.add(tf.mul(y, c0), tf.mul(run(residual), c1));
  }
  if (shared) y = tf.add(y, run(shared));
  return tf.reshape(y, [N, -1]) as tf.Tensor2D;
}
