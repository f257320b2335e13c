/**
 * A model imported from a vmoe checkpoint (`tfjs-moe import-vmoe`) passes the page's own
 * model.json validation (`validateTopology`, run by `loadModelChecked` before tfjs builds the
 * model) and loads with `tf.loadLayersModel` (strict weights) with only `@tfjs-moe/models`
 * registering the classes, giving the logits of the float64 numpy reference
 * (packages/training/test/vmoe/fixtures).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '@tfjs-moe/models';
import {fileHandler, importVMoEToFolder} from '@tfjs-moe/training';
import {validateTopology} from '../src/model-loader';

const FIXTURES = path.join(__dirname, '..', '..', '..', 'packages', 'training', 'test', 'vmoe', 'fixtures');

test('an imported V-MoE passes the browser example\'s model check and predicts the reference logits', async () => {
  await tf.setBackend('cpu');
  expect(tf.getBackend()).toBe('cpu');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmoe-browser-'));
  const imported = await importVMoEToFolder(path.join(FIXTURES, 'v1', 'ckpt'), path.join(FIXTURES, 'configs', 'ot-paper.json'), dir);
  imported.model.dispose();
  // The page's own check of model.json, then tfjs's strict load of the same artifacts.
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  expect(validateTopology(json.modelTopology)).toEqual([]);
  const model = await tf.loadLayersModel(fileHandler(dir), {strict: true});
  const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'reference.json'), 'utf8'));
  const x = tf.tensor4d(ref.images.data, ref.images.shape);
  const got = (model.predict(x) as tf.Tensor).arraySync() as number[][];
  const want = (ref.logits['ot-paper'] as number[][]).flat();
  const scale = Math.max(...want.map(Math.abs));
  expect(Math.max(...got.flat().map((v, i) => Math.abs(v - want[i]))) / scale).toBeLessThan(1e-4);
  model.dispose();
  x.dispose();
});
