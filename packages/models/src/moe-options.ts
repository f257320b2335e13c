/**
 * Options of the MoE blocks that `vmoe` builds and `moeify` inserts, and the choice of which
 * encoder blocks become MoE blocks.
 */
import * as tf from '@tensorflow/tfjs';
import {ConfigError} from '@tfjs-moe/router';
import type {MoEArgs} from './router-api';
import {assertPositiveInt} from './validate';

/**
 * Arguments passed to the MoE layer of `@tfjs-moe/router` (`moe(args)`) for every MoE block.
 * `hiddenDim` and `activation` default to the ViT's `mlpDim` and `activation`, so that every
 * expert has the shape of the dense MLP it replaces. Any other field of the MoE layer's
 * arguments is passed through unchanged.
 */
export interface MoEBlockOptions {
  /** Number of experts `E` in each MoE block. */
  numExperts: number;
  /**
   * The router: a registered name (`'sparse-ot'`, `'topk'`, `'expert-choice'`, `'sinkhorn'`),
   * `{name, ...routerArgs}`, or a `Router` instance (only for a single MoE block, since a layer
   * instance cannot be shared). Default: the MoE layer's default (`'sparse-ot'`).
   */
  router?: string | ({name: string} & Record<string, unknown>) | object;
  /** Capacity factor in training (slots per expert = tokens per group * factor / E, rounded up). */
  capacityFactor?: number;
  /** Capacity factor at evaluation time (default: the MoE layer's). */
  evalCapacityFactor?: number;
  /** When true, every token is processed by its experts (capacity = group size). */
  dropless?: boolean;
  /** Tokens per routing group (default: the MoE layer's, per example). */
  groupSize?: number;
  /** `'per-example'` (the inference default: a prediction never depends on the rest of the batch) or `'flat'`. */
  groupingMode?: 'per-example' | 'flat';
  /** When true, each kept token's combine weights are rescaled to sum to 1. */
  normalizeCombineWeights?: boolean;
  /** Hidden width of each expert; default the ViT's `mlpDim` (or the replaced MLP's). */
  hiddenDim?: number;
  /** Expert activation; default the ViT's `activation` (or the replaced MLP's). */
  activation?: string;
  /** Anything else the MoE layer accepts (e.g. `useBias`), passed through. */
  [passThrough: string]: unknown;
}

/**
 * Which encoder blocks (0-based) get a mixture of experts:
 * - `'every-other'`: blocks 1, 3, 5, ... (as V-MoE's "every 2");
 * - `'all'`: every block;
 * - `{last: n}`: the last `n` blocks (V-MoE's "last n");
 * - `number[]`: exactly these block indices.
 */
export type MoEBlockSelection = 'every-other' | 'all' | {last: number} | number[];

/**
 * Resolves a {@link MoEBlockSelection} for `depth` blocks into sorted, distinct block indices.
 * Throws {@link ConfigError} naming `argument` for anything else or an index out of range.
 *
 * @example
 * ```ts
 * selectMoEBlocks('every-other', 4); // [1, 3]
 * selectMoEBlocks({last: 1}, 4);     // [3]
 * ```
 */
export function selectMoEBlocks(selection: MoEBlockSelection, depth: number, argument = 'moeBlocks', context?: string): number[] {
  let blocks: number[];
  if (selection === 'every-other') {
    blocks = Array.from({length: depth}, (_, i) => i).filter((i) => i % 2 === 1);
  } else if (selection === 'all') {
    blocks = Array.from({length: depth}, (_, i) => i);
  } else if (Array.isArray(selection)) {
    blocks = selection.map((i) => {
      if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= depth) {
        throw new ConfigError(argument, `block indices in [0, ${depth - 1}]`, selection, context);
      }
      return i;
    });
    if (new Set(blocks).size !== blocks.length) {
      throw new ConfigError(argument, 'distinct block indices', selection, context);
    }
  } else if (selection != null && typeof selection === 'object' && 'last' in selection) {
    const n = assertPositiveInt(`${argument}.last`, selection.last, context);
    if (n > depth) throw new ConfigError(`${argument}.last`, `at most the number of blocks ${depth}`, n, context);
    blocks = Array.from({length: n}, (_, i) => depth - n + i);
  } else {
    throw new ConfigError(argument, "'every-other', 'all', {last: n} or a list of block indices", selection, context);
  }
  if (blocks.length === 0) {
    // e.g. 'every-other' (indices 1, 3, ...) of a model with a single MLP.
    throw new ConfigError(argument, `a selection of at least one of the ${depth} block(s) (indices 0..${depth - 1}; 'every-other' takes 1, 3, ...: use 'all' or [0] for a model with one)`, selection, context);
  }
  return [...blocks].sort((a, b) => a - b);
}

/**
 * Seeds an MoE layer's arguments through seeded initializers only: the expert kernels get
 * `{className: 'GlorotUniform', config: {seed}}` (which the layer's per-expert initializer turns
 * into a distinct draw per expert and kernel) and the router kernel a seeded LeCun-normal (the
 * router's default initializer), each only where the user chose no initializer. A `Router`
 * instance is left as it is.
 *
 * @example
 * ```ts
 * seededMoEArgs({numExperts: 4, hiddenDim: 8, router: 'topk'}, 7);
 * // {..., kernelInitializer: {className: 'GlorotUniform', config: {seed: 7}},
 * //  router: {name: 'topk', kernelInitializer: {className: 'LeCunNormal', config: {seed: 8}}}}
 * ```
 */
export function seededMoEArgs(args: MoEArgs, seed: number): MoEArgs {
  const routerInit = {className: 'LeCunNormal', config: {seed: seed + 1}};
  let router = args.router ?? 'sparse-ot';
  if (typeof router === 'string') {
    router = {name: router, kernelInitializer: routerInit};
  } else if (!(router instanceof tf.layers.Layer)) {
    const spec = router as {config?: Record<string, unknown>; kernelInitializer?: unknown};
    if (spec.config !== undefined && typeof (router as {className?: unknown}).className === 'string') {
      if (spec.config.kernelInitializer === undefined) router = {...router, config: {...spec.config, kernelInitializer: routerInit}} as never;
    } else if (spec.kernelInitializer === undefined) {
      router = {...router, kernelInitializer: routerInit} as never;
    }
  }
  return {
    ...args,
    router,
    kernelInitializer: args.kernelInitializer ?? {className: 'GlorotUniform', config: {seed}},
  };
}
