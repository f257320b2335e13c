/**
 * Shared pieces of the vmoe bridge tests: fixture paths, the reference file written by
 * fixtures/generate.py, and the relative logit error.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';

export const FIXTURES = path.join(__dirname, 'fixtures');

interface RefImages {
  shape: number[];
  data: number[];
}

/** reference.json: images and float64 logits of the numpy forward pass, per routing setting. */
export interface Reference {
  seed: number;
  images: RefImages;
  logits: Record<string, number[][]>;
  gap: {images: RefImages; logits: number[][]};
  vit_jax: {images: RefImages; logits: number[][]};
}

export const reference: Reference = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'reference.json'), 'utf8'));

/** Every checkpoint file (or prefix) of the main model, in each format. */
export const MAIN_CHECKPOINTS = ['v1/ckpt', 'legacy/ckpt', 'v1_train_state/ckpt', 'params.msgpack', 'params.npz'];

export const fixture = (...parts: string[]) => path.join(FIXTURES, ...parts);
export const configPath = (setting: string) => fixture('configs', `${setting}.json`);
export const readConfig = (setting: string): Record<string, unknown> => JSON.parse(fs.readFileSync(configPath(setting), 'utf8'));

export function images(ref: RefImages): tf.Tensor4D {
  return tf.tensor4d(ref.data, ref.shape as [number, number, number, number], 'float32');
}

/** max |got - want| / max |want|: the error relative to the largest reference logit. */
export function relativeError(got: number[][], want: number[][]): number {
  const w = want.flat();
  const scale = Math.max(...w.map(Math.abs));
  return Math.max(...got.flat().map((v, i) => Math.abs(v - w[i]))) / scale;
}

export function predict(model: tf.LayersModel, x: tf.Tensor): number[][] {
  const y = model.predict(x) as tf.Tensor;
  const out = y.arraySync() as number[][];
  y.dispose();
  return out;
}

export function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-moe-vmoe-'));
}

/** Copies a fixture folder (a partitioned checkpoint) into a fresh temporary folder. */
export function copyFixtureDir(name: string): string {
  const dir = tmpDir();
  for (const f of fs.readdirSync(fixture(name))) fs.copyFileSync(fixture(name, f), path.join(dir, f));
  return dir;
}
