/**
 * Per-token routing of a trained model for the report: what varies under a router that balances
 * the load by construction (sparse-OT), where per-expert load and class x expert shares are flat.
 * Computed with `MoE.inspect` on the model's own grouping, in inference mode.
 */
import * as tf from '@tensorflow/tfjs';
import type {ImageDataset} from '../data/dataset';
import {routingProbe} from '../metrics/probe';

/** Routing of one MoE layer over a set of images. */
export interface RoutingDetails {
  /** `gateByClass[c][e]`: mean router probability of expert e over the tokens of class-c images. */
  gateByClass: number[][];
  /** `positionExpert[t][e]`: fraction of images whose token at position t went to expert e (t = 0 is the first token). */
  positionExpert: number[][];
  /** `combineMass[e]`: share of the total combine weight that expert e carries. */
  combineMass: number[];
  /** `served[k]`: share of tokens served by k experts, k = 0, 1, 2+ (three entries). */
  served: number[];
  /** Images measured. */
  images: number;
}

/**
 * Routes up to `maxImages` images of `data` through every MoE layer of `model` and returns each
 * layer's {@link RoutingDetails}; `{}` for a model without MoE layers. Frees what it makes.
 *
 * @example
 * ```ts
 * const details = routingDetails(model, split.test, 256);
 * details.block1_moe.served; // e.g. [0.02, 0.9, 0.08]
 * ```
 */
export function routingDetails(model: tf.LayersModel, data: ImageDataset, maxImages = 256): Record<string, RoutingDetails> {
  const probe = routingProbe(model);
  if (!probe) return {};
  const n = Math.min(maxImages, data.labels.length);
  const per = data.height * data.width * data.channels;
  const labels = data.labels.subarray(0, n);
  const images = tf.tensor4d(data.images.subarray(0, n * per), [n, data.height, data.width, data.channels]);
  const outs = probe.model.predict(images) as tf.Tensor[];
  images.dispose();
  const out: Record<string, RoutingDetails> = {};
  try {
    let cursor = model.outputs.length;
    probe.layers.forEach((layer, i) => {
      const x = outs[cursor];
      const mask = probe.inputCounts[i] > 1 ? outs[cursor + 1] : undefined;
      cursor += probe.inputCounts[i];
      const r = layer.inspect(x, {mask});
      try {
        const [b, tokens, experts] = r.gates.shape.slice(-3) as number[];
        const gates = r.gates.dataSync();
        const dispatched = r.dispatchMask.dataSync();
        const combine = r.combineWeights.dataSync();
        const gateByClass = Array.from({length: data.numClasses}, () => new Array<number>(experts).fill(0));
        const classTokens = new Array<number>(data.numClasses).fill(0);
        const positionExpert = Array.from({length: tokens}, () => new Array<number>(experts).fill(0));
        const combineMass = new Array<number>(experts).fill(0);
        const served = [0, 0, 0];
        for (let img = 0; img < b; img++) {
          const c = labels[img];
          for (let t = 0; t < tokens; t++) {
            const row = (img * tokens + t) * experts;
            let k = 0;
            for (let e = 0; e < experts; e++) {
              gateByClass[c][e] += gates[row + e];
              positionExpert[t][e] += dispatched[row + e] > 0 ? 1 / b : 0;
              combineMass[e] += combine[row + e];
              if (dispatched[row + e] > 0) k++;
            }
            classTokens[c]++;
            served[Math.min(k, 2)]++;
          }
        }
        gateByClass.forEach((row, c) => row.forEach((_, e) => (row[e] = classTokens[c] ? row[e] / classTokens[c] : 0)));
        const mass = combineMass.reduce((a, v) => a + v, 0);
        out[layer.name] = {
          gateByClass,
          positionExpert,
          combineMass: combineMass.map((v) => (mass ? v / mass : 0)),
          served: served.map((v) => v / (b * tokens)),
          images: b,
        };
      } finally {
        r.dispose();
      }
    });
  } finally {
    tf.dispose(outs);
  }
  return out;
}
