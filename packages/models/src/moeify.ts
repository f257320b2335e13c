/**
 * `moeify(model, options)`: turn the MLP blocks of a ViT-style tfjs model into MoE layers, with
 * experts that start as copies of the dense MLP (sparse upcycling, Komatsuzaki et al. 2023) or
 * from fresh weights.
 */
import * as tf from '@tensorflow/tfjs';
import {checkOptions, ConfigError, MOE_ARG_KEYS} from '@tfjs-moe/router';
import {LayerReplacement, replaceLayers} from './graph';
import {guardImageInput} from './input-check';
import {MlpBlock} from './layers/mlp';
import {MoEBlockOptions, MoEBlockSelection, seededMoEArgs, selectMoEBlocks} from './moe-options';
import {moe, MoE} from './router-api';
import {assertOneOf} from './validate';
import {moeLayerArgs} from './vmoe';

/** Every key that `moeify(model, options)` accepts: the MoE layer's arguments and its own. */
export const MOEIFY_OPTION_KEYS: readonly string[] = [...MOE_ARG_KEYS.filter((k) => k !== 'name'), 'blocks', 'init', 'seed', 'name'];

/**
 * The MoE arguments `moeify` uses unless told otherwise: with them, and experts upcycled from the
 * dense MLP, the new model computes what the dense model computed until training moves it:
 * combine weights rescaled to sum to 1 per kept token (identical experts then give the MLP's
 * output exactly), and dropless inference (no token loses its MLP output to capacity).
 */
export const MOEIFY_DEFAULTS = {normalizeCombineWeights: true, dropless: true} as const;

/** How the experts of a new MoE layer start. */
export type ExpertInit = 'upcycle' | 'fresh';

/** Options of {@link moeify}: the MoE layer's arguments, which MLPs to replace, and how experts start. */
export interface MoeifyOptions extends MoEBlockOptions {
  /**
   * Which MLPs to replace, counted over the model's `MlpBlock` layers in layer order (0-based):
   * `'every-other'` (1, 3, ...; the default), `'all'`, `{last: n}`, a list of indices, or a list
   * of layer names.
   */
  blocks?: MoEBlockSelection | string[];
  /**
   * `'upcycle'` (default): every expert is a copy of the replaced MLP (its kernels and biases);
   * the router starts from its initializer. Needs the expert shape and activation to equal the
   * MLP's and `useBias` true. `'fresh'`: experts start from the MoE layer's initializers.
   */
  init?: ExpertInit;
  /** Name of the new model. Default: the source model's name. */
  name?: string;
  /**
   * Seed for the new weights: the router kernels, and with `init: 'fresh'` the experts (distinct
   * per expert). Unseeded when omitted.
   */
  seed?: number;
}

/**
 * The `MlpBlock` layers of a model, in layer order.
 *
 * @example
 * ```ts
 * mlpBlocks(vit('mnist-tiny')).length; // 4
 * ```
 */
export function mlpBlocks(model: tf.LayersModel): MlpBlock[] {
  return model.layers.filter((l): l is MlpBlock => l instanceof MlpBlock);
}

/**
 * A position-wise MLP found in a model: an `MlpBlock`, or a chain of plain tfjs layers
 * `Dense(h, act) -> Dense(d)` (or `Dense(h) -> Activation(act) -> Dense(d)`) applied to
 * `[batch, tokens, d]` tokens, each feeding only the next.
 */
export interface FoundMlp {
  /** The layer whose output is the MLP's output (the MlpBlock, or the second Dense). */
  name: string;
  /** The first layer of the chain (equal to `name` for an MlpBlock). */
  first: string;
  /** Layers of the chain besides `name` (removed when replaced). */
  inner: string[];
  /** Hidden width h. */
  hiddenDim: number;
  /** Activation (a tfjs activation name). */
  activation: string;
  /** `[kernel1 [d, h], bias1 [h], kernel2 [h, d], bias2 [d]]`, read from the model when called. */
  weights(): tf.Tensor[];
}

function activationName(config: tf.serialization.ConfigDict): string {
  const a = config.activation as unknown;
  if (a == null) return 'linear';
  if (typeof a === 'string') return a;
  return String((a as {className?: string}).className ?? a);
}

/**
 * Finds the MLPs that {@link moeify} can replace, in layer order: every `MlpBlock`, and every
 * chain `Dense(h, act, bias) -> [Activation(act)] -> Dense(d, linear, bias)` on rank-3 tokens in
 * which each layer is called once and feeds only the next.
 *
 * @example
 * ```ts
 * findMlps(vit('mnist-tiny')).map((m) => m.name); // ['block0_mlp', 'block1_mlp', 'block2_mlp', 'block3_mlp']
 * ```
 */
