/**
 * Training checkpoints on disk, written atomically.
 *
 * Layout of `dir` (the run's checkpoint folder):
 * - `ckpt-<step>/model.json`, `ckpt-<step>/weights.bin`: the model in the tfjs layers format
 *   (every weight, trainable or not, so router state kept in weights travels with it);
 * - `ckpt-<step>/optimizer.bin`: the optimizer's moments, m then v in variable order, encoded by
 *   `tf.io.encodeWeights` (float32, so the bytes are the plain concatenation);
 * - `ckpt-<step>/trainer.json`: step, optimizer step, moment shapes and weight specs, run
 *   configuration and the history so far;
 * - `latest.json`: `{"checkpoint": "ckpt-<step>", "step": <step>}`, the pointer to the newest.
 *
 * A checkpoint folder is written under a temporary name and renamed into place; only then is
 * `latest.json` replaced (atomically, by rename). A failure at any point leaves `latest.json`
 * pointing at the previous, complete checkpoint.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError} from '@tfjs-moe/router';
import {artifactsToFiles, atomicWriteFile, atomicWriteFolder, checkFiniteWeights, DamagedFileError, nodeFileSystem, readArtifacts, readJsonFile, type FileSystem} from '../io/file-io';

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
  /** Newer checkpoints that were damaged and skipped, with what was wrong (empty normally). */
  skipped: Array<{path: string; reason: string}>;
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
  const moments = [...state.optimizer.m.map((t, i) => ({name: `m/${i}`, tensor: t})), ...state.optimizer.v.map((t, i) => ({name: `v/${i}`, tensor: t}))];
  const {data, specs} = await tf.io.encodeWeights(moments);
  files['optimizer.bin'] = new Uint8Array(tf.io.CompositeArrayBuffer.join(data));
  files['trainer.json'] = JSON.stringify({
    step: state.step,
    optimizer: {step: state.optimizer.step, shapes: state.optimizer.m.map((t) => t.shape), specs},
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
 * True when `dir` holds a checkpoint: a `latest.json` pointer or a `ckpt-<step>` folder.
 *
 * @example
 * ```ts
 * if (hasCheckpoint('runs/a/checkpoints')) console.log('resumable');
 * ```
 */
export function hasCheckpoint(dir: string, fs: FileSystem = nodeFileSystem): boolean {
  return fs.existsSync(path.join(dir, 'latest.json')) || (fs.existsSync(dir) && fs.readdirSync(dir).some((f) => /^ckpt-\d+$/.test(f)));
}

interface TrainerFile<T> {
  step: number;
  optimizer: {step: number; shapes: number[][]; specs?: tf.io.WeightsManifestEntry[]};
  trainer: T;
}

/** The files of one checkpoint folder, each checked; nothing is made into tensors yet. */
interface CheckpointFiles<T> {
  path: string;
  artifacts: tf.io.ModelArtifacts;
  meta: TrainerFile<T>;
  optimizerBytes: Uint8Array;
  optimizerSpecs: tf.io.WeightsManifestEntry[];
}

function readCheckpointFiles<T>(ckptDir: string, fs: FileSystem): CheckpointFiles<T> {
  if (!fs.existsSync(ckptDir)) throw new DamagedFileError(ckptDir, 'an existing checkpoint folder', 'no such folder');
  const meta = readJsonFile<TrainerFile<T>>(path.join(ckptDir, 'trainer.json'), 'checkpoint state (trainer.json)', fs, (j) => {
    if (!Number.isInteger(j.step) || j.step < 0) return `no valid "step" (${JSON.stringify(j.step)})`;
    const o = j.optimizer;
    if (!o || !Number.isInteger(o.step) || !Array.isArray(o.shapes) || !o.shapes.every((s) => Array.isArray(s) && s.every(Number.isInteger))) return 'no valid "optimizer" {step, shapes}';
    if (j.trainer === null || typeof j.trainer !== 'object') return 'no "trainer" object';
    const bad = nonFiniteNumberAt(j, '');
    return bad === undefined ? undefined : `a non-finite number at ${bad}`;
  });
  const artifacts = readArtifacts(ckptDir, fs);
  const optimizerFile = path.join(ckptDir, 'optimizer.bin');
  // Checkpoints written before the weight specs were stored hold the same float32 bytes.
  const optimizerSpecs =
    meta.optimizer.specs ??
    ['m', 'v'].flatMap((k) => meta.optimizer.shapes.map((shape, i) => ({name: `${k}/${i}`, shape, dtype: 'float32' as const})));
  const expected = optimizerSpecs.reduce((s, w) => s + 4 * w.shape.reduce((a, b) => a * b, 1), 0);
  if (!fs.existsSync(optimizerFile)) throw new DamagedFileError(optimizerFile, 'an existing optimizer state file', 'no such file');
  const optimizerBytes = new Uint8Array(fs.readFileSync(optimizerFile));
  if (optimizerBytes.byteLength !== expected) {
    throw new DamagedFileError(optimizerFile, `${expected} bytes (the moments trainer.json lists)`, `${optimizerBytes.byteLength} bytes`);
  }
  checkFiniteWeights(optimizerFile, optimizerBytes, optimizerSpecs);
  return {path: ckptDir, artifacts, meta, optimizerBytes, optimizerSpecs};
}

/**
 * The JSON path of the first non-finite number in `value` (JSON.parse reads `1e999` as Infinity), or
 * undefined when every number is finite.
 */
function nonFiniteNumberAt(value: unknown, at: string): string | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : `${at || '(root)'} (${value})`;
  if (value === null || typeof value !== 'object') return undefined;
  for (const [k, v] of Object.entries(value)) {
    const bad = nonFiniteNumberAt(v, Array.isArray(value) ? `${at}[${k}]` : at ? `${at}.${k}` : k);
    if (bad !== undefined) return bad;
  }
  return undefined;
}

/**
 * Finds the newest intact checkpoint of `dir`: the one `latest.json` names, or when that (or
 * `latest.json` itself) is damaged, the newest `ckpt-<step>` folder whose files all check out.
 *
 * @throws {InvalidArgumentError} when `dir` holds no checkpoint
 * @throws {DamagedFileError} when every checkpoint is damaged (naming the newest one's problem)
 */
function findIntactCheckpoint<T>(dir: string, fs: FileSystem): {files: CheckpointFiles<T>; skipped: Array<{path: string; reason: string}>} {
  if (!hasCheckpoint(dir, fs)) throw new InvalidArgumentError('resume', `a run folder with a checkpoint (${path.join(dir, 'latest.json')})`, dir);
  const skipped: Array<{path: string; reason: string}> = [];
  const candidates: string[] = [];
  const pointer = path.join(dir, 'latest.json');
  try {
    const latest = readJsonFile<{checkpoint: string}>(pointer, 'checkpoint pointer (latest.json)', fs, (j) =>
      typeof j.checkpoint === 'string' && /^ckpt-\d+$/.test(j.checkpoint) ? undefined : `no valid "checkpoint" name (${JSON.stringify(j.checkpoint)})`,
    );
    candidates.push(latest.checkpoint);
  } catch (e) {
    skipped.push({path: pointer, reason: (e as Error).message});
  }
  const folders = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^ckpt-\d+$/.test(f)).sort().reverse() : [];
  for (const f of folders) if (!candidates.includes(f)) candidates.push(f);
  let first: unknown;
  for (const name of candidates) {
    try {
      return {files: readCheckpointFiles<T>(path.join(dir, name), fs), skipped};
    } catch (e) {
      if (!(e instanceof InvalidArgumentError)) throw e;
      first ??= e;
      skipped.push({path: path.join(dir, name), reason: e.message});
    }
  }
  throw first ?? new DamagedFileError(pointer, 'a pointer to an existing checkpoint', 'no intact checkpoint folder');
}

