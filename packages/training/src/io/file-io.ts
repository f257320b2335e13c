/**
 * Node file IO for tfjs models without tfjs-node: a `tf.io.IOHandler` that saves a model as
 * `model.json` + `weights.bin` (the standard tfjs layers format, loadable by `tf.loadLayersModel`
 * from any tfjs `file://` or `http://` loader), written atomically (atomic-write.ts), and loads it
 * back with every damaged file named (damaged-file.ts). Both are re-exported here, where callers
 * have always found them.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError} from '@tfjs-moe/router';
import {atomicWriteFolder, nodeFileSystem, type FileSystem} from './atomic-write';
import {DamagedFileError, readJsonFile} from './damaged-file';

export {atomicWriteFile, atomicWriteFolder, cleanupTempFiles, nodeFileSystem, WriteError, type FileSystem} from './atomic-write';
export {DamagedFileError, readJsonFile} from './damaged-file';

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

/** Bytes per value of each tfjs weight dtype. */
const DTYPE_BYTES: Record<string, number> = {float32: 4, int32: 4, bool: 1, float16: 2, uint8: 1, uint16: 2};

/**
 * Throws a {@link DamagedFileError} naming `file` and the weight when a float32 weight of `bytes`
 * (laid out as `specs`, from `offset`) holds NaN or Infinity: saved weights are always finite, so
 * such a file is damaged (or was saved from a diverged model) and must not be trained on or used.
 *
 * @example
 * ```ts
 * checkFiniteWeights('runs/a/model/weights.bin', bytes, artifacts.weightSpecs);
 * ```
 */
export function checkFiniteWeights(file: string, bytes: Uint8Array, specs: readonly tf.io.WeightsManifestEntry[], offset = 0): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = offset;
  for (const w of specs) {
    const n = (w.shape ?? []).reduce((a: number, b: number) => a * b, 1);
    if (w.dtype === 'float32' && !w.quantization) {
      for (let i = 0; i < n; i++) {
        const x = view.getFloat32(off + 4 * i, true);
        if (!Number.isFinite(x)) throw new DamagedFileError(file, 'finite weights', `${x} in weight ${w.name} at index ${i}`);
      }
    }
    off += n * (w.quantization ? (DTYPE_BYTES[w.quantization.dtype] ?? 1) : (DTYPE_BYTES[w.dtype] ?? 4));
  }
}

/**
 * Reads the two files of {@link artifactsToFiles} from `dir`, checking that `model.json` is the
 * tfjs layers format and that the weight files hold exactly the bytes the manifest lists, all of
 * them finite ({@link checkFiniteWeights}).
 *
 * @throws {InvalidArgumentError} when `dir` holds no `model.json`
 * @throws {DamagedFileError} naming `model.json` or `weights.bin` when either is corrupt or truncated, or a weight holds NaN or Infinity
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
  const groups: Array<{name: string; specs: tf.io.WeightsManifestEntry[]; offset: number}> = [];
  let groupOffset = 0;
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
    const name = group.paths.length === 1 ? path.join(dir, group.paths[0]) : `${dir}/{${group.paths.join(',')}}`;
    if (got !== expected) throw new DamagedFileError(name, `${expected} bytes (the weights model.json lists)`, `${got} bytes`);
    groups.push({name, specs: group.weights, offset: groupOffset});
    groupOffset += got;
  }
  const total = chunks.reduce((s, c) => s + c.byteLength, 0);
  const weightData = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    weightData.set(c, off);
    off += c.byteLength;
  }
  for (const g of groups) checkFiniteWeights(g.name, weightData, g.specs, g.offset);
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
