/**
 * `moeify(model, options)`: turn the MLP blocks of a ViT-style tfjs model into MoE layers, with
 * experts that start as copies of the dense MLP (sparse upcycling, Komatsuzaki et al. 2023) or
 * from fresh weights.
 */
import * as tf from '@tensorflow/tfjs';
import {ConfigError} from '@tfjs-moe/router';
import {LayerReplacement, replaceLayers} from './graph';
import {MlpBlock} from './layers/mlp';
import {MoEBlockOptions, MoEBlockSelection, selectMoEBlocks} from './moe-options';
import {moe, MoE} from './router-api';
import {assertOneOf} from './validate';
import {moeLayerArgs, routerUsesDefaultInit, seedMoEWeights} from './vmoe';

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

/** The `MlpBlock` layers of a model, in layer order (the MLPs that {@link moeify} can replace). */
export function mlpBlocks(model: tf.LayersModel): MlpBlock[] {
  return model.layers.filter((l): l is MlpBlock => l instanceof MlpBlock);
}

/** The name a replaced MLP's MoE layer gets: `block3_mlp` -> `block3_moe`, else `<name>_moe`. */
export function moeNameFor(mlpName: string): string {
  return mlpName.endsWith('_mlp') ? `${mlpName.slice(0, -4)}_moe` : `${mlpName}_moe`;
}

/**
 * Copies a dense MLP into every expert of an MoE layer: `kernelIn[e] = kernel1`,
 * `biasIn[e] = bias1`, `kernelOut[e] = kernel2`, `biasOut[e] = bias2` for all e. The router is
 * left as it is. Throws `ConfigError` when the shapes or activations differ.
 *
 * @example
 * ```ts
 * upcycleExperts(moeLayer, mlpLayer); // both built, same d, hiddenDim and activation
 * ```
 */
export function upcycleExperts(target: MoE, mlp: MlpBlock): void {
  const context = `upcycle ${mlp.name} -> ${target.name}`;
  if (target.activation !== mlp.activation) {
    throw new ConfigError('activation', `the replaced MLP's activation '${mlp.activation}' for upcycling`, target.activation, context);
  }
  if (!target.useBias) {
    throw new ConfigError('useBias', 'true for upcycling (the dense MLP has biases)', target.useBias, context);
  }
  const [k1, b1, k2, b2] = mlp.getWeights();
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

function chooseMlps(mlps: MlpBlock[], blocks: MoeifyOptions['blocks'], context: string): MlpBlock[] {
  if (Array.isArray(blocks) && blocks.length > 0 && blocks.every((b) => typeof b === 'string')) {
    return (blocks as string[]).map((n) => {
      const found = mlps.find((m) => m.name === n);
      if (!found) throw new ConfigError('blocks', `names of MlpBlock layers (${mlps.map((m) => `"${m.name}"`).join(', ')})`, n, context);
      return found;
    });
  }
  return selectMoEBlocks((blocks ?? 'every-other') as MoEBlockSelection, mlps.length, 'blocks', context).map((i) => mlps[i]);
}

/**
 * Returns a new model in which the chosen `MlpBlock` layers of `model` are replaced by MoE layers
 * of `@tfjs-moe/router` (named `block<i>_moe` for `block<i>_mlp`), wired to the same inputs and
 * outputs; every other layer keeps a copy of its weights and `model` itself is unchanged. With
 * `init: 'upcycle'` each expert is a copy of the MLP it replaces, so, with
 * `normalizeCombineWeights: true`, every token that the router does not drop gets exactly the
 * dense MLP's output (the combine weights of identical experts sum to 1), and the model computes
 * what the dense model computed wherever no token is dropped. A dropped token gets 0 from the MoE
 * layer, so its block output is the residual input alone: `x + MoE(LN(x)) = x`.
 * The result saves and loads like any model (`model.save`, `tf.loadLayersModel`).
 * Throws `ConfigError` when the model has no `MlpBlock` (e.g. `moeify` of a V-MoE without MLPs),
 * for a bad selection, an unknown router, or an upcycle whose shapes differ.
 *
 * @example
 * ```ts
 * const dense = vit('mnist-tiny');           // ... trained
 * const sparse = moeify(dense, {numExperts: 4, router: 'sparse-ot', normalizeCombineWeights: true});
 * await sparse.save('file://vmoe-upcycled'); // loads with tf.loadLayersModel
 * ```
 */
export function moeify(model: tf.LayersModel, options: MoeifyOptions): tf.LayersModel {
  const context = 'moeify';
  if (options == null || typeof options !== 'object') {
    throw new ConfigError('options', 'an object with at least numExperts', options, context);
  }
  const {blocks, init: initOption, name, seed, ...moeOptions} = options;
  const init = assertOneOf('init', initOption ?? 'upcycle', ['upcycle', 'fresh'] as const, context);
  const mlps = mlpBlocks(model);
  if (mlps.length === 0) {
    throw new ConfigError('model', 'a model with MlpBlock layers to replace', model.name, context);
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
    const layer = moe(args);
    replacements.set(mlp.name, {
      layer,
      init: (fresh) => {
        if (seed !== undefined) {
          seedMoEWeights(fresh as MoE, seed * 1009 + 100 * index, {
            experts: init === 'fresh' && moeOptions.kernelInitializer === undefined,
            router: routerUsesDefaultInit(moeOptions.router),
          });
        }
        if (init === 'upcycle') upcycleExperts(fresh as MoE, mlp);
      },
    });
  }
  return replaceLayers(model, replacements, name);
}
