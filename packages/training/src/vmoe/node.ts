/**
 * Node entry points of the vmoe bridge: import a checkpoint from the local disk into a tfjs
 * LayersModel folder, and export a saved model folder to a vmoe V1 checkpoint.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '@tfjs-moe/models';
import {ConfigError} from '@tfjs-moe/router';
import {fileHandler} from '../io/file-io';
import {CheckpointError} from './byte-source';
import {VMoEImportOptions} from './config';
import {exportVMoE, VMoEExportOptions} from './export';
import {ImportedModel, importVMoE} from './import';
import {fileSource} from './node-source';

/**
 * Reads a JSON config file (vmoe's `config.model` as `to_json()` writes it).
 * Throws {@link CheckpointError} for a missing file and {@link ConfigError} for bad JSON.
 *
 * @example
 * ```ts
 * const json = readConfigFile('vmoe_s32.model.json');
 * ```
 */
export function readConfigFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new CheckpointError(file, 'missing: no such config file');
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError('config', 'a JSON file', `${file}: ${(e as Error).message}`, 'import-vmoe');
  }
}

/**
 * Imports a vmoe checkpoint from the local disk (Node). See {@link importVMoE}.
 *
 * @param checkpoint a partitioned prefix (`workdir/ckpt_1000`), a `.msgpack` or a `.npz` file
 * @param config vmoe's `config.model`: a JSON file path or the parsed object
 * @example
 * ```ts
 * const {model} = await importVMoEFromFiles('workdir/ckpt_1000', 'model-config.json');
 * ```
 */
export async function importVMoEFromFiles(checkpoint: string, config: string | object, options: VMoEImportOptions = {}): Promise<ImportedModel> {
  const json = typeof config === 'string' ? readConfigFile(config) : config;
  return importVMoE(checkpoint, json, fileSource, options);
}

/**
 * Imports a vmoe checkpoint and saves it as a tfjs LayersModel folder (`model.json` +
 * `weights.bin`) that `tf.loadLayersModel` loads once `@tfjs-moe/models` is imported. Its
 * output is vmoe's logits for NHWC float32 images.
 *
 * @example
 * ```ts
 * await importVMoEToFolder('workdir/ckpt_1000', 'model-config.json', 'models/vmoe_s32');
 * const model = await tf.loadLayersModel(fileHandler('models/vmoe_s32'));
 * ```
 */
export async function importVMoEToFolder(checkpoint: string, config: string | object, outDir: string, options: VMoEImportOptions = {}): Promise<ImportedModel> {
  const imported = await importVMoEFromFiles(checkpoint, config, options);
  await imported.model.save(fileHandler(outDir, {
    importedFrom: {checkpoint: path.basename(checkpoint), format: imported.checkpoint.format, version: imported.checkpoint.version ?? 'legacy'},
  }));
  return imported;
}

/**
 * Exports a saved tfjs-moe model folder (`model.json` + `weights.bin`) as a V1 partitioned
 * vmoe checkpoint `<prefix>.index` + `<prefix>.data-*`, plus `<prefix>.config.json` (vmoe's
 * `config.model`) and, when the evaluation capacity factor differs, `<prefix>.eval_overrides.json`
 * (`config.evaluate.model_overrides`). Returns the written file paths.
 *
 * @example
 * ```ts
 * exportVMoEFromFolder('runs/sparse-ot/model', 'export/ckpt_0');
 * ```
 */
export async function exportVMoEFromFolder(modelDir: string, prefix: string, options: VMoEExportOptions = {}): Promise<string[]> {
  const model = await tf.loadLayersModel(fileHandler(modelDir));
  try {
    return writeVMoECheckpoint(model, prefix, options);
  } finally {
    model.dispose();
  }
}

/**
 * Writes {@link exportVMoE}'s files under `prefix` (Node), part by part, so no buffer holds a
 * whole shard. Returns the written paths.
 *
 * @example
 * ```ts
 * writeVMoECheckpoint(model, 'export/ckpt_0', {shards: 2});
 * ```
 */
export function writeVMoECheckpoint(model: tf.LayersModel, prefix: string, options: VMoEExportOptions = {}): string[] {
  const dir = path.dirname(prefix);
  const base = path.basename(prefix);
  const {files, config, evalOverrides} = exportVMoE(model, base, options);
  fs.mkdirSync(dir, {recursive: true});
  const written: string[] = [];
  for (const [name, parts] of files) {
    const target = path.join(dir, name);
    const tmp = path.join(dir, `.tmp.${name}`);
    const fd = fs.openSync(tmp, 'w');
    try {
      for (const p of parts) fs.writeSync(fd, p);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, target);
    written.push(target);
  }
  const configPath = `${prefix}.config.json`;
  fs.writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
  written.push(configPath);
  if (evalOverrides) {
    const p = `${prefix}.eval_overrides.json`;
    fs.writeFileSync(p, `${JSON.stringify(evalOverrides, null, 2)}\n`);
    written.push(p);
  }
  return written;
}
