/**
 * Saving and loading tfjs-moe models in Node without tfjs-node: {@link fileSystem} (a
 * `tf.io.IOHandler` for a folder) and {@link loadModel}, which checks before loading that every
 * layer class of the model is registered (naming the package to import when one is not) and
 * frees what a failed load made.
 *
 * Which import registers which classes with `tf.serialization` (needed before
 * `tf.loadLayersModel` can rebuild a saved model):
 *
 * | import | registers |
 * |---|---|
 * | `@tfjs-moe/router` | `MoE`, `TopKRouter`, `ExpertChoiceRouter`, `SinkhornRouter`, `SparseOTRouter` |
 * | `@tfjs-moe/models` | `PatchEmbedding`, `ClassToken`, `PositionEmbedding`, `TokenPooling`, `MultiHeadSelfAttention`, `MlpBlock` (and imports `@tfjs-moe/router`) |
 * | `@tfjs-moe/training` | both of the above (it imports `@tfjs-moe/models`) |
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {guardImageInput} from '@tfjs-moe/models';
import {ConfigError, TfjsMoeError} from '@tfjs-moe/router';
import {checkFiniteWeights, fileHandler, nodeFileSystem, type FileSystem} from './file-io';

/**
 * The package whose import registers each tfjs-moe layer class (see the module doc).
 *
 * @example
 * ```ts
 * REGISTERING_PACKAGE.MoE; // '@tfjs-moe/router'
 * ```
 */
export const REGISTERING_PACKAGE: Readonly<Record<string, string>> = {
  MoE: '@tfjs-moe/router',
  TopKRouter: '@tfjs-moe/router',
  ExpertChoiceRouter: '@tfjs-moe/router',
  SinkhornRouter: '@tfjs-moe/router',
  SparseOTRouter: '@tfjs-moe/router',
  PatchEmbedding: '@tfjs-moe/models',
  ClassToken: '@tfjs-moe/models',
  PositionEmbedding: '@tfjs-moe/models',
  TokenPooling: '@tfjs-moe/models',
  MultiHeadSelfAttention: '@tfjs-moe/models',
  MlpBlock: '@tfjs-moe/models',
};

/**
 * A `tf.io.IOHandler` for a model folder on the local disk, the Node counterpart of tfjs-node's
 * `file://` handler that works on every backend (cpu, wasm, webgpu): `model.save(fileSystem(dir))`
 * writes `dir/model.json` + `dir/weights.bin` atomically; `tf.loadLayersModel(fileSystem(dir))`
 * (or {@link loadModel}) reads them. The files are the standard tfjs layers format, so a browser
 * loads them with `tf.loadLayersModel('https://.../model.json')` after importing the packages
 * that register the model's classes.
 *
 * @param dir the model folder (created on save)
 * @param metadata stored as `userDefinedMetadata` in model.json on save
 * @throws {@link DamagedFileError} on load, naming model.json or weights.bin when either is corrupt or truncated
 *
 * @example
 * ```ts
 * import {fileSystem, loadModel} from '@tfjs-moe/training';
 * await model.save(fileSystem('out/my-model'));
 * const again = await loadModel('out/my-model'); // or tf.loadLayersModel(fileSystem('out/my-model'))
 * ```
 */
export function fileSystem(dir: string, metadata?: Record<string, object | string | number | boolean>, fs: FileSystem = nodeFileSystem): tf.io.IOHandler {
  return fileHandler(dir, metadata, fs);
}

interface LayerEntry {
  class_name?: string;
  config?: {layers?: LayerEntry[]};
}

/**
 * The layer class names of a saved model topology (nested models included) that are not
 * registered with `tf.serialization`, i.e. that `tf.loadLayersModel` would reject with
 * "Unknown layer".
 *
 * @example
 * ```ts
 * unregisteredLayerClasses(artifacts.modelTopology); // [] once '@tfjs-moe/models' is imported
 * ```
 */
export function unregisteredLayerClasses(modelTopology: unknown): string[] {
  const registered = tf.serialization.SerializationMap.getMap().classNameMap;
  const missing = new Set<string>();
  const visit = (entry: LayerEntry | undefined): void => {
    for (const layer of entry?.config?.layers ?? []) {
      if (typeof layer?.class_name === 'string' && !(layer.class_name in registered)) missing.add(layer.class_name);
      if (Array.isArray(layer?.config?.layers)) visit(layer);
    }
  };
  const topology = modelTopology as {model_config?: LayerEntry} & LayerEntry;
  visit(topology?.model_config ?? topology);
  return [...missing];
}