export function findMlps(model: tf.LayersModel): FoundMlp[] {
  const config = model.getConfig() as unknown as {layers: {name: string; inboundNodes: [string, number, number][][]}[]};
  const consumers = new Map<string, string[]>();
  for (const entry of config.layers) {
    for (const node of entry.inboundNodes) for (const [src] of node) consumers.set(src, [...(consumers.get(src) ?? []), entry.name]);
  }
  const outputs = new Set(model.outputLayers.map((l) => l.name));
  const soleConsumer = (name: string): tf.layers.Layer | undefined => {
    const c = consumers.get(name) ?? [];
    if (c.length !== 1 || outputs.has(name)) return undefined;
    const layer = model.getLayer(c[0]);
    return layer.inboundNodes.length === 1 ? layer : undefined;
  };
  const found: FoundMlp[] = [];
  for (const layer of model.layers) {
    if (layer instanceof MlpBlock) {
      found.push({
        name: layer.name, first: layer.name, inner: [], hiddenDim: layer.hiddenDim, activation: layer.activation,
        weights: () => layer.getWeights(),
      });
      continue;
    }
    if (layer.getClassName() !== 'Dense' || layer.inboundNodes.length !== 1) continue;
    const c1 = layer.getConfig();
    const inShape = layer.inputSpec?.[0]?.ndim ?? (layer.input as tf.SymbolicTensor).shape.length;
    if (inShape !== 3 || c1.useBias === false) continue;
    let next = soleConsumer(layer.name);
    let activation = activationName(c1);
    const inner = [layer.name];
    if (next && next.getClassName() === 'Activation' && activation === 'linear') {
      activation = activationName(next.getConfig());
      inner.push(next.name);
      next = soleConsumer(next.name);
    }
    if (!next || next.getClassName() !== 'Dense') continue;
    const c2 = next.getConfig();
    const d = (layer.input as tf.SymbolicTensor).shape[2];
    if (c2.units !== d || activationName(c2) !== 'linear' || c2.useBias === false) continue;
    const second = next;
    found.push({
      name: second.name, first: layer.name, inner, hiddenDim: c1.units as number, activation,
      weights: () => [...layer.getWeights(), ...second.getWeights()],
    });
  }
  return found;
}

/**
 * The name a replaced MLP's MoE layer gets: `block3_mlp` -> `block3_moe`, else `<name>_moe`.
 *
 * @example
 * ```ts
 * moeNameFor('block3_mlp'); // 'block3_moe'
 * ```
 */
export function moeNameFor(mlpName: string): string {
  return mlpName.endsWith('_mlp') ? `${mlpName.slice(0, -4)}_moe` : `${mlpName}_moe`;
}

/**
 * Copies a dense MLP into every expert of an MoE layer: `kernelIn[e] = kernel1`,
 * `biasIn[e] = bias1`, `kernelOut[e] = kernel2`, `biasOut[e] = bias2` for all e. The router is
 * left as it is. `mlp` is an `MlpBlock` or a chain found by {@link findMlps}. Throws `ConfigError`
 * when the shapes or activations differ.
 *
 * @example
 * ```ts
 * upcycleExperts(moeLayer, mlpLayer); // both built, same d, hiddenDim and activation
 * ```
 */
export function upcycleExperts(target: MoE, mlp: MlpBlock | FoundMlp): void {
  const context = `upcycle ${mlp.name} -> ${target.name}`;
  if (target.activation !== mlp.activation) {
    throw new ConfigError('activation', `the replaced MLP's activation '${mlp.activation}' for upcycling`, target.activation, context);
  }
  if (!target.useBias) {
    throw new ConfigError('useBias', 'true for upcycling (the dense MLP has biases)', target.useBias, context);
  }
  const [k1, b1, k2, b2] = mlp instanceof MlpBlock ? mlp.getWeights() : mlp.weights();
  const kIn = target.kernelIn as tf.LayerVariable;
  if (kIn.shape[1] !== k1.shape[0] || kIn.shape[2] !== k1.shape[1]) {
    throw new ConfigError('hiddenDim', `the replaced MLP's shape [d, h] = [${k1.shape}] for upcycling`, kIn.shape.slice(1), context);
  }
  const E = target.numExperts;
  const tiled = tf.tidy(() => [k1, b1, k2, b2].map((w) => tf.tile(tf.expandDims(w, 0), [E, ...w.shape.map(() => 1)])));
  (target.kernelIn as tf.LayerVariable).write(tiled[0]);
  (target.biasIn as tf.LayerVariable).write(tiled[1]);
  (target.kernelOut as tf.LayerVariable).write(tiled[2]);
  (target.biasOut as tf.LayerVariable).write(tiled[3]);
  tf.dispose(tiled);
}

