/**
 * Writes a tfjs layers model as files that `tf.loadLayersModel(url)` reads: model.json and one
 * weights.bin, written to temporary names and renamed into place.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';

/** Saves `model` into `dir` (created if needed) as model.json + weights.bin. */
export async function saveModelFiles(model: tf.LayersModel, dir: string): Promise<void> {
  fs.mkdirSync(dir, {recursive: true});
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    const weights = Buffer.from(artifacts.weightData as ArrayBuffer);
    const json = {
      modelTopology: artifacts.modelTopology,
      format: 'layers-model',
      generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
      convertedBy: null,
      weightsManifest: [{paths: ['weights.bin'], weights: artifacts.weightSpecs}],
    };
    const write = (name: string, data: string | Buffer): void => {
      const tmp = path.join(dir, `.${name}.tmp`);
      fs.writeFileSync(tmp, data);
      fs.renameSync(tmp, path.join(dir, name));
    };
    write('weights.bin', weights);
    write('model.json', JSON.stringify(json));
    return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
  }));
}