/**
 * The message for layer classes that are not registered: which package to import for each
 * tfjs-moe class, or that the class is the user's own.
 */
function unknownLayerMessage(missing: string[], source: string): string {
  const parts = missing.map((c) =>
    REGISTERING_PACKAGE[c] ? `'${c}' is registered by import '${REGISTERING_PACKAGE[c]}'` : `'${c}' is not a tfjs or tfjs-moe layer (register your own class with tf.serialization.registerClass)`,
  );
  return `${source} uses layer classes that are not registered: ${parts.join('; ')}. Import the package before tf.loadLayersModel.`;
}

/**
 * Loads a tfjs layers model, in Node from a folder (`model.json` + `weights.bin`) or from any
 * `tf.io.IOHandler` / URL. Unlike a bare `tf.loadLayersModel` it
 * - registers every tfjs-moe class first (this module imports `@tfjs-moe/models`);
 * - checks the topology's layer classes before building anything, naming the package to import
 *   for an unregistered tfjs-moe class (tfjs alone says only "Unknown layer: MoE");
 * - turns a damaged folder into a one-line {@link DamagedFileError} naming the file;
 * - frees every tensor and variable a failed load made (tfjs leaks the layers it built);
 * - makes an image model (one `[null, H, W, C]` input) check the image shape at `predict`,
 *   `evaluate`, `fit`, ... with a `ShapeError` naming `images` (`guardImageInput`), as the
 *   models built by `vit()` / `vmoe()` do.
 *
 * @param source a model folder (Node; a run folder of `tfjs-moe train` means its `model/`), a URL, or an IOHandler
 * @throws {InvalidArgumentError} when the folder holds no model.json
 * @throws {DamagedFileError} naming model.json or weights.bin when one is corrupt or truncated, or naming weights.bin and the weight when a weight holds NaN or Infinity
 * @throws {ConfigError} when a layer class is not registered, or the topology or weights do not fit
 *
 * @example
 * ```ts
 * import {loadModel} from '@tfjs-moe/training';
 * const model = await loadModel('runs/sparse-ot/model');
 * model.predict(tf.zeros([1, 28, 28, 1]));
 * ```
 */
export async function loadModel(source: string | tf.io.IOHandler, fs: FileSystem = nodeFileSystem): Promise<tf.LayersModel> {
  const isUrl = typeof source === 'string' && /^[a-z][a-z0-9+.-]*:\/\//i.test(source);
  let dir = typeof source === 'string' && !isUrl ? source : undefined;
  // A run folder of tfjs-moe train holds its model in model/.
  if (dir !== undefined && !fs.existsSync(path.join(dir, 'model.json')) && fs.existsSync(path.join(dir, 'model', 'model.json'))) dir = path.join(dir, 'model');
  const handler = dir !== undefined ? fileHandler(dir, undefined, fs) : typeof source === 'string' ? tf.io.getLoadHandlers(source)[0] : source;
  const name = dir ?? (typeof source === 'string' ? source : 'the model');
  if (!handler || typeof handler === 'string' || !handler.load) throw new ConfigError('source', 'a model folder, a URL with a tfjs load handler, or an IOHandler', source);
  const artifacts = await handler.load();
  // A folder's weights are checked as they are read (readArtifacts); those of a URL or handler here.
  if (dir === undefined && artifacts.weightData !== undefined && artifacts.weightSpecs) {
    checkFiniteWeights(`${name} weights`, new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData)), artifacts.weightSpecs);
  }
  const missing = unregisteredLayerClasses(artifacts.modelTopology);
  if (missing.length) {
    const e = new ConfigError('model layers', 'registered classes', missing);
    e.message = unknownLayerMessage(missing, name);
    throw e;
  }
  const engine = tf.engine();
  const variablesBefore = new Set(Object.keys(engine.registeredVariables));
  engine.startScope();
  let model: tf.LayersModel | undefined;
  try {
    model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  } catch (e) {
    for (const [n, v] of Object.entries(engine.registeredVariables)) if (!variablesBefore.has(n)) v.dispose();
    engine.endScope();
    if (e instanceof TfjsMoeError) throw e;
    const err = new ConfigError('model', 'a tfjs layers model whose topology and weights match', name);
    err.message = `Could not load ${name}: ${(e as Error).message}`;
    throw err;
  }
  engine.endScope(model.weights.map((w) => w.read()));
  // As vit() / vmoe() models do, a loaded image model checks the image shape at its entry points.
  return guardImageInput(model, 'model');
}
