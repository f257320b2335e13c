/**
 * Per-token routing of a model's MoE layers on given images, for measurements that the layers'
 * aggregate metrics cannot give: expert specialization (class x expert counts), router entropy,
 * and the experts-per-token histogram.
 *
 * How: one extra model maps the images to the input of every MoE layer; each layer's router is
 * then called on those tokens, grouped as the layer groups them (`per-example` or `flat`, padded
 * and masked per the policy documented in `@tfjs-moe/router`'s `grouping.ts`), in inference mode
 * at the layer's inference capacity. Inference routing never depends on earlier calls, so this
 * reproduces the layer's own routing exactly (checked in tests against the layer's metrics).
 */
import * as tf from '@tensorflow/tfjs';
import {measureRouting, type LoadBalanceStats} from './load-balance';
import {findMoELayers} from './moe-layers';

/** What the probe needs from an MoE layer (`@tfjs-moe/router`'s `MoE`): its grouping, capacity and router. */
export interface ProbeableMoE {
  name: string;
  groupingMode: 'per-example' | 'flat';
  groupSize: number | undefined;
  capacityFor(groupSize: number, training: boolean): number;
  router: {
    route(tokens: tf.Tensor3D, options: {mask?: tf.Tensor2D; training: boolean; capacity: number}): {
      expertIndices: tf.Tensor3D;
      metrics: Record<string, tf.Tensor>;
      dispose(): void;
    };
    kernel?: tf.LayerVariable | null;
  };
  input: tf.SymbolicTensor | tf.SymbolicTensor[];
}

function isProbeable(layer: unknown): layer is ProbeableMoE {
  const l = layer as Partial<ProbeableMoE>;
  return typeof l.capacityFor === 'function' && typeof l.router?.route === 'function' && typeof l.groupingMode === 'string';
}

/**
 * A model's probe: a model with the same inputs whose outputs are the original model's output
 * followed by the input of every probeable MoE layer (one forward pass gives both).
 */
export interface RoutingProbe {
  /** The MoE layers, in order of the extra outputs. */
  layers: ProbeableMoE[];
  /** `inputs -> [model output, ...MoE layer inputs]`, sharing the model's layers and weights. */
  model: tf.LayersModel;
}

const probeCache = new WeakMap<tf.LayersModel, RoutingProbe | null>();

/**
 * The {@link RoutingProbe} of `model` (cached per model), or null when the model has no
 * probeable MoE layer or is not a functional graph.
 *
 * @example
 * ```ts
 * const probe = routingProbe(model);
 * const [logits, ...moeInputs] = probe!.model.predict(xs) as tf.Tensor[];
 * ```
 */
export function routingProbe(model: tf.LayersModel): RoutingProbe | null {
  if (probeCache.has(model)) return probeCache.get(model)!;
  const layers = findMoELayers(model).filter(isProbeable) as unknown as ProbeableMoE[];
  let entry: RoutingProbe | null = null;
  if (layers.length > 0) {
    try {
      const outputs = layers.map((l) => (Array.isArray(l.input) ? l.input[0] : l.input));
      entry = {layers, model: tf.model({inputs: model.inputs, outputs: [...model.outputs, ...outputs]})};
    } catch {
      entry = null; // not a functional graph (e.g. a layer used twice): per-token probing is unavailable
    }
  }
  probeCache.set(model, entry);
  return entry;
}

/** Group-to-example bookkeeping of one grouping: which example and which real token each slot is. */
function groupLayout(batch: number, tokens: number, mode: 'per-example' | 'flat', groupSize: number | undefined) {
  const S = Math.max(1, Math.min(groupSize ?? tokens, mode === 'per-example' ? tokens : batch * tokens));
  if (mode === 'per-example') {
    const n = Math.ceil(tokens / S);
    const G = batch * n;
    const example = new Int32Array(G * S);
    const real = new Uint8Array(G * S);
    for (let g = 0; g < G; g++) {
      for (let t = 0; t < S; t++) {
        example[g * S + t] = Math.floor(g / n);
        real[g * S + t] = (g % n) * S + t < tokens ? 1 : 0;
      }
    }
    return {S, G, example, real, pad: n * S - tokens};
  }
  const total = batch * tokens;
  const G = Math.ceil(total / S);
  const example = new Int32Array(G * S);
  const real = new Uint8Array(G * S);
  for (let i = 0; i < G * S; i++) {
    example[i] = Math.min(batch - 1, Math.floor(i / tokens));
    real[i] = i < total ? 1 : 0;
  }
  return {S, G, example, real, pad: G * S - total};
}

function groupTensor(x: tf.Tensor3D, mode: 'per-example' | 'flat', S: number, G: number, pad: number): tf.Tensor3D {
  return tf.tidy(() => {
    const [batch, tokens, d] = x.shape;
    if (mode === 'per-example') {
      const xp = pad > 0 ? tf.pad(x, [[0, 0], [0, pad], [0, 0]]) : x;
      return tf.reshape(xp, [G, S, d]) as tf.Tensor3D;
    }
    let flat: tf.Tensor = tf.reshape(x, [batch * tokens, d]);
    if (pad > 0) flat = tf.pad(flat, [[0, pad], [0, 0]]);
    return tf.reshape(flat, [G, S, d]) as tf.Tensor3D;
  });
}

/**
 * Routes `images` through every MoE layer of `model` (inference mode) and measures each layer's
 * load per token, with class x expert counts from `labels`. Returns `{}` for a model without
 * probeable MoE layers. Reads back once per layer.
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
 * extra outputs) and the images' labels. The caller keeps ownership of `layerInputs`.
 *
 * @example
 * ```ts
 * const stats = measureProbe(probe, moeInputs, ys, 10); // per layer, with classExpert
 * ```
 */
export function measureProbe(probe: RoutingProbe, layerInputs: tf.Tensor[], labels: tf.Tensor1D, numClasses: number): Record<string, LoadBalanceStats> {
  const out: Record<string, LoadBalanceStats> = {};
  const y = labels.dataSync();
  probe.layers.forEach((layer, i) => {
    const x = layerInputs[i] as tf.Tensor3D;
    const [batch, tokens] = x.shape;
    const {S, G, example, real, pad} = groupLayout(batch, tokens, layer.groupingMode, layer.groupSize);
    const grouped = groupTensor(x, layer.groupingMode, S, G, pad);
    const mask = pad > 0 ? tf.tensor2d(Float32Array.from(real), [G, S]) : undefined;
    const r = layer.router.route(grouped, {mask, training: false, capacity: layer.capacityFor(S, false)});
    const kernel = layer.router.kernel?.read();
    const gates = kernel
      ? tf.tidy(() => tf.softmax(tf.matMul(tf.reshape(grouped, [G * S, -1]), kernel as tf.Tensor2D)))
      : undefined;
    const stats = measureRouting({
      expertIndices: r.expertIndices.dataSync(),
      shape: r.expertIndices.shape as [number, number, number],
      groupSize: S,
      gates: gates?.dataSync(),
      tokenMask: real,
      tokenClasses: Int32Array.from(example, (e) => y[e]),
      numClasses,
    });
    for (const [key, name] of [['otMarginalError', 'meanRowViolation'], ['solverIterations', 'solverIterations'], ['suboptimality', 'suboptimality']] as const) {
      const t = r.metrics[name];
      if (t && t.size === 1) stats[key] = t.dataSync()[0];
    }
    r.dispose();
    tf.dispose([grouped, ...(mask ? [mask] : []), ...(gates ? [gates] : [])]);
    out[layer.name] = stats;
  });
  return out;
}
