/**
 * Node file IO for tfjs models without tfjs-node: atomic file writes, and a `tf.io.IOHandler`
 * that saves a model as `model.json` + `weights.bin` (the standard tfjs layers format, loadable
 * by `tf.loadLayersModel` from any tfjs `file://` or `http://` loader) and loads it back.
 */
import * as nodeFs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, TfjsMoeError} from '@tfjs-moe/router';

/**
 * The file-system calls this module makes. Tests substitute a version whose writes fail to check
 * that a failed write leaves the previous files intact.
 */
export interface FileSystem {
  writeFileSync(file: string, data: string | Uint8Array): void;
  appendFileSync(file: string, data: string): void;
  readFileSync(file: string): Buffer;
  renameSync(from: string, to: string): void;
  mkdirSync(dir: string, options: {recursive: true}): unknown;
  rmSync(target: string, options: {recursive: true; force: true}): void;
  existsSync(target: string): boolean;
  readdirSync(dir: string): string[];
  /** Flushes a file or folder to disk (fsync); a no-op where unsupported. */
  fsync?(target: string): void;
}

/**
 * The real file system (Node's `fs`), with fsync of files and folders.
 *
 * @example
 * ```ts
 * atomicWriteFile('out/a.txt', 'hello', nodeFileSystem);
 * ```
 */
export const nodeFileSystem: FileSystem = {
  writeFileSync: (f, d) => nodeFs.writeFileSync(f, d),
  appendFileSync: (f, d) => nodeFs.appendFileSync(f, d),
  readFileSync: (f) => nodeFs.readFileSync(f),
  renameSync: (a, b) => nodeFs.renameSync(a, b),
  mkdirSync: (d, o) => nodeFs.mkdirSync(d, o),
  rmSync: (t, o) => nodeFs.rmSync(t, o),
  existsSync: (t) => nodeFs.existsSync(t),
  readdirSync: (d) => nodeFs.readdirSync(d),
  fsync: (t) => {
    let fd: number | undefined;
    try {
      fd = nodeFs.openSync(t, 'r');
      nodeFs.fsyncSync(fd);
    } catch {
      // Some file systems refuse fsync on folders; the rename is still atomic.
    } finally {
      if (fd !== undefined) nodeFs.closeSync(fd);
    }
  },
};

/**
 * A write to disk failed; the previous file or folder at `target` is left as it was.
 *
 * @example
 * ```ts
 * try { atomicWriteFile('/read-only/x', 'y'); } catch (e) { if (e instanceof WriteError) console.error(e.target); }
 * ```
 */
export class WriteError extends TfjsMoeError {
  /** The path that was to be written. */
  readonly target: string;
  constructor(target: string, cause: unknown) {
    super(`Could not write ${target}: ${(cause as Error)?.message ?? String(cause)}. The previous version, if any, is intact.`);
    this.target = target;
  }
}

