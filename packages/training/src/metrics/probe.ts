/**
 * Per-token routing of a model's MoE layers on given images, for measurements that the layers'
 * aggregate metrics cannot give: expert specialization (class x expert counts), router entropy,
 * and the experts-per-token histogram.
 *
 * How: one extra model maps the images to the input of every MoE layer; each layer's own
 * `MoE.inspect` then routes those tokens exactly as the layer's inference call groups, routes and
 * ungroups them (inference routing never depends on earlier calls, so this reproduces the layer's
 * own routing; checked in tests against the layer's metrics).
 */
import * as tf from '@tensorflow/tfjs';
import {moeLayers, type MoE} from '@tfjs-moe/router';
import {measureRouting, type LoadBalanceStats} from './load-balance';

/**
 * A model's probe: a model with the same inputs whose outputs are the original model's outputs
 * followed by the inputs of every MoE layer (one forward pass gives both).
 */
export interface RoutingProbe {
  /** The MoE layers, in order of the extra outputs. */
  layers: MoE[];
  /** How many extra outputs each layer has: 1 (its tokens), or 2 (its tokens and its token mask). */
  inputCounts: number[];
  /** `inputs -> [...model outputs, ...MoE layer inputs]`, sharing the model's layers and weights. */
  model: tf.LayersModel;
}

const probeCache = new WeakMap<tf.LayersModel, RoutingProbe | null>();

/**
 * The {@link RoutingProbe} of `model` (cached per model), or null when the model has no MoE
 * layer or is not a functional graph.
 *
 * @example
 * ```ts
 * const probe = routingProbe(model);
 * const [logits, ...moeInputs] = probe!.model.predict(xs) as tf.Tensor[];
 * ```
 */
export function routingProbe(model: tf.LayersModel): RoutingProbe | null {
  if (probeCache.has(model)) return probeCache.get(model)!;
  const layers = moeLayers(model);
  let entry: RoutingProbe | null = null;
  if (layers.length > 0) {
    try {
      const inputs = layers.map((l) => (Array.isArray(l.input) ? l.input.slice(0, 2) : [l.input]));
      entry = {
        layers,
        inputCounts: inputs.map((list) => list.length),
        model: tf.model({inputs: model.inputs, outputs: [...model.outputs, ...inputs.flat()]}),
      };
    } catch {
      entry = null; // not a functional graph (e.g. a layer used twice): per-token probing is unavailable
    }
  }
  probeCache.set(model, entry);
  return entry;
}

/**
 * Routes `images` through every MoE layer of `model` (inference mode) and measures each layer's
 * load per token, with class x expert counts from `labels`. Returns `{}` for a model without
 * MoE layers. Reads back once per layer.
 *
 * @param images `<float32>[batch, h, w, c]`
 * @param labels `<int32>[batch]`, class of each image
 *
 * @example
 * ```ts
 * const stats = probeRouting(model, xs, ys, 10);
 * stats['block1_moe'].classExpert; // [10][experts] counts
 * ```
 */
export function probeRouting(model: tf.LayersModel, images: tf.Tensor, labels: tf.Tensor1D, numClasses: number): Record<string, LoadBalanceStats> {
  const probe = routingProbe(model);
  if (!probe) return {};
  const outs = probe.model.predict(images) as tf.Tensor[];
  try {
    return measureProbe(probe, outs.slice(model.outputs.length), labels, numClasses);
  } finally {
    tf.dispose(outs);
  }
}

/**
 * Measures the routing of each probe layer given that layer's inputs (from the probe model's
 * extra outputs) and the images' labels, through `MoE.inspect`. The caller keeps ownership of
 * `layerInputs`.
 *
 * @example
 * ```ts
 * const stats = measureProbe(probe, moeInputs, ys, 10); // per layer, with classExpert
 * ```
 */
export function measureProbe(probe: RoutingProbe, layerInputs: tf.Tensor[], labels: tf.Tensor1D, numClasses: number): Record<string, LoadBalanceStats> {
  const out: Record<string, LoadBalanceStats> = {};
  const y = labels.dataSync();
  let cursor = 0;
  probe.layers.forEach((layer, i) => {
    const x = layerInputs[cursor];
    const mask = probe.inputCounts[i] > 1 ? layerInputs[cursor + 1] : undefined;
    cursor += probe.inputCounts[i];
    const tokens = x.shape[x.rank - 2] as number;
    const r = layer.inspect(x, {mask});
    const g = r.grouped;
    const tokenIndex = g.tokenIndex.dataSync();
    const real = g.mask ? g.mask.dataSync() : undefined;
    const gates = tf.tidy(() => tf.softmax(g.routerLogits).dataSync());
    const stats = measureRouting({
      tokenIndices: g.tokenIndices.dataSync(),
      shape: g.tokenIndices.shape as [number, number, number],
      groupSize: g.groupSize,
      gates,
      tokenMask: Uint8Array.from(tokenIndex, (t, j) => (t >= 0 && (real === undefined || real[j] > 0) ? 1 : 0)),
      tokenClasses: Int32Array.from(tokenIndex, (t) => (t >= 0 ? y[Math.floor(t / tokens)] : 0)),
      numClasses,
    });
    for (const [key, name] of [['otMarginalError', 'meanRowViolation'], ['solverIterations', 'solverIterations'], ['suboptimality', 'suboptimality']] as const) {
      const t = r.metrics[name];
      if (t && t.size === 1) stats[key] = t.dataSync()[0];
    }
    r.dispose();
    out[layer.name] = stats;
  });
  return out;
}