/**
 * Describes the checkpoint that {@link readLatestCheckpoint} would read, without making tensors:
 * its folder, step and trainer state, and the damaged newer ones it would skip.
 *
 * @throws as {@link readLatestCheckpoint}
 *
 * @example
 * ```ts
 * const {path, step, skipped} = inspectLatestCheckpoint('runs/a/checkpoints');
 * ```
 */
export function inspectLatestCheckpoint<T = unknown>(dir: string, fs: FileSystem = nodeFileSystem): {path: string; step: number; trainer: T; skipped: Array<{path: string; reason: string}>} {
  const {files, skipped} = findIntactCheckpoint<T>(dir, fs);
  return {path: files.path, step: files.meta.step, trainer: files.meta.trainer, skipped};
}

/**
 * Reads the newest intact checkpoint of `dir` (the one `latest.json` names; when it or
 * `latest.json` is damaged, the newest intact `ckpt-<step>` folder, listed in `skipped`). The
 * returned optimizer tensors belong to the caller.
 *
 * @throws {InvalidArgumentError} when `dir` holds no checkpoint
 * @throws {DamagedFileError} naming the file when every checkpoint is damaged
 *
 * @example
 * ```ts
 * const ckpt = readLatestCheckpoint('out/checkpoints');
 * opt.setState(ckpt.optimizer); tf.dispose([...ckpt.optimizer.m, ...ckpt.optimizer.v]);
 * ```
 */
export function readLatestCheckpoint<T = unknown>(dir: string, fs: FileSystem = nodeFileSystem): LoadedCheckpoint<T> {
  const {files, skipped} = findIntactCheckpoint<T>(dir, fs);
  const b = files.optimizerBytes;
  const named = tf.io.decodeWeights(b.slice().buffer, files.optimizerSpecs);
  const n = files.meta.optimizer.shapes.length;
  const m = Array.from({length: n}, (_, i) => named[`m/${i}`]);
  const v = Array.from({length: n}, (_, i) => named[`v/${i}`]);
  if ([...m, ...v].some((t) => t === undefined)) {
    tf.dispose(Object.values(named));
    throw new DamagedFileError(path.join(files.path, 'trainer.json'), `optimizer specs m/0..m/${n - 1} and v/0..v/${n - 1}`, files.optimizerSpecs.map((s) => s.name));
  }
  return {
    path: files.path,
    artifacts: files.artifacts,
    step: files.meta.step,
    optimizer: {step: files.meta.optimizer.step, m, v},
    trainer: files.meta.trainer,
    skipped,
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