function tempName(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${Date.now().toString(36)}`);
}

/**
 * Writes `data` to `file` atomically: to a temporary file in the same folder, flushed, then
 * renamed over `file` (an atomic replace on POSIX). Readers see the old or the new content,
 * never a mix; a failure leaves the old file and removes the temporary one.
 *
 * @example
 * ```ts
 * atomicWriteFile('out/latest.json', JSON.stringify({step: 100}));
 * ```
 */
export function atomicWriteFile(file: string, data: string | Uint8Array, fs: FileSystem = nodeFileSystem): void {
  const tmp = tempName(file);
  try {
    fs.mkdirSync(path.dirname(file), {recursive: true});
    fs.writeFileSync(tmp, data);
    fs.fsync?.(tmp);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, {recursive: true, force: true});
    throw new WriteError(file, e);
  }
}

/**
 * Writes a folder of files atomically: all files go into a temporary sibling folder, which is
 * then renamed to `dir`. An existing `dir` is first renamed aside and removed only after the new
 * folder is in place, so a failure at any point leaves the previous folder (or, in the instant
 * between the two renames, its renamed copy `.<name>.old-*`) intact.
 *
 * @example
 * ```ts
 * atomicWriteFolder('out/model', {'model.json': json, 'weights.bin': bytes});
 * ```
 */
export function atomicWriteFolder(dir: string, files: Record<string, string | Uint8Array>, fs: FileSystem = nodeFileSystem): void {
  const tmp = tempName(dir);
  try {
    fs.mkdirSync(tmp, {recursive: true});
    for (const [name, data] of Object.entries(files)) {
      fs.writeFileSync(path.join(tmp, name), data);
      fs.fsync?.(path.join(tmp, name));
    }
    fs.fsync?.(tmp);
  } catch (e) {
    fs.rmSync(tmp, {recursive: true, force: true});
    throw new WriteError(dir, e);
  }
  const old = `${tempName(dir)}.old`;
  let movedOld = false;
  try {
    if (fs.existsSync(dir)) {
      fs.renameSync(dir, old);
      movedOld = true;
    }
    fs.renameSync(tmp, dir);
  } catch (e) {
    if (movedOld && !fs.existsSync(dir)) fs.renameSync(old, dir);
    fs.rmSync(tmp, {recursive: true, force: true});
    throw new WriteError(dir, e);
  }
  if (movedOld) fs.rmSync(old, {recursive: true, force: true});
  fs.fsync?.(path.dirname(dir));
}

/** Concatenates the weight buffers of model artifacts into one. */
function weightBytes(artifacts: tf.io.ModelArtifacts): Uint8Array {
  const data = artifacts.weightData;
  if (data === undefined) return new Uint8Array(0);
  const buffers = Array.isArray(data) ? data : [data];
  const total = buffers.reduce((s, b) => s + b.byteLength, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const b of buffers) {
    out.set(new Uint8Array(b), off);
    off += b.byteLength;
  }
  return out;
}

/**
 * Model artifacts as the two files of the tfjs layers format: `model.json` (topology, weights
 * manifest pointing at `weights.bin`, and `userDefinedMetadata`) and `weights.bin`.
 *
 * @example
 * ```ts
 * const files = artifactsToFiles(artifacts); // {'model.json': string, 'weights.bin': Uint8Array}
 * ```
 */
export function artifactsToFiles(artifacts: tf.io.ModelArtifacts): Record<string, string | Uint8Array> {
  const modelJson: Record<string, unknown> = {
    format: artifacts.format ?? 'layers-model',
    generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
    convertedBy: artifacts.convertedBy ?? null,
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{paths: ['weights.bin'], weights: artifacts.weightSpecs ?? []}],
  };
  if (artifacts.trainingConfig) modelJson.trainingConfig = artifacts.trainingConfig;
  if (artifacts.userDefinedMetadata) modelJson.userDefinedMetadata = artifacts.userDefinedMetadata;
  return {'model.json': JSON.stringify(modelJson), 'weights.bin': weightBytes(artifacts)};
}

/**
 * Reads the two files of {@link artifactsToFiles} from `dir`.
 *
 * @example
 * ```ts
 * const model = await tf.loadLayersModel(tf.io.fromMemory(readArtifacts('runs/sparse-ot/model')));
 * ```
 */
export function readArtifacts(dir: string, fs: FileSystem = nodeFileSystem): tf.io.ModelArtifacts {
  const jsonPath = path.join(dir, 'model.json');
  if (!fs.existsSync(jsonPath)) throw new InvalidArgumentError('model', 'a folder holding model.json and weights.bin', dir);
  const json = JSON.parse(fs.readFileSync(jsonPath).toString('utf8')) as {
    modelTopology: object;
    weightsManifest: Array<{paths: string[]; weights: tf.io.WeightsManifestEntry[]}>;
    format?: string;
    generatedBy?: string;
    convertedBy?: string | null;
    userDefinedMetadata?: Record<string, object | string | number | boolean>;
  };
  const specs: tf.io.WeightsManifestEntry[] = [];
  const chunks: Uint8Array[] = [];
  for (const group of json.weightsManifest ?? []) {
    specs.push(...group.weights);
    for (const p of group.paths) chunks.push(new Uint8Array(fs.readFileSync(path.join(dir, p))));
  }
  const total = chunks.reduce((s, c) => s + c.byteLength, 0);
  const weightData = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    weightData.set(c, off);
    off += c.byteLength;
  }
  return {
    modelTopology: json.modelTopology,
    weightSpecs: specs,
    weightData: weightData.buffer,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy ?? undefined,
    userDefinedMetadata: json.userDefinedMetadata,
  };
}

/**
 * A `tf.io.IOHandler` for a folder on the local disk: `model.save(fileHandler(dir))` writes
 * `dir/model.json` and `dir/weights.bin` atomically ({@link atomicWriteFolder});
 * `tf.loadLayersModel(fileHandler(dir))` reads them. Works on every backend (tfjs-node's
 * `file://` handler is not needed). `metadata` is stored as `userDefinedMetadata`.
 *
 * @example
 * ```ts
 * await model.save(fileHandler('out/model'));
 * const again = await tf.loadLayersModel(fileHandler('out/model'));
 * ```
 */
export function fileHandler(dir: string, metadata?: Record<string, object | string | number | boolean>, fs: FileSystem = nodeFileSystem): tf.io.IOHandler {
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      const withMeta = metadata ? {...artifacts, userDefinedMetadata: {...artifacts.userDefinedMetadata, ...metadata}} : artifacts;
      const files = artifactsToFiles(withMeta);
      atomicWriteFolder(dir, files, fs);
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          modelTopologyBytes: (files['model.json'] as string).length,
          weightSpecsBytes: JSON.stringify(artifacts.weightSpecs ?? []).length,
          weightDataBytes: (files['weights.bin'] as Uint8Array).byteLength,
        },
      };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      return readArtifacts(dir, fs);
    },
  };
}
