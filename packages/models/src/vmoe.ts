/**
 * `vmoe(config)`: the ViT of `vit(config)` with MoE layers from `@tfjs-moe/router` in place of
 * the MLPs of chosen blocks (V-MoE, Riquelme et al. 2021).
 */
import * as tf from '@tensorflow/tfjs';
import {checkOptions, ConfigError, MOE_ARG_KEYS} from '@tfjs-moe/router';
import {checkViTConfigKeys, resolveViTConfig, ResolvedViTConfig, ViTConfig, ViTPresetName} from './config';
import {mlpBlock} from './layers/mlp';
import {MoEBlockOptions, MoEBlockSelection, seededMoEArgs, selectMoEBlocks} from './moe-options';
import {moe, MoEArgs, moeLayers, RoutingMetricValues} from './router-api';
import {blockLayerNames, buildViT, layerSeed} from './vit';

/** A V-MoE: a {@link ViTConfig} plus the MoE blocks' options and which blocks get them. */
export interface VMoEConfig extends ViTConfig {
  /** Arguments of every MoE layer (experts, router, capacity, grouping, ...). */
  moe: MoEBlockOptions;
  /** Which blocks are MoE blocks. Default `'every-other'` (blocks 1, 3, ...). */
  moeBlocks?: MoEBlockSelection;
}

/** Keys of `config.moe`: the MoE layer's arguments except `name` (set per block). */
const MOE_BLOCK_OPTION_KEYS = MOE_ARG_KEYS.filter((k) => k !== 'name');

/** A full {@link VMoEConfig}, or a ViT preset name with overrides and the MoE fields. */
export type VMoEConfigLike = VMoEConfig | ({preset: ViTPresetName; moe: MoEBlockOptions; moeBlocks?: MoEBlockSelection} & Partial<ViTConfig>);

/** A resolved V-MoE config: the ViT fields checked, and the MoE block indices. */
export interface ResolvedVMoEConfig extends ResolvedViTConfig {
  moe: MoEBlockOptions;
  moeBlocks: number[];
}

/**
 * Checks a V-MoE config and resolves its preset and block selection.
 * Throws `ConfigError` naming the bad field.
 *
 * @example
 * ```ts
 * resolveVMoEConfig({preset: 'mnist-tiny', moe: {numExperts: 4}}).moeBlocks; // [1, 3]
 * ```
 */
export function resolveVMoEConfig(config: VMoEConfigLike): ResolvedVMoEConfig {
  const context = 'vmoe config';
  if (config == null || typeof config !== 'object') {
    throw new ConfigError('config', 'a config object with a moe field', config, context);
  }
  const {moe: moeOptions, moeBlocks, ...vitPart} = config as VMoEConfig;
  if (moeOptions != null && typeof moeOptions === 'object') checkOptions(moeOptions, MOE_BLOCK_OPTION_KEYS, `${context}.moe`);
  const c = resolveViTConfig(vitPart as ViTConfig, 'vmoe');
  if (moeOptions == null || typeof moeOptions !== 'object') {
    throw new ConfigError('moe', 'an object with at least numExperts', moeOptions, context);
  }
  const blocks = selectMoEBlocks(moeBlocks ?? 'every-other', c.depth, 'moeBlocks', context);
  if (moeOptions.router instanceof tf.layers.Layer && blocks.length > 1) {
    throw new ConfigError('moe.router', `a router name or {name, ...args} when there are ${blocks.length} MoE blocks (one Router instance cannot serve several layers)`, moeOptions.router.getClassName(), context);
  }
  return {...c, moe: moeOptions, moeBlocks: blocks};
}

/**
 * The arguments of the MoE layer of one block: the user's options, with `hiddenDim` and
 * `activation` defaulting to the dense MLP's.
 *
 * @example
 * ```ts
 * moeLayerArgs({numExperts: 4}, {hiddenDim: 128, activation: 'gelu'}, 'block1_moe');
 * // {numExperts: 4, hiddenDim: 128, activation: 'gelu', name: 'block1_moe'}
 * ```
 */
export function moeLayerArgs(options: MoEBlockOptions, mlp: {hiddenDim: number; activation: string}, name: string): MoEArgs {
  return {
    ...options,
    hiddenDim: options.hiddenDim ?? mlp.hiddenDim,
    activation: (options.activation ?? mlp.activation),
    name,
  } as MoEArgs;
}

/**
 * Builds a V-MoE classifier `<float32>[batch, height, width, channels]` ->
 * `<float32>[batch, numClasses]`: the ViT of {@link vit} in which the blocks chosen by
 * `moeBlocks` have an `MoE` layer (named `block<i>_moe`) instead of their MLP. Each expert is an
 * MLP `d -> hiddenDim -> d`; the router and every MoE argument come from `config.moe`. The MoE
 * layers add their auxiliary losses with `addLoss`, so `model.fit` trains with them; read the
 * routing metrics with `moeMetrics(model)` after a call.
 * Throws `ConfigError` for a bad ViT field, a bad block selection, an unknown router
 * (`MoE: Expected router to be ...`) or bad MoE arguments.
 *
 * @example
 * ```ts
 * const model = vmoe({preset: 'mnist-tiny', moe: {numExperts: 4, router: 'sparse-ot', capacityFactor: 1.25}});
 * const logits = model.predict(tf.zeros([8, 28, 28, 1])) as tf.Tensor; // [8, 10]
 * const last2 = vmoe({preset: 'mnist-tiny', moeBlocks: {last: 2}, moe: {numExperts: 8, router: {name: 'topk', k: 2}}});
 * ```
 */
export function vmoe(config: VMoEConfigLike): tf.LayersModel {
  checkViTConfigKeys(config, ['moe', 'moeBlocks'], 'vmoe config');
  const c = resolveVMoEConfig(config);
  const moeSet = new Set(c.moeBlocks);
  return buildViT(c, (i) => {
    const names = blockLayerNames(i);
    if (!moeSet.has(i)) {
      return mlpBlock({hiddenDim: c.mlpDim, activation: c.activation, seed: layerSeed(c, 101 + 2 * i), name: names.mlp});
    }
    const args = moeLayerArgs(c.moe, {hiddenDim: c.mlpDim, activation: c.activation}, names.moe);
    return moe(c.seed === undefined ? args : seededMoEArgs(args, layerSeed(c, 1000 + 100 * i) as number));
  });
}

/**
 * The routing metrics of each MoE layer's last call, by layer name (`null` for a layer not yet
 * called): tokens per expert, dropped fraction, experts per token, importance, auxiliary loss,
 * and the OT solver's numbers for OT routers (names in `@tfjs-moe/router`'s `RoutingMetrics`).
 *
 * @example
 * ```ts
 * model.predict(images);
 * moeMetrics(model)['block1_moe']?.droppedFraction; // e.g. 0.03
 * ```
 */
export function moeMetrics(model: tf.LayersModel): Record<string, RoutingMetricValues | null> {
  return Object.fromEntries(moeLayers(model).map((l) => [l.name, l.lastMetrics]));
}
