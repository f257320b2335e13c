/**
 * Loads a model saved by `tfjs-moe train` (tfjs layers format: model.json + weight files) and
 * turns every way it can be wrong into one clear {@link ModelLoadError}: a missing file, JSON
 * that is not a layers model, a layer class that is not registered, an unknown router, sizes that
 * are not positive, weights whose shapes do not match the config. Loading is bounded by a
 * timeout, so the page never hangs on a broken model.
 */
import * as tf from '@tensorflow/tfjs';

/** Why a model could not be loaded; `detail` is the underlying message. */
export class ModelLoadError extends Error {
  readonly url: string;
  readonly detail: string;
  constructor(url: string, detail: string) {
    super(`Could not load the model from ${url}: ${detail}`);
    this.name = 'ModelLoadError';
    this.url = url;
    this.detail = detail;
  }
}

/** Config keys that hold sizes or counts: each must be a positive integer (or a list of them). */
const SIZE_KEY = /^(units|filters|kernelSize|strides|poolSize|depth|channels|imageSize|patchSize|hiddenSize|hiddenDim|mlpDim|numHeads|numExperts|numClasses|numTokens|numPatches|groupSize|k|keyDim|valueDim|capacity|sequenceLength|inputDim|outputDim)$/;
/** Config keys that hold positive real factors. */
const FACTOR_KEY = /^(capacityFactor|evalCapacityFactor)$/;

function describe(v: unknown): string {
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

/** Checks one layer config (recursing into nested `{className, config}` objects). */
function checkConfig(where: string, config: unknown, problems: string[]): void {
  if (config == null || typeof config !== 'object') return;
  if (Array.isArray(config)) {
    config.forEach((c, i) => checkConfig(`${where}[${i}]`, c, problems));
    return;
  }
  for (const [rawKey, value] of Object.entries(config as Record<string, unknown>)) {
    // tfjs writes config keys in snake_case (hidden_size); the checks use camelCase names.
    const key = rawKey.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    if (SIZE_KEY.test(key)) {
      const values = Array.isArray(value) ? value : [value];
      for (const v of values) {
        if (v === null || v === undefined) continue;
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
          problems.push(`${where}: expected ${rawKey} to be a positive integer, but got ${describe(value)}`);
          break;
        }
      }
    } else if (FACTOR_KEY.test(key) && value != null) {
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
        problems.push(`${where}: expected ${rawKey} to be a finite number > 0, but got ${describe(value)}`);
      }
    } else if (value && typeof value === 'object') {
      checkConfig(`${where}.${key}`, value, problems);
    }
  }
}

/** Every class name in the topology that tfjs has no registered class for. */
function unknownClasses(layers: Array<Record<string, unknown>>): string[] {
  const registered = tf.serialization.SerializationMap.getMap().classNameMap;
  const unknown: string[] = [];
  for (const layer of layers) {
    const cls = String(layer.class_name ?? layer.className ?? '');
    if (!(cls in registered) && !unknown.includes(cls)) unknown.push(cls);
  }
  return unknown;
}

/**
 * Validates the `modelTopology` of a model.json before tfjs builds it, so that bad sizes give a
 * message naming the layer and field instead of an obscure failure deep in tfjs.
 *
 * @returns The list of problems (empty when the topology looks usable).
 */
export function validateTopology(topology: unknown): string[] {
  const problems: string[] = [];
  const t = topology as {class_name?: string; config?: {layers?: unknown}} | undefined;
  const layers = t?.config?.layers;
  if (!t || !Array.isArray(layers)) {
    return ['model.json has no modelTopology.config.layers: it is not a tfjs layers model'];
  }
  const unknown = unknownClasses(layers as Array<Record<string, unknown>>);
  if (unknown.length) problems.push(`unknown layer class(es): ${unknown.join(', ')}`);
  for (const layer of layers as Array<Record<string, unknown>>) {
    const config = layer.config as Record<string, unknown> | undefined;
    checkConfig(`layer ${describe(config?.name ?? layer.name ?? '?')} (${String(layer.class_name)})`, config, problems);
  }
  return problems;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms);
    p.then((v) => {
      clearTimeout(timer);
      resolve(v);
    }, (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/**
 * Fetches and validates `url` (a model.json), then loads it with `tf.loadLayersModel`, all
 * within `timeoutMs`. Any failure becomes a {@link ModelLoadError}.
 *
 * @example
 * ```ts
 * const model = await loadModelChecked('model/model.json');
 * const probs = model.predict(tf.zeros([1, 28, 28, 1])) as tf.Tensor; // <float32>[1, 10]
 * ```
 */
export async function loadModelChecked(url: string, timeoutMs = 60000): Promise<tf.LayersModel> {
  const absolute = new URL(url, globalThis.location?.href ?? 'http://localhost/').href;
  const run = async (): Promise<tf.LayersModel> => {
    const response = await fetch(absolute);
    if (!response.ok) throw new Error(`HTTP ${response.status} for model.json (run \`npm run model\` or \`tfjs-moe train --out\`)`);
    let json: {modelTopology?: unknown; weightsManifest?: unknown};
    try {
      json = await response.json();
    } catch (e) {
      throw new Error(`model.json is not valid JSON (${(e as Error).message})`);
    }
    const problems = validateTopology(json.modelTopology);
    if (!Array.isArray(json.weightsManifest)) problems.push('model.json has no weightsManifest');
    if (problems.length) throw new Error(`bad model config: ${problems.join('; ')}`);
    try {
      return await tf.loadLayersModel(absolute, {strict: true});
    } catch (e) {
      const msg = (e as Error).message ?? String(e);
      if (/shape|mismatch|weight/i.test(msg)) throw new Error(`the weights do not match the config: ${msg}`);
      throw new Error(`bad model config: ${msg}`);
    }
  };
  try {
    return await withTimeout(run(), timeoutMs, 'loading the model');
  } catch (e) {
    throw new ModelLoadError(url, (e as Error).message ?? String(e));
  }
}
