/**
 * Reads out the routing of every MoE layer of a model for a batch of images: which expert each
 * patch token went to, and how many tokens each expert took. It runs the model up to the input of
 * each MoE layer and asks that layer's router for the same routing the layer computes at
 * inference (per-example groups, the layer's eval capacity).
 */
import * as tf from '@tensorflow/tfjs';

/** The routing of one MoE layer for one image. */
export interface LayerRouting {
  /** The MoE layer's name. */
  layer: string;
  numExperts: number;
  /** Expert of each patch token in row-major patch order, -1 for a dropped token. */
  expertOfPatch: number[];
  /** Expert of the class token, if the model has one (-1 if dropped). */
  expertOfClassToken?: number;
  /** Tokens (patches and class token) taken by each expert. */
  load: number[];
  /**
   * Every expert holding each token (class token first if there is one, then the patches), in
   * increasing order: a column-sparse OT plan may give a token to several experts.
   */
  expertsOfToken: number[][];
}

/** The parts of an MoE layer the probe uses (duck-typed, so any MoE layer class works). */
interface MoELike extends tf.layers.Layer {
  capacityFor?(groupSize: number, training: boolean): number;
  router: {
    numExperts: number;
    computeCapacity(groupSize: number, capacityFactor: number): number;
    route(tokens: tf.Tensor3D, options: {training: boolean; capacity: number}): {
      expertIndices: tf.Tensor3D;
      combineWeights: tf.Tensor3D;
      dispose(): void;
    };
  };
}

/** True for layers that route tokens to experts. */
export function isMoELayer(layer: tf.layers.Layer): layer is MoELike {
  const r = (layer as Partial<MoELike>).router;
  return !!r && typeof r.route === 'function' && typeof r.computeCapacity === 'function';
}

/**
 * Per-token expert of one group from `expertIndices`/`combineWeights` `[experts, capacity]`:
 * a token held by several experts is shown with the one of largest weight.
 */
export function expertOfTokens(indices: number[][], weights: number[][], tokens: number): {expert: number[]; load: number[]; all: number[][]} {
  const expert = new Array<number>(tokens).fill(-1);
  const all = Array.from({length: tokens}, () => [] as number[]);
  const best = new Array<number>(tokens).fill(-Infinity);
  const load = indices.map((slots) => slots.filter((t) => t >= 0).length);
  indices.forEach((slots, e) => slots.forEach((t, c) => {
    if (t >= 0 && t < tokens && !all[t].includes(e)) all[t].push(e);
    if (t >= 0 && t < tokens && weights[e][c] > best[t]) {
      best[t] = weights[e][c];
      expert[t] = e;
    }
  }));
  all.forEach((list) => list.sort((a, b) => a - b));
  return {expert, load, all};
}

/** Runs a model's MoE routing on images; see the module comment. */
export class RoutingProbe {
  readonly layers: MoELike[];
  private readonly upTo?: tf.LayersModel;

  constructor(readonly model: tf.LayersModel) {
    this.layers = model.layers.filter(isMoELayer);
    if (this.layers.length) {
      this.upTo = tf.model({
        inputs: model.inputs,
        outputs: this.layers.map((l) => l.input as tf.SymbolicTensor),
      });
    }
  }

  /** Routing of each image (outer) in each MoE layer (inner), for `<float32>[n, h, w, c]`. */
  async route(x: tf.Tensor4D): Promise<LayerRouting[][]> {
    const n = x.shape[0];
    const out: LayerRouting[][] = Array.from({length: n}, () => []);
    if (!this.upTo) return out;
    const inputs = tf.tidy(() => {
      const r = this.upTo!.predict(x);
      return Array.isArray(r) ? r : [r];
    }) as tf.Tensor3D[];
    for (let li = 0; li < this.layers.length; li++) {
      const layer = this.layers[li];
      const tokens = inputs[li]; // <float32>[n, tokens, d]: one group per image
      const groupSize = tokens.shape[1];
      // The layer's own inference capacity (eval capacity factor, or dropless).
      const capacity = typeof layer.capacityFor === 'function' ? layer.capacityFor(groupSize, false)
        : layer.router.computeCapacity(groupSize, Number((layer.getConfig() as {evalCapacityFactor?: number}).evalCapacityFactor ?? 1));
      const result = layer.router.route(tokens, {training: false, capacity});
      const [idx, w] = await Promise.all([result.expertIndices.array(), result.combineWeights.array()]);
      result.dispose();
      const numPatches = Math.round(Math.sqrt(groupSize)) ** 2 === groupSize ? groupSize : groupSize - 1;
      const hasClassToken = numPatches !== groupSize;
      for (let i = 0; i < n; i++) {
        const {expert, load, all} = expertOfTokens(idx[i], w[i], groupSize);
        out[i].push({
          layer: layer.name,
          numExperts: layer.router.numExperts,
          expertOfPatch: hasClassToken ? expert.slice(1) : expert,
          expertOfClassToken: hasClassToken ? expert[0] : undefined,
          load,
          expertsOfToken: all,
        });
      }
    }
    tf.dispose(inputs);
    return out;
  }
}
