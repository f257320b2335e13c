/**
 * Node entry points of the vmoe bridge: import a checkpoint from the local disk into a tfjs
 * LayersModel folder, and export a saved model folder to a vmoe V1 checkpoint.
 */
import * as fs from 'fs';
import * as path from 'path';
import type * as tf from '@tensorflow/tfjs';
import '@tfjs-moe/models';
import {ConfigError, InvalidArgumentError} from '@tfjs-moe/router';
import {fileHandler} from '../io/file-io';
import {loadModel} from '../io/load-model';
import {checkpointFormat} from './checkpoint';
import {VMoEImportOptions} from './config';
import {exportVMoE, VMoEExportOptions} from './export';
import {ImportedModel, importVMoE} from './import';
import {fileSource} from './node-source';

/** `fs.statSync` or null when nothing is at `p`. */
function statOrNull(p: string): fs.Stats | null {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

/**
 * Checks a checkpoint location before anything is read: a `.msgpack` / `.npz` name must not be a
 * folder, and a partitioned prefix must not be a folder unless `<prefix>.index` exists.
 * `argument` names it in the error (`'checkpoint'` in the API, `'<checkpoint>'` in the CLI).
 *
 * @throws InvalidArgumentError naming the argument, echoing the path and saying what is wrong
 * @example
 * ```ts
 * checkCheckpointPath('workdir', 'checkpoint'); // throws: a folder, it holds workdir/ckpt_7
 * ```
 */
export function checkCheckpointPath(location: string, argument = 'checkpoint'): void {
  const format = checkpointFormat(location);
  const st = statOrNull(location);
  if (format !== 'partitioned') {
    if (st?.isDirectory()) {
      throw new InvalidArgumentError(argument, `a ${format === 'npz' ? '.npz' : 'flax .msgpack'} file`, `${location} (a folder)`);
    }
    return;
  }
  const prefix = location.replace(/\.index$/, '');
  if (st?.isDirectory() && !statOrNull(`${prefix}.index`)) {
    let found: string[] = [];
    try {
      found = fs.readdirSync(location).filter((f) => /\.index$/.test(f)).map((f) => path.join(location, f.replace(/\.index$/, '')));
    } catch {
      // Unreadable folder: say only what it is.
    }
    const hint = found.length ? `; it holds the checkpoint${found.length > 1 ? 's' : ''} ${found.slice(0, 4).join(', ')}${found.length > 4 ? ', ...' : ''}` : '';
    throw new InvalidArgumentError(argument, 'a partitioned checkpoint prefix (<prefix>.index + <prefix>.data-*), a .msgpack or a .npz file', `${location} (a folder${hint})`);
  }
}

/**
 * Reads a JSON config file (vmoe's `config.model` as `to_json()` writes it).
 *
 * @param argument how the file is named in errors (`'config'`; the CLI passes `'--config'`)
 * @throws InvalidArgumentError naming the argument for a missing file, a folder or an unreadable
 *   file; ConfigError naming the file for bad JSON
 * @example
 * ```ts
 * const json = readConfigFile('vmoe_s32.model.json');
 * ```
 */
export function readConfigFile(file: string, argument = 'config'): unknown {
  const what = "a JSON file holding vmoe's config.model";
  const st = statOrNull(file);
  if (st === null) throw new InvalidArgumentError(argument, what, `${file} (no such file)`);
  if (st.isDirectory()) throw new InvalidArgumentError(argument, what, `${file} (a folder)`);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new InvalidArgumentError(argument, what, `${file} (unreadable: ${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(argument, what, `${file} (bad JSON: ${(e as Error).message})`);
  }
}

/**
 * Checks the output folder of an import: a file there, or a folder that already holds files, is
 * an error unless `overwrite` (then the folder's contents are replaced).
 *
 * @param argument how the folder is named in errors (`'outDir'`; the CLI passes `'--out'`)
 * @throws InvalidArgumentError for a file; ConfigError for a non-empty folder without overwrite
 * @example
 * ```ts
 * checkOutputFolder('models/vmoe_s32', false);
 * ```
 */
export function checkOutputFolder(dir: string, overwrite: boolean, argument = 'outDir'): void {
  const st = statOrNull(dir);
  if (st === null) return;
  if (!st.isDirectory()) throw new InvalidArgumentError(argument, 'a folder (or a path where one can be created)', `${dir} (an existing file)`);
  const entries = fs.readdirSync(dir);
  if (entries.length > 0 && !overwrite) {
    const e = new ConfigError(argument, 'an empty or new folder', dir);
    e.message = `${argument} ${dir} already holds ${entries.slice(0, 4).join(', ')}${entries.length > 4 ? ', ...' : ''}; `
      + `pass ${argument === '--out' ? '--overwrite' : 'overwrite: true'} to replace its contents (or choose another ${argument}).`;
    throw e;
  }
}

/** The files of a checkpoint written under `prefix` that exist already (index, shards, config JSON). */
function existingCheckpointFiles(prefix: string): string[] {
  const dir = path.dirname(prefix);
  const base = path.basename(prefix);
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const ours = (f: string) => f.startsWith(`${base}.`) && /^(index|data-\d+-of-\d+|config\.json|eval_overrides\.json)$/.test(f.slice(base.length + 1));
  return entries.filter(ours).sort().map((f) => path.join(dir, f));
}

/**
 * Checks the prefix of an export: not a folder, its folder not a file, and no checkpoint files
 * under it already unless `overwrite` (then they are replaced; shards of an earlier, larger
 * shard count are removed).
 *
 * @param argument how the prefix is named in errors (`'prefix'`; the CLI passes `'--out'`)
 * @throws InvalidArgumentError for a folder or a file in the way; ConfigError for existing files
 * @example
 * ```ts
 * checkOutputPrefix('export/ckpt_0', false);
 * ```
 */
export function checkOutputPrefix(prefix: string, overwrite: boolean, argument = 'prefix'): void {
  const what = 'a checkpoint prefix such as export/ckpt_0 (files <prefix>.index, <prefix>.data-*)';
  if (prefix === '' || /[\\/]$/.test(prefix) || statOrNull(prefix)?.isDirectory()) throw new InvalidArgumentError(argument, what, `${prefix} (a folder)`);
  const dir = path.dirname(prefix);
  const dst = statOrNull(dir);
  if (dst !== null && !dst.isDirectory()) throw new InvalidArgumentError(argument, what, `${prefix} (${dir} is a file)`);
  const existing = existingCheckpointFiles(prefix);
  if (existing.length > 0 && !overwrite) {
    const e = new ConfigError(argument, 'a prefix with no checkpoint files yet', prefix);
    e.message = `${argument} ${prefix}: a checkpoint is already there (${existing.slice(0, 4).map((f) => path.basename(f)).join(', ')}${existing.length > 4 ? ', ...' : ''}); `
      + `pass ${argument === '--out' ? '--overwrite' : 'overwrite: true'} to replace it (or choose another ${argument}).`;
    throw e;
  }
}

/** Options of the Node import / export functions that write files. */
export interface OverwriteOption {
  /**
   * Replace what is already at the output: the contents of a non-empty output folder (import) or
   * the files of a checkpoint under the prefix (export). Default false: such an output is an error.
   */
  overwrite?: boolean;
}

/**
 * Imports a vmoe checkpoint from the local disk (Node). See {@link importVMoE}.
 *
 * @param checkpoint a partitioned prefix (`workdir/ckpt_1000`), a `.msgpack` or a `.npz` file
 * @param config vmoe's `config.model`: a JSON file path or the parsed object
 * @throws InvalidArgumentError naming `checkpoint` or `config` for a folder or a missing config
 *   file; see {@link importVMoE} for the rest
 * @example
 * ```ts
 * const {model} = await importVMoEFromFiles('workdir/ckpt_1000', 'model-config.json');
 * ```
 */
export async function importVMoEFromFiles(checkpoint: string, config: string | object, options: VMoEImportOptions = {}): Promise<ImportedModel> {
  checkCheckpointPath(checkpoint);
  const json = typeof config === 'string' ? readConfigFile(config) : config;
  return importVMoE(checkpoint, json, fileSource, options);
}

/**
 * Imports a vmoe checkpoint and saves it as a tfjs LayersModel folder (`model.json` +
 * `weights.bin`) that `tf.loadLayersModel` loads once `@tfjs-moe/models` is imported. Its
 * output is vmoe's logits for NHWC float32 images. A folder that already holds files is refused
 * (before the checkpoint is read) unless `overwrite: true`.
 *
 * @throws InvalidArgumentError / ConfigError naming `outDir` for a file or a non-empty folder
 *   there; see {@link importVMoEFromFiles} for the rest
 * @example
 * ```ts
 * await importVMoEToFolder('workdir/ckpt_1000', 'model-config.json', 'models/vmoe_s32');
 * const model = await tf.loadLayersModel(fileHandler('models/vmoe_s32'));
 * ```
 */
export async function importVMoEToFolder(checkpoint: string, config: string | object, outDir: string, options: VMoEImportOptions & OverwriteOption = {}): Promise<ImportedModel> {
  const {overwrite = false, ...importOptions} = options;
  checkOutputFolder(outDir, overwrite);
  const imported = await importVMoEFromFiles(checkpoint, config, importOptions);
  try {
    await imported.model.save(fileHandler(outDir, {
      importedFrom: {checkpoint: path.basename(checkpoint), format: imported.checkpoint.format, version: imported.checkpoint.version ?? 'legacy'},
    }));
  } catch (e) {
    imported.model.dispose();
    throw e;
  }
  return imported;
}

/**
 * Exports a saved tfjs-moe model folder (`model.json` + `weights.bin`, or a run folder of
 * `tfjs-moe train` holding `model/`) as a V1 partitioned vmoe checkpoint `<prefix>.index` +
 * `<prefix>.data-*`, plus `<prefix>.config.json` (vmoe's `config.model`) and, when the evaluation
 * capacity factor differs, `<prefix>.eval_overrides.json` (`config.evaluate.model_overrides`).
 * Returns the written file paths.
 *
 * @throws InvalidArgumentError / DamagedFileError naming the model folder or its files;
 *   see {@link writeVMoECheckpoint} for the prefix
 * @example
 * ```ts
 * exportVMoEFromFolder('runs/sparse-ot/model', 'export/ckpt_0');
 * ```
 */
export async function exportVMoEFromFolder(modelDir: string, prefix: string, options: VMoEExportOptions & OverwriteOption = {}): Promise<string[]> {
  checkOutputPrefix(prefix, options.overwrite ?? false);
  const model = await loadModel(modelDir);
  try {
    return writeVMoECheckpoint(model, prefix, options);
  } finally {
    model.dispose();
  }
}

/**
 * Writes {@link exportVMoE}'s files under `prefix` (Node), part by part, so no buffer holds a
 * whole shard. Returns the written paths. Files of a checkpoint already under `prefix` are an
 * error unless `overwrite: true` (then they are replaced, and stale shards removed).
 *
 * @throws InvalidArgumentError naming `prefix` for a folder there; ConfigError for an existing
 *   checkpoint without overwrite; see {@link exportVMoE} for the model
 * @example
 * ```ts
 * writeVMoECheckpoint(model, 'export/ckpt_0', {shards: 2});
 * ```
 */
export function writeVMoECheckpoint(model: tf.LayersModel, prefix: string, options: VMoEExportOptions & OverwriteOption = {}): string[] {
  const {overwrite = false, ...exportOptions} = options;
  checkOutputPrefix(prefix, overwrite);
  const before = existingCheckpointFiles(prefix);
  const dir = path.dirname(prefix);
  const base = path.basename(prefix);
  const {files, config, evalOverrides} = exportVMoE(model, base, exportOptions);
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
  // An overwritten checkpoint may have had more shards or an eval_overrides file: remove them.
  const kept = new Set(written.map((f) => path.resolve(f)));
  for (const f of before) if (!kept.has(path.resolve(f))) fs.rmSync(f, {force: true});
  return written;
}
