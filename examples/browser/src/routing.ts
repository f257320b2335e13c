/**
 * Reads out the routing of every MoE layer of a model for a batch of images: which expert each
 * patch token went to, and how many tokens each expert took. It runs the model up to the input of
 * each MoE layer and asks that layer for its own per-token routing (`MoE.inspect`: the same
 * grouping, capacity and routing as the layer's inference call).
 */
import * as tf from '@tensorflow/tfjs';
import {moeLayers, prefixTokens, type MoE} from '@tfjs-moe/models';

/** The routing of one MoE layer for one image. */
export interface LayerRouting {
  /** The MoE layer's name. */
  layer: string;
  numExperts: number;
  /** Expert of each patch token in row-major patch order (largest combine weight), -1 for a dropped token. */
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

/** Runs a model's MoE routing on images; see the module comment. */
export class RoutingProbe {
  readonly layers: MoE[];
  /** Tokens before the patches in the encoder's sequence (1 with a class token). */
  readonly prefix: number;
  private readonly upTo?: tf.LayersModel;

  constructor(readonly model: tf.LayersModel) {
    this.layers = moeLayers(model);
    this.prefix = prefixTokens(model);
    if (this.layers.length) {
      this.upTo = tf.model({
        inputs: model.inputs,
        outputs: this.layers.map((l) => (Array.isArray(l.input) ? l.input[0] : l.input)),
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
      const routing = layer.inspect(inputs[li]);
      const [experts, mask] = await Promise.all([
        routing.expertIndices.array() as Promise<number[][][]>,
        routing.dispatchMask.array() as Promise<number[][][]>,
      ]);
      routing.dispose();
      for (let i = 0; i < n; i++) {
        const main = experts[i].map((row) => row[0]);
        const all = mask[i].map((row) => row.flatMap((m, e) => (m > 0 ? [e] : [])));
        const load = Array.from({length: layer.numExperts}, (_, e) => mask[i].reduce((s, row) => s + (row[e] > 0 ? 1 : 0), 0));
        out[i].push({
          layer: layer.name,
          numExperts: layer.numExperts,
          expertOfPatch: main.slice(this.prefix),
          expertOfClassToken: this.prefix > 0 ? main[0] : undefined,
          load,
          expertsOfToken: all,
        });
      }
    }
    tf.dispose(inputs);
    return out;
  }
}
