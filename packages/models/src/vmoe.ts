/**
 * `vmoe(config)`: the ViT of `vit(config)` with MoE layers from `@tfjs-moe/router` in place of
 * the MLPs of chosen blocks (V-MoE, Riquelme et al. 2021).
 */
import * as tf from '@tensorflow/tfjs';
import {ConfigError} from '@tfjs-moe/router';
import {resolveViTConfig, ResolvedViTConfig, ViTConfig, ViTPresetName} from './config';
import {mlpBlock} from './layers/mlp';
import {MoEBlockOptions, MoEBlockSelection, selectMoEBlocks} from './moe-options';
import {moe, MoE, MoEArgs, RoutingMetricValues} from './router-api';
import {blockLayerNames, buildViT, layerSeed} from './vit';

/** A V-MoE: a {@link ViTConfig} plus the MoE blocks' options and which blocks get them. */
export interface VMoEConfig extends ViTConfig {
  /** Arguments of every MoE layer (experts, router, capacity, grouping, ...). */
  moe: MoEBlockOptions;
  /** Which blocks are MoE blocks. Default `'every-other'` (blocks 1, 3, ...). */
  moeBlocks?: MoEBlockSelection;
}

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
 * const probs = model.predict(tf.zeros([8, 28, 28, 1])) as tf.Tensor; // [8, 10]
 * const last2 = vmoe({preset: 'mnist-tiny', moeBlocks: {last: 2}, moe: {numExperts: 8, router: {name: 'topk', k: 2}}});
 * ```
 */
export function vmoe(config: VMoEConfigLike): tf.LayersModel {
  const c = resolveVMoEConfig(config);
  const moeSet = new Set(c.moeBlocks);
  const model = buildViT(c, (i) => {
    const names = blockLayerNames(i);
    if (!moeSet.has(i)) {
      return mlpBlock({hiddenDim: c.mlpDim, activation: c.activation, seed: layerSeed(c, 101 + 2 * i), name: names.mlp});
    }
    return moe(moeLayerArgs(c.moe, {hiddenDim: c.mlpDim, activation: c.activation}, names.moe));
  });
  if (c.seed !== undefined) {
    for (const i of c.moeBlocks) {
      seedMoEWeights(model.getLayer(blockLayerNames(i).moe) as MoE, layerSeed(c, 1000 + 100 * i) as number, {
        experts: c.moe.kernelInitializer === undefined, router: routerUsesDefaultInit(c.moe.router),
      });
    }
  }
  return model;
}

/**
 * Re-initializes a built MoE layer reproducibly from `seed`: with `experts` (default true),
 * expert `e`'s kernels from Glorot-uniform draws seeded by `(seed, e)` (distinct experts) and
 * biases 0; with `router` (default true), the router kernel `<float32>[d, E]` from a seeded
 * LeCun-normal draw (the router's default initializer). `vmoe` calls it when the config has a
 * `seed` (skipping the parts whose initializer the user chose); tfjs initializers alone cannot do
 * this, since one seeded initializer applied per expert would make every expert identical.
 *
 * @example
 * ```ts
 * seedMoEWeights(model.getLayer('block1_moe') as MoE, 42);
 * ```
 */
export function seedMoEWeights(layer: MoE, seed: number, parts: {experts?: boolean; router?: boolean} = {}): void {
  tf.tidy(() => {
    const E = layer.numExperts;
    const kIn = layer.kernelIn as tf.LayerVariable;
    const [, d, h] = kIn.shape as number[];
    if (parts.experts ?? true) {
      const kOut = layer.kernelOut as tf.LayerVariable;
      kIn.write(tf.stack(Array.from({length: E}, (_, e) => tf.initializers.glorotUniform({seed: seed + 2 * e + 1}).apply([d, h]))));
      kOut.write(tf.stack(Array.from({length: E}, (_, e) => tf.initializers.glorotUniform({seed: seed + 2 * e + 2}).apply([h, d]))));
      for (const b of [layer.biasIn, layer.biasOut]) if (b) b.write(tf.zerosLike(b.read()));
    }
    if (parts.router ?? true) {
      const routerWeights = layer.router.getWeights();
      const i = routerWeights.findIndex((w) => w.rank === 2 && w.shape[0] === d && w.shape[1] === E);
      if (i >= 0) {
        const fresh = routerWeights.slice();
        fresh[i] = tf.initializers.leCunNormal({seed: seed + 2 * E + 1}).apply([d, E]);
        layer.router.setWeights(fresh);
      }
    }
  });
}

/**
 * True unless the user chose the router's kernel initializer (or passed a Router instance).
 *
 * @example
 * ```ts
 * routerUsesDefaultInit('topk'); // true
 * routerUsesDefaultInit({name: 'topk', kernelInitializer: 'zeros'}); // false
 * ```
 */
export function routerUsesDefaultInit(router: unknown): boolean {
  if (router instanceof tf.layers.Layer) return false;
  return !(router != null && typeof router === 'object' && (router as {kernelInitializer?: unknown}).kernelInitializer !== undefined);
}

/**
 * The MoE layers of a model, in layer order.
 *
 * @example
 * ```ts
 * moeLayers(vmoe({preset: 'mnist-tiny', moe: {numExperts: 4}})).map((l) => l.name); // ['block1_moe', 'block3_moe']
 * ```
 */
export function moeLayers(model: tf.LayersModel): MoE[] {
  return model.layers.filter((l): l is MoE => l instanceof MoE);
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

/**
 * `<float32>[]`: the sum of the auxiliary losses of every MoE layer's last call (0 when there is
 * none). Call it inside the same gradient tape as the forward pass (e.g. in the function given
 * to `tf.variableGrads`) to train with the auxiliary losses in a custom loop; `model.fit` adds
 * them by itself. The caller owns the returned scalar.
 *
 * @example
 * ```ts
 * const {value, grads} = tf.variableGrads(() => {
 *   const probs = model.apply(images, {training: true}) as tf.Tensor;
 *   return tf.add(tf.losses.softmaxCrossEntropy(labels, tf.log(probs)), auxiliaryLoss(model)) as tf.Scalar;
 * });
 * ```
 */
export function auxiliaryLoss(model: tf.LayersModel): tf.Scalar {
  const losses = moeLayers(model).map((l) => l.lastAuxiliaryLoss).filter((t): t is tf.Scalar => t != null && !t.isDisposed);
  return tf.tidy(() => (losses.length === 0 ? tf.scalar(0) : tf.addN(losses) as tf.Scalar));
}
