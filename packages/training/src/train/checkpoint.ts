/**
 * Training checkpoints on disk, written atomically.
 *
 * Layout of `dir` (the run's checkpoint folder):
 * - `ckpt-<step>/model.json`, `ckpt-<step>/weights.bin`: the model in the tfjs layers format
 *   (every weight, trainable or not, so router state kept in weights travels with it);
 * - `ckpt-<step>/optimizer.bin`: the optimizer's moments (float32, m then v, variable order);
 * - `ckpt-<step>/trainer.json`: step, optimizer step and moment shapes, run configuration and
 *   the history so far;
 * - `latest.json`: `{"checkpoint": "ckpt-<step>", "step": <step>}`, the pointer to the newest.
 *
 * A checkpoint folder is written under a temporary name and renamed into place; only then is
 * `latest.json` replaced (atomically, by rename). A failure at any point leaves `latest.json`
 * pointing at the previous, complete checkpoint.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError} from '@tfjs-moe/router';
import {artifactsToFiles, atomicWriteFile, atomicWriteFolder, nodeFileSystem, readArtifacts, type FileSystem} from '../io/file-io';

/** What a checkpoint holds besides the model. */
export interface CheckpointState<T = unknown> {
  /** Training steps completed. */
  step: number;
  /** Optimizer state: its step count and moments in variable order. */
  optimizer: {step: number; m: tf.Tensor[]; v: tf.Tensor[]};
  /** Any JSON-serializable trainer state (configuration, history, ...). */
  trainer: T;
}

/** A checkpoint read back: the model's artifacts and the {@link CheckpointState}. */
export interface LoadedCheckpoint<T = unknown> extends CheckpointState<T> {
  /** The model as tfjs artifacts (topology and weights), e.g. for `tf.loadLayersModel(tf.io.fromMemory(...))`. */
  artifacts: tf.io.ModelArtifacts;
  /** The folder it was read from. */
  path: string;
}

/**
 * The folder name of the checkpoint after `step` steps.
 *
 * @example
 * ```ts
 * checkpointName(100); // 'ckpt-00000100'
 * ```
 */
export function checkpointName(step: number): string {
  return `ckpt-${String(step).padStart(8, '0')}`;
}

/**
 * Captures a model's save artifacts in memory (model.save through a custom handler).
 *
 * @example
 * ```ts
 * const artifacts = await modelArtifacts(model); // topology, weight specs and weight data
 * ```
 */
export async function modelArtifacts(model: tf.LayersModel): Promise<tf.io.ModelArtifacts> {
  let captured: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      captured = a;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }),
  );
  return captured!;
}

/**
 * Writes a checkpoint of `model` and `state` into `dir` (see the module doc for the layout and
 * the atomicity argument), then removes all but the newest `keep` checkpoints.
 *
 * @example
 * ```ts
 * await writeCheckpoint('out/checkpoints', model, {step: 100, optimizer: opt.getState(), trainer: {seed: 0}});
 * ```
 */
export async function writeCheckpoint<T>(
  dir: string,
  model: tf.LayersModel,
  state: CheckpointState<T>,
  options: {keep?: number; fs?: FileSystem} = {},
): Promise<string> {
  const fs = options.fs ?? nodeFileSystem;
  const keep = options.keep ?? 2;
  const files = artifactsToFiles(await modelArtifacts(model));
  const moments = [...state.optimizer.m, ...state.optimizer.v];
  const total = moments.reduce((s, t) => s + t.size, 0);
  const bin = new Float32Array(total);
  let off = 0;
  for (const t of moments) {
    bin.set(await t.data() as Float32Array, off);
    off += t.size;
  }
  files['optimizer.bin'] = new Uint8Array(bin.buffer);
  files['trainer.json'] = JSON.stringify({
    step: state.step,
    optimizer: {step: state.optimizer.step, shapes: state.optimizer.m.map((t) => t.shape)},
    trainer: state.trainer,
  });
  const name = checkpointName(state.step);
  fs.mkdirSync(dir, {recursive: true});
  atomicWriteFolder(path.join(dir, name), files, fs);
  atomicWriteFile(path.join(dir, 'latest.json'), JSON.stringify({checkpoint: name, step: state.step}), fs);
  const all = fs.readdirSync(dir).filter((f) => /^ckpt-\d+$/.test(f)).sort();
  for (const old of all.slice(0, Math.max(0, all.length - keep))) {
    if (old !== name) fs.rmSync(path.join(dir, old), {recursive: true, force: true});
  }
  return path.join(dir, name);
}

