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

/** The weight buffers of model artifacts as one (tfjs may hand over several). */
function weightBytes(artifacts: tf.io.ModelArtifacts): Uint8Array {
  return artifacts.weightData === undefined ? new Uint8Array(0) : new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData));
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
 * A file on disk is missing, truncated or not what it should be (corrupt JSON, a weights file
 * shorter than its manifest, ...). `file` is its path; the message names it and says what is
 * wrong, in one line.
 *
 * Message: `Expected <file> to be <what it should be>, but got <what it is>.`
 *
 * @example
 * ```ts
 * try { readArtifacts('runs/a/model'); } catch (e) { if (e instanceof DamagedFileError) console.error(e.file); }
 * ```
 */
export class DamagedFileError extends InvalidArgumentError {
  /** The damaged file. */
  readonly file: string;
  constructor(file: string, expected: string, got: unknown) {
    super(file, expected, got);
    this.file = file;
  }
}

/**
 * Reads and parses a JSON file, with a {@link DamagedFileError} naming the file when it is
 * missing, empty, truncated or not JSON, or (with `check`) when `check` returns an error text.
 *
 * @example
 * ```ts
 * const pointer = readJsonFile<{checkpoint: string}>('runs/a/checkpoints/latest.json', 'checkpoint pointer');
 * ```
 */
export function readJsonFile<T>(file: string, what: string, fs: FileSystem = nodeFileSystem, check?: (json: T) => string | undefined): T {
  if (!fs.existsSync(file)) throw new DamagedFileError(file, `an existing ${what} file`, 'no such file');
  let json: T;
  try {
    json = JSON.parse(fs.readFileSync(file).toString('utf8')) as T;
  } catch (e) {
    throw new DamagedFileError(file, `a ${what} in JSON`, `unreadable JSON (${(e as Error).message})`);
  }
  const problem = json === null || typeof json !== 'object' ? 'not a JSON object' : check?.(json);
  if (problem !== undefined) throw new DamagedFileError(file, `a ${what}`, problem);
  return json;
}

/** Bytes per value of each tfjs weight dtype. */
const DTYPE_BYTES: Record<string, number> = {float32: 4, int32: 4, bool: 1, float16: 2, uint8: 1, uint16: 2};

/**
 * Reads the two files of {@link artifactsToFiles} from `dir`, checking that `model.json` is the
 * tfjs layers format and that the weight files hold exactly the bytes the manifest lists.
 *
 * @throws {InvalidArgumentError} when `dir` holds no `model.json`
 * @throws {DamagedFileError} naming `model.json` or `weights.bin` when either is corrupt or truncated
 *
 * @example
 * ```ts
 * const model = await tf.loadLayersModel(tf.io.fromMemory(readArtifacts('runs/sparse-ot/model')));
 * ```
 */
export function readArtifacts(dir: string, fs: FileSystem = nodeFileSystem): tf.io.ModelArtifacts {
  const jsonPath = path.join(dir, 'model.json');
  if (!fs.existsSync(jsonPath)) throw new InvalidArgumentError('model', 'a folder holding model.json and weights.bin', dir);
  const json = readJsonFile<{
    modelTopology: object;
    weightsManifest: Array<{paths: string[]; weights: tf.io.WeightsManifestEntry[]}>;
    format?: string;
    generatedBy?: string;
    convertedBy?: string | null;
    userDefinedMetadata?: Record<string, object | string | number | boolean>;
  }>(jsonPath, 'tfjs layers model (model.json)', fs, (j) => {
    if (j.modelTopology === null || typeof j.modelTopology !== 'object') return 'no "modelTopology" object';
    const ok = Array.isArray(j.weightsManifest) && j.weightsManifest.every((g) => g && Array.isArray(g.paths) && Array.isArray(g.weights));
    return ok ? undefined : 'no valid "weightsManifest" (an array of {paths, weights})';
  });
  const specs: tf.io.WeightsManifestEntry[] = [];
  const chunks: Uint8Array[] = [];
  for (const group of json.weightsManifest) {
    specs.push(...group.weights);
    const expected = group.weights.reduce((s, w) => s + (w.shape ?? []).reduce((a: number, b: number) => a * b, 1) * (DTYPE_BYTES[w.dtype] ?? 4), 0);
    let got = 0;
    for (const p of group.paths) {
      const file = path.join(dir, p);
      if (!fs.existsSync(file)) throw new DamagedFileError(file, 'an existing weights file (model.json lists it)', 'no such file');
      const bytes = new Uint8Array(fs.readFileSync(file));
      chunks.push(bytes);
      got += bytes.byteLength;
    }
    if (got !== expected) {
      const name = group.paths.length === 1 ? path.join(dir, group.paths[0]) : `${dir}/{${group.paths.join(',')}}`;
      throw new DamagedFileError(name, `${expected} bytes (the weights model.json lists)`, `${got} bytes`);
    }
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
 * Removes what killed writes left in `dir` (not recursive): temporary files and folders
 * `.<name>.tmp-*` of {@link atomicWriteFile} / {@link atomicWriteFolder}; a folder renamed aside
 * (`.<name>.tmp-*.old`) whose replacement never arrived is renamed back first. Call it only while
 * no other process writes into `dir` (e.g. holding the run folder's lock). Returns what it removed.
 *
 * @example
 * ```ts
 * cleanupTempFiles('runs/a/checkpoints'); // ['.ckpt-00000050.tmp-4242-lx2k9']
 * ```
 */
export function cleanupTempFiles(dir: string, fs: FileSystem = nodeFileSystem): string[] {
  if (!fs.existsSync(dir)) return [];
  const removed: string[] = [];
  const entries = fs.readdirSync(dir);
  for (const e of entries) {
    const m = /^\.(.+)\.tmp-[^.]+\.old$/.exec(e);
    if (m && !fs.existsSync(path.join(dir, m[1]))) fs.renameSync(path.join(dir, e), path.join(dir, m[1]));
  }
  for (const e of fs.readdirSync(dir)) {
    if (/^\..+\.tmp-/.test(e)) {
      fs.rmSync(path.join(dir, e), {recursive: true, force: true});
      removed.push(e);
    }
  }
  return removed;
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
