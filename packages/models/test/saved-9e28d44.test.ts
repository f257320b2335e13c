/**
 * Backward compatibility: models saved by the code of commit 9e28d44 (a V-MoE with each router at
 * the settings users wrote then, and a bare `moe` layer) load with today's `tf.loadLayersModel`
 * and predict what that code predicted, within float32 tolerance. The files and the predicted
 * outputs were written by that commit's code (`fixtures/saved-9e28d44/generate.ts`, run in a
 * checkout of it), never by today's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {describeBackends, expectAllClose} from '../../router/test/helpers/backends';
import '../src';

const DIR = path.join(__dirname, 'fixtures', 'saved-9e28d44');

interface SavedIO {
  commit: string;
  backend: string;
  models: Record<string, {inputShape: number[]; input: number[]; outputShape: number[]; output: number[]}>;
}

const io = JSON.parse(fs.readFileSync(path.join(DIR, 'io.json'), 'utf8')) as SavedIO;

/** Reads `<name>/model.json` and `<name>/weights.bin` as a file handler would. */
async function load(name: string): Promise<tf.LayersModel> {
  const modelJson = JSON.parse(fs.readFileSync(path.join(DIR, name, 'model.json'), 'utf8'));
  const bin = fs.readFileSync(path.join(DIR, name, 'weights.bin'));
  const weightData = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength);
  return tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: modelJson.modelTopology,
    weightSpecs: modelJson.weightsManifest[0].weights,
    weightData,
  }));
}

describeBackends('models saved by commit 9e28d44', (backend) => {
  it('the fixture was written by that commit on cpu', () => {
    expect(io.commit).toBe('9e28d44');
    expect(io.backend).toBe('cpu');
    expect(Object.keys(io.models).sort()).toEqual(['bare-moe', 'bare-moe-sparse-ot-flags', 'bare-moe-sparse-ot-paper', 'vmoe-expert-choice', 'vmoe-sinkhorn', 'vmoe-sparse-ot', 'vmoe-topk2']);
  });

  it.each(Object.keys(io.models))('%s loads and predicts as it did', async (name) => {
    expect(tf.getBackend()).toBe(backend);
    const {inputShape, input, outputShape, output} = io.models[name];
    const model = await load(name);
    const x = tf.tensor(input, inputShape, 'float32');
    const y = model.predict(x) as tf.Tensor;
    expect(y.shape).toEqual(outputShape);
    expectAllClose(await y.data(), output, 1e-5, 1e-5);
    tf.dispose([x, y]);
    model.dispose();
  });
});
