/** Test helpers of the models package. */
import * as tf from '@tensorflow/tfjs';

/** Small deterministic PRNG (mulberry32), so fixtures do not depend on tfjs's random ops. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A tensor of uniform values in [-scale, scale) from {@link rng}. */
export function uniformTensor(shape: number[], seed: number, scale = 1): tf.Tensor {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({length: n}, () => (2 * r() - 1) * scale), shape);
}

/**
 * Overwrites every weight of `model` with uniform values in [-scale, scale), so that tests do not
 * pass by luck of zero biases, unit LayerNorm gains or zero class tokens.
 */
export function randomizeWeights(model: tf.LayersModel, seed: number, scale = 0.3): void {
  model.layers.forEach((layer, li) => {
    const ws = layer.getWeights();
    if (ws.length === 0) return;
    const fresh = ws.map((w, wi) => uniformTensor(w.shape, seed * 1000 + li * 10 + wi, scale));
    layer.setWeights(fresh);
    fresh.forEach((t) => t.dispose());
  });
}

/** Saves `model` to memory and loads it back through `tf.loadLayersModel`. */
export async function roundTrip(model: tf.LayersModel): Promise<tf.LayersModel> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
  }));
  // A JSON string round trip too, as a file on disk would make it.
  const topology = JSON.parse(JSON.stringify(artifacts!.modelTopology));
  return tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: topology,
    weightSpecs: artifacts!.weightSpecs,
    weightData: artifacts!.weightData,
  }));
}