/**
 * True when `dir` holds a `latest.json` pointer.
 *
 * @example
 * ```ts
 * if (hasCheckpoint('runs/a/checkpoints')) console.log('resumable');
 * ```
 */
export function hasCheckpoint(dir: string, fs: FileSystem = nodeFileSystem): boolean {
  return fs.existsSync(path.join(dir, 'latest.json'));
}

/**
 * Reads the newest checkpoint of `dir` (the one `latest.json` names). The returned optimizer
 * tensors belong to the caller.
 *
 * @example
 * ```ts
 * const ckpt = readLatestCheckpoint('out/checkpoints');
 * opt.setState(ckpt.optimizer); tf.dispose([...ckpt.optimizer.m, ...ckpt.optimizer.v]);
 * ```
 */
export function readLatestCheckpoint<T = unknown>(dir: string, fs: FileSystem = nodeFileSystem): LoadedCheckpoint<T> {
  const pointer = path.join(dir, 'latest.json');
  if (!fs.existsSync(pointer)) throw new InvalidArgumentError('resume', 'a folder holding a checkpoint (latest.json)', dir);
  const {checkpoint} = JSON.parse(fs.readFileSync(pointer).toString('utf8')) as {checkpoint: string};
  const ckptDir = path.join(dir, checkpoint);
  const artifacts = readArtifacts(ckptDir, fs);
  const meta = JSON.parse(fs.readFileSync(path.join(ckptDir, 'trainer.json')).toString('utf8')) as {
    step: number;
    optimizer: {step: number; shapes: number[][]};
    trainer: T;
  };
  const raw = fs.readFileSync(path.join(ckptDir, 'optimizer.bin'));
  const values = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const tensors: tf.Tensor[] = [];
  let off = 0;
  for (const shape of [...meta.optimizer.shapes, ...meta.optimizer.shapes]) {
    const size = shape.reduce((a, b) => a * b, 1);
    tensors.push(tf.tensor(values.slice(off, off + size), shape));
    off += size;
  }
  const n = meta.optimizer.shapes.length;
  return {
    path: ckptDir,
    artifacts,
    step: meta.step,
    optimizer: {step: meta.optimizer.step, m: tensors.slice(0, n), v: tensors.slice(n)},
    trainer: meta.trainer,
  };
}

/**
 * Sets `model`'s weights (all of `model.weights`, in order) from saved artifacts, checking that
 * their number and shapes match.
 *
 * @example
 * ```ts
 * setWeightsFromArtifacts(freshModel, readLatestCheckpoint('runs/a/checkpoints').artifacts);
 * ```
 */
export function setWeightsFromArtifacts(model: tf.LayersModel, artifacts: tf.io.ModelArtifacts): void {
  const specs = artifacts.weightSpecs ?? [];
  const named = tf.io.decodeWeights(artifacts.weightData!, specs);
  const tensors = specs.map((s) => named[s.name]);
  const weights = model.weights;
  try {
    if (tensors.length !== weights.length) {
      throw new InvalidArgumentError('checkpoint', `${weights.length} weights (the model's)`, tensors.length);
    }
    tensors.forEach((t, i) => {
      if (!tf.util.arraysEqual(t.shape, weights[i].shape as number[])) {
        throw new InvalidArgumentError(`checkpoint weight ${specs[i].name}`, `of shape [${weights[i].shape}]`, t.shape);
      }
    });
    model.setWeights(tensors);
  } finally {
    tf.dispose(Object.values(named));
  }
}