function chooseMlps(mlps: FoundMlp[], blocks: MoeifyOptions['blocks'], context: string): FoundMlp[] {
  if (Array.isArray(blocks) && blocks.length > 0 && blocks.every((b) => typeof b === 'string')) {
    return (blocks as string[]).map((n) => {
      const found = mlps.find((m) => m.name === n);
      if (!found) throw new ConfigError('blocks', `names of MLP layers (${mlps.map((m) => `"${m.name}"`).join(', ')})`, n, context);
      return found;
    });
  }
  return selectMoEBlocks((blocks ?? 'every-other') as MoEBlockSelection, mlps.length, 'blocks', context).map((i) => mlps[i]);
}

/**
 * Returns a new model in which the chosen `MlpBlock` layers of `model` are replaced by MoE layers
 * of `@tfjs-moe/router` (named `block<i>_moe` for `block<i>_mlp`), wired to the same inputs and
 * outputs; every other layer keeps a copy of its weights and `model` itself is unchanged. A
 * `tf.sequential` model is read as the functional model of its chain of layers (the result is
 * functional). With `init: 'upcycle'` (the default) each expert is a copy of the MLP it replaces,
 * and with the defaults {@link MOEIFY_DEFAULTS} (`normalizeCombineWeights: true`, dropless
 * inference) every token gets exactly the dense MLP's output (the combine weights of identical
 * experts sum to 1), so the new model predicts what the dense model predicted until training
 * moves it. In training, capacity applies: a dropped token gets 0 from the MoE layer, so its block
 * output is the residual input alone: `x + MoE(LN(x)) = x`.
 * The result saves and loads like any model (`model.save`, `tf.loadLayersModel`).
 * Throws `UnknownOptionError` for an unknown option (naming the nearest known one), and
 * `ConfigError` when the model has no MLP to replace, for a bad selection, an unknown router, or
 * an upcycle whose shapes differ.
 *
 * @example
 * ```ts
 * const dense = vit('mnist-tiny');                     // ... trained
 * const sparse = moeify(dense, {numExperts: 4});       // same predictions as dense
 * const top2 = moeify(dense, {numExperts: 8, router: 'topk', k: 2, blocks: {last: 2}});
 * await sparse.save(fileSystem('vmoe-upcycled')); // Node: fileSystem from @tfjs-moe/training; loadModel('vmoe-upcycled') reads it back
 * ```
 */
export function moeify(model: tf.LayersModel, options: MoeifyOptions): tf.LayersModel {
  const context = 'moeify';
  if (!(model instanceof tf.LayersModel)) throw new ConfigError('model', 'a tf.LayersModel (e.g. from vit() or tf.loadLayersModel)', model, context);
  if (options == null || typeof options !== 'object') {
    throw new ConfigError('options', 'an object with at least numExperts', options, context);
  }
  checkOptions(options, MOEIFY_OPTION_KEYS, context);
  const {blocks, init: initOption, name, seed, ...userMoeOptions} = options;
  const moeOptions = {...MOEIFY_DEFAULTS, ...userMoeOptions};
  if (model instanceof tf.Sequential) {
    // A sequential model is a chain of layers: the same graph as a functional model over its inputs.
    model = tf.model({inputs: model.inputs, outputs: model.outputs, name: model.name});
  }
  const init = assertOneOf('init', initOption ?? 'upcycle', ['upcycle', 'fresh'] as const, context);
  const mlps = findMlps(model);
  if (mlps.length === 0) {
    throw new ConfigError('model', 'a model with MLPs to replace (MlpBlock layers or Dense -> Dense chains)', model.name, context);
  }
  const chosen = chooseMlps(mlps, blocks, context);
  if (moeOptions.router instanceof tf.layers.Layer && chosen.length > 1) {
    throw new ConfigError('router', `a router name or {name, ...args} when replacing ${chosen.length} MLPs (one Router instance cannot serve several layers)`, moeOptions.router.getClassName(), context);
  }
  const replacements = new Map<string, LayerReplacement>();
  if (seed !== undefined && (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0)) {
    throw new ConfigError('seed', 'a non-negative integer', seed, context);
  }
  for (const [index, mlp] of chosen.entries()) {
    const args = moeLayerArgs(moeOptions, mlp, moeNameFor(mlp.name));
    if (init === 'upcycle' && args.hiddenDim !== mlp.hiddenDim) {
      throw new ConfigError('hiddenDim', `the replaced MLP's hiddenDim ${mlp.hiddenDim} for init 'upcycle'`, args.hiddenDim, context);
    }
    const layer = moe(seed === undefined ? args : seededMoEArgs(args, seed * 1009 + 100 * index));
    replacements.set(mlp.name, {
      layer,
      inputsFrom: mlp.first === mlp.name ? undefined : mlp.first,
      remove: mlp.inner,
      init: (fresh) => {
        if (init === 'upcycle') upcycleExperts(fresh as MoE, mlp);
      },
    });
  }
  return guardImageInput(replaceLayers(model, replacements, name), 'model');
}
