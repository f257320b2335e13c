/**
 * Import of a vmoe / vit_jax checkpoint into a tfjs-moe model (browser-safe: files are opened
 * through a {@link SourceOpener}; `node.ts` adds the Node file system).
 */
import * as tf from '@tensorflow/tfjs';
import {ResolvedViTConfig, resolveViTConfig, vit, vmoe, ViTConfig, VMoEConfig} from '@tfjs-moe/models';
import {ShapeError} from '@tfjs-moe/router';
import {CheckpointArrays} from './arrays';
import {CheckpointError, SourceOpener} from './byte-source';
import {CheckpointParams, readCheckpointParams} from './checkpoint';
import {ImportedConfig, vmoeConfigToTfjs, VMoEImportOptions} from './config';
import {setModelWeights} from './mapping';
import {checkParams, expectedParams, type TreeSizes} from './param-tree';

/** What {@link importVMoE} returns. */
export interface ImportedModel {
  /** The model: NHWC float32 images `<float32>[batch, height, width, channels]` -> logits `<float32>[batch, classes]`. */
  model: tf.LayersModel;
  /** The tfjs config it was built from, and whether it has MoE blocks. */
  config: ImportedConfig;
  /** Format facts of the checkpoint read. */
  checkpoint: Omit<CheckpointParams, 'arrays'>;
}

/**
 * The sizes of the parameter tree that a resolved tfjs config implies.
 *
 * @example
 * ```ts
 * treeSizes(resolveViTConfig(config), [1, 3], 8).tokens; // patches + 1 with a class token
 * ```
 */
export function treeSizes(c: ResolvedViTConfig, moeBlocks: number[], numExperts: number): TreeSizes {
  const patches = (c.imageSize[0] / c.patchSize) * (c.imageSize[1] / c.patchSize);
  return {
    patchSize: c.patchSize,
    channels: c.channels,
    hiddenSize: c.hiddenSize,
    numHeads: c.numHeads,
    mlpDim: c.mlpDim,
    depth: c.depth,
    tokens: patches + (c.classifier === 'token' ? 1 : 0),
    classToken: c.classifier === 'token',
    representationSize: c.representationSize,
    numClasses: c.numClasses,
    moeBlocks,
    numExperts,
  };
}

/** Image size and channels from the checkpoint's patch kernel and position embedding. */
function inferInput(arrays: CheckpointArrays, provisional: ImportedConfig, options: VMoEImportOptions, file: string): {imageSize: [number, number]; channels: number} {
  const kernel = arrays.get('embedding/kernel');
  if (!kernel) throw new CheckpointError(file, 'parameter missing from the checkpoint', 'embedding/kernel');
  if (kernel.shape.length !== 4) throw new ShapeError('embedding/kernel', 'of rank 4 [p, p, channels, hidden_size]', kernel.shape, `import-vmoe: ${file}`);
  const channels = options.channels ?? kernel.shape[2];
  const c = provisional.config;
  const posPath = `${provisional.naming === 'vmoe' ? 'Encoder' : 'Transformer'}/posembed_input/pos_embedding`;
  const pos = arrays.get(posPath);
  if (!pos) throw new CheckpointError(file, 'parameter missing from the checkpoint', posPath);
  if (options.imageSize !== undefined) {
    const size = options.imageSize;
    return {imageSize: Array.isArray(size) ? [size[0], size[1]] : [size, size], channels};
  }
  const patches = pos.shape[1] - (c.classifier === 'gap' ? 0 : 1);
  const grid = Math.round(Math.sqrt(patches));
  if (pos.shape.length !== 3 || grid * grid !== patches) {
    throw new ShapeError(posPath, 'of shape [1, tokens, hidden_size] with a square grid of patches (or pass imageSize)', pos.shape, `import-vmoe: ${file}`);
  }
  return {imageSize: [grid * c.patchSize, grid * c.patchSize], channels};
}

/**
 * Builds a tfjs-moe model from checkpoint arrays and vmoe's model config JSON: maps the config
 * ({@link vmoeConfigToTfjs}), checks every parameter's shape against it, and copies the weights.
 * The model's output is vmoe's logits for NHWC float32 images (vmoe feeds pixels in [-1, 1]).
 *
 * @param arrays parameters by `/`-joined path (from {@link readCheckpointParams})
 * @param configJson vmoe's `config.model` as parsed JSON
 * @param file the checkpoint's name, for error messages
 * @throws ConfigError for an unsupported config field; ShapeError naming the parameter path, the
 *   expected and the found shape; CheckpointError for a missing parameter
 * @example
 * ```ts
 * const {model} = buildFromArrays(arrays, JSON.parse(text), 'ckpt_1000');
 * ```
 */
export function buildFromArrays(arrays: CheckpointArrays, configJson: unknown, file: string, options: VMoEImportOptions = {}): {model: tf.LayersModel; config: ImportedConfig} {
  return build(arrays, configJson, file, options, false);
}

/** {@link buildFromArrays}; with `consume`, `arrays` is emptied and each leaf released once copied into the model. */
function build(arrays: CheckpointArrays, configJson: unknown, file: string, options: VMoEImportOptions, consume: boolean): {model: tf.LayersModel; config: ImportedConfig} {
  const provisional = vmoeConfigToTfjs(configJson, [1, 1], 3, options);
  const {imageSize, channels} = inferInput(arrays, provisional, options, file);
  const imported = vmoeConfigToTfjs(configJson, imageSize, channels, options);
  const resolved = resolveViTConfig(imported.config);
  const moe = imported.isMoE ? (imported.config as VMoEConfig) : null;
  const sizes = treeSizes(resolved, (moe?.moeBlocks as number[] | undefined) ?? [], moe?.moe.numExperts ?? 0);
  const values = checkParams(arrays, expectedParams(sizes, imported.naming), file);
  if (consume) arrays.clear();
  const model = moe ? vmoe(moe) : vit(imported.config as ViTConfig);
  try {
    setModelWeights(model, values, sizes, imported.naming, consume);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return {model, config: imported};
}

/**
 * Imports a google-research/vmoe checkpoint (partitioned V1 or legacy, flax msgpack, or `.npz`;
 * a train state yields its params) as a tfjs-moe model whose output is vmoe's logits.
 *
 * @param location a partitioned checkpoint's prefix, a `.msgpack` or a `.npz` file
 * @param configJson vmoe's `config.model` JSON (parsed), e.g. `json.loads(config.model.to_json())`
 * @param open opens one file by name: `fileSource` in Node, `(url) => urlSource(url)` in the browser
 * @throws CheckpointError naming the file (missing shard, truncated file) or parameter path;
 *   ConfigError naming an unsupported config field (e.g. the router); ShapeError naming the
 *   parameter path with the expected and found shapes
 * @example
 * ```ts
 * const {model} = await importVMoE('https://host/ckpt/vmoe_s32', config, async (u) => urlSource(u));
 * const logits = model.predict(images) as tf.Tensor; // [batch, classes]
 * ```
 */
export async function importVMoE(location: string, configJson: unknown, open: SourceOpener, options: VMoEImportOptions = {}): Promise<ImportedModel> {
  // Check the config before reading any large file.
  vmoeConfigToTfjs(configJson, [1, 1], 3, options);
  const {arrays, ...checkpoint} = await readCheckpointParams(location, open);
  // Leaf by leaf: the checkpoint's bytes are released as the model's weights are set, so at most
  // one float32 copy of the parameters (the model's) exists beside them.
  const {model, config} = build(arrays, configJson, location, options, true);
  return {model, config, checkpoint};
}
