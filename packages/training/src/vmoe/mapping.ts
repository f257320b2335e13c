/**
 * The parameter tree of vmoe's `VisionTransformerMoe` (and vit_jax's dense ViT) against the layers
 * of tfjs-moe's `vmoe()` / `vit()` (shared/docs/vmoe-checkpoints.md, sections 2 and 6.1): which
 * checkpoint path feeds which tfjs weight, with which reshape, in both directions.
 */
import * as tf from '@tensorflow/tfjs';
import {blockLayerNames} from '@tfjs-moe/models';
import {ConfigError, ShapeError} from '@tfjs-moe/router';
import {CheckpointArrays, sizeOf, toFloat32} from './arrays';
import {CheckpointError} from './byte-source';

/** The sizes that fix every parameter shape. */
export interface TreeSizes {
  patchSize: number;
  channels: number;
  hiddenSize: number;
  numHeads: number;
  mlpDim: number;
  depth: number;
  tokens: number;
  classToken: boolean;
  representationSize: number | null;
  numClasses: number;
  /** Blocks with a mixture of experts. */
  moeBlocks: number[];
  numExperts: number;
}

/** One checkpoint parameter: its path (and accepted alternative spellings) and shape. */
export interface ParamSpec {
  path: string;
  alternatives: string[];
  shape: number[];
}

/**
 * Every parameter a checkpoint of these sizes must hold, with its shape, in vmoe's naming
 * (`Encoder/encoderblock_i/...`) or vit_jax's (`Transformer/encoderblock_i/...`, pre-Linen
 * `MultiHeadDotProductAttention_1`, `LayerNorm_2`, `MlpBlock_3` or Linen per-class numbering).
 *
 * @example
 * ```ts
 * expectedParams(sizes, 'vmoe').find((p) => p.path === 'head/kernel')?.shape; // [R, K]
 * ```
 */
export function expectedParams(s: TreeSizes, naming: 'vmoe' | 'vit_jax'): ParamSpec[] {
  const d = s.hiddenSize;
  const H = s.numHeads;
  const h = d / H;
  const m = s.mlpDim;
  const E = s.numExperts;
  const out: ParamSpec[] = [];
  const add = (path: string, shape: number[], alternatives: string[] = []) => out.push({path, shape, alternatives});
  const enc = naming === 'vmoe' ? 'Encoder' : 'Transformer';
  add('embedding/kernel', [s.patchSize, s.patchSize, s.channels, d]);
  add('embedding/bias', [d]);
  if (s.classToken) add('cls', [1, 1, d]);
  add(`${enc}/posembed_input/pos_embedding`, [1, s.tokens, d]);
  for (let i = 0; i < s.depth; i++) {
    const b = `${enc}/encoderblock_${i}`;
    const names = naming === 'vmoe'
      ? {ln0: ['LayerNorm_0'], attn: ['SelfAttention'], ln1: ['LayerNorm_1'], mlp: ['Mlp']}
      : {ln0: ['LayerNorm_0'], attn: ['MultiHeadDotProductAttention_1', 'MultiHeadDotProductAttention_0'], ln1: ['LayerNorm_2', 'LayerNorm_1'], mlp: ['MlpBlock_3', 'MlpBlock_0']};
    const alt = (list: string[], rest: string) => list.map((n) => `${b}/${n}/${rest}`);
    const addAlt = (list: string[], rest: string, shape: number[]) => {
      const [first, ...others] = alt(list, rest);
      add(first, shape, others);
    };
    addAlt(names.ln0, 'scale', [d]);
    addAlt(names.ln0, 'bias', [d]);
    for (const q of ['query', 'key', 'value']) {
      addAlt(names.attn, `${q}/kernel`, [d, H, h]);
      addAlt(names.attn, `${q}/bias`, [H, h]);
    }
    addAlt(names.attn, 'out/kernel', [H, h, d]);
    addAlt(names.attn, 'out/bias', [d]);
    addAlt(names.ln1, 'scale', [d]);
    addAlt(names.ln1, 'bias', [d]);
    if (s.moeBlocks.includes(i)) {
      add(`${b}/Moe/Mlp/Dense_0/kernel`, [E, d, m]);
      add(`${b}/Moe/Mlp/Dense_0/bias`, [E, m]);
      add(`${b}/Moe/Mlp/Dense_1/kernel`, [E, m, d]);
      add(`${b}/Moe/Mlp/Dense_1/bias`, [E, d]);
      add(`${b}/Moe/Router/dense/kernel`, [d, E]);
    } else {
      addAlt(names.mlp, 'Dense_0/kernel', [d, m]);
      addAlt(names.mlp, 'Dense_0/bias', [m]);
      addAlt(names.mlp, 'Dense_1/kernel', [m, d]);
      addAlt(names.mlp, 'Dense_1/bias', [d]);
    }
  }
  add(`${enc}/encoder_norm/scale`, [d]);
  add(`${enc}/encoder_norm/bias`, [d]);
  if (s.representationSize != null) {
    add('pre_logits/kernel', [d, s.representationSize]);
    add('pre_logits/bias', [s.representationSize]);
  }
  add('head/kernel', [s.representationSize ?? d, s.numClasses]);
  add('head/bias', [s.numClasses]);
  return out;
}

const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Checks a checkpoint's arrays against {@link expectedParams}: every parameter present with its
 * shape, and no parameter left over. Returns the arrays as float32 by canonical path (each
 * `values` is converted from the checkpoint's bytes when it is read: read it once).
 * Throws {@link ShapeError} naming the path with the expected and the found shape,
 * {@link CheckpointError} for a missing parameter, {@link ConfigError} for parameters that the
 * config does not explain (e.g. `MapHead`, `query_ln`: features that are not supported).
 *
 * @example
 * ```ts
 * const values = checkParams(arrays, expectedParams(sizes, 'vmoe'), 'ckpt_1000');
 * ```
 */
export function checkParams(arrays: CheckpointArrays, specs: ParamSpec[], file: string): Map<string, {shape: number[]; values: Float32Array}> {
  const used = new Set<string>();
  const out = new Map<string, {shape: number[]; values: Float32Array}>();
  for (const spec of specs) {
    const key = [spec.path, ...spec.alternatives].find((p) => arrays.has(p));
    if (key === undefined) throw new CheckpointError(file, 'parameter missing from the checkpoint', spec.path);
    const a = arrays.get(key)!;
    if (!same(a.shape, spec.shape)) {
      throw new ShapeError(key, `of shape [${spec.shape.join(',')}] (from the config)`, a.shape, `import-vmoe: ${file}`);
    }
    used.add(key);
    // Converted when read (once, by setModelWeights), so that the float32 copies of all the
    // parameters never exist at once beside the checkpoint's bytes.
    out.set(spec.path, {shape: a.shape, get values() { return toFloat32(a); }});
  }
  const extra = [...arrays.keys()].filter((k) => !used.has(k));
  if (extra.length > 0) {
    throw new ConfigError('checkpoint parameters', `only parameters that the config explains (unsupported feature or config mismatch in ${file})`, extra.slice(0, 8), 'import-vmoe');
  }
  return out;
}

type Values = Map<string, {shape: number[]; values: Float32Array}>;

/**
 * The mapping key of a tfjs weight (by its original name `layer/.../key`), or undefined. A
 * LayerNorm written with `scale`/`bias` names maps to `gamma`/`beta`.
 */
function weightKey(originalName: string, keys: string[]): string | undefined {
  const sorted = [...keys].sort((a, b) => b.length - a.length);
  const key = sorted.find((k) => originalName === k || originalName.endsWith(`/${k}`));
  if (key !== undefined) return key;
  const alias = Object.keys(LN_ALIASES).find((a) => originalName.endsWith(`/${a}`));
  const target = alias === undefined ? undefined : LN_ALIASES[alias as keyof typeof LN_ALIASES];
  return target !== undefined && keys.includes(target) ? target : undefined;
}

function unknownWeight(layer: tf.layers.Layer, name: string, keys: string[], context: string): ConfigError {
  return new ConfigError('model', `a layer "${layer.name}" whose weights the vmoe mapping knows (${keys.join(', ')})`, name, context);
}

const LN_ALIASES = {scale: 'gamma', bias: 'beta'};

/** Which tfjs layer and weight names each group of checkpoint paths feeds (shared by import and export). */
interface LayerMap {
  layer: string;
  /** tfjs weight name -> how to build it from checkpoint values (import) and split it back (export). */
  weights: Record<string, {paths: string[]; toTfjs: (v: Float32Array[]) => {shape: number[]; values: Float32Array}; fromTfjs: (w: Float32Array) => Float32Array[]}>;
}

const concatCols = (parts: Float32Array[], rows: number): Float32Array => {
  const widths = parts.map((p) => p.length / rows);
  const total = widths.reduce((a, b) => a + b, 0);
  const out = new Float32Array(rows * total);
  for (let r = 0; r < rows; r++) {
    let off = r * total;
    parts.forEach((p, i) => {
      out.set(p.subarray(r * widths[i], (r + 1) * widths[i]), off);
      off += widths[i];
    });
  }
  return out;
};

const splitCols = (w: Float32Array, rows: number, widths: number[]): Float32Array[] => {
  const total = widths.reduce((a, b) => a + b, 0);
  return widths.map((width, i) => {
    const start = widths.slice(0, i).reduce((a, b) => a + b, 0);
    const out = new Float32Array(rows * width);
    for (let r = 0; r < rows; r++) out.set(w.subarray(r * total + start, r * total + start + width), r * width);
    return out;
  });
};

/** The mapping of every layer of a model with these sizes (vmoe naming, canonical paths). */
function layerMaps(s: TreeSizes, naming: 'vmoe' | 'vit_jax'): LayerMap[] {
  const d = s.hiddenSize;
  const specs = new Map(expectedParams(s, naming).map((p) => [p.path, p]));
  const id = (path: string) => ({
    paths: [path],
    toTfjs: (v: Float32Array[]) => ({shape: specs.get(path)!.shape, values: v[0]}),
    fromTfjs: (w: Float32Array) => [w],
  });
  const reshaped = (path: string, shape: number[]) => ({
    paths: [path],
    toTfjs: (v: Float32Array[]) => ({shape, values: v[0]}),
    fromTfjs: (w: Float32Array) => [w],
  });
  const enc = naming === 'vmoe' ? 'Encoder' : 'Transformer';
  const maps: LayerMap[] = [
    {layer: 'patch_embedding', weights: {
      kernel: reshaped('embedding/kernel', [s.patchSize * s.patchSize * s.channels, d]),
      bias: id('embedding/bias'),
    }},
    {layer: 'position_embedding', weights: {embedding: id(`${enc}/posembed_input/pos_embedding`)}},
  ];
  if (s.classToken) maps.push({layer: 'class_token', weights: {token: id('cls')}});
  for (let i = 0; i < s.depth; i++) {
    const names = blockLayerNames(i);
    const b = `${enc}/encoderblock_${i}`;
    const [ln0, attn, ln1, mlp] = naming === 'vmoe'
      ? ['LayerNorm_0', 'SelfAttention', 'LayerNorm_1', 'Mlp']
      : ['LayerNorm_0', 'MultiHeadDotProductAttention_1', 'LayerNorm_2', 'MlpBlock_3'];
    maps.push({layer: names.norm1, weights: {gamma: id(`${b}/${ln0}/scale`), beta: id(`${b}/${ln0}/bias`)}});
    maps.push({layer: names.norm2, weights: {gamma: id(`${b}/${ln1}/scale`), beta: id(`${b}/${ln1}/bias`)}});
    const qkv = ['query', 'key', 'value'].map((q) => `${b}/${attn}/${q}`);
    maps.push({layer: names.attention, weights: {
      qkvKernel: {
        paths: qkv.map((q) => `${q}/kernel`),
        toTfjs: (v) => ({shape: [d, 3 * d], values: concatCols(v, d)}),
        fromTfjs: (w) => splitCols(w, d, [d, d, d]),
      },
      qkvBias: {
        paths: qkv.map((q) => `${q}/bias`),
        toTfjs: (v) => ({shape: [3 * d], values: concatCols(v, 1)}),
        fromTfjs: (w) => splitCols(w, 1, [d, d, d]),
      },
      outKernel: reshaped(`${b}/${attn}/out/kernel`, [d, d]),
      outBias: id(`${b}/${attn}/out/bias`),
    }});
    if (s.moeBlocks.includes(i)) {
      const moe = `${b}/Moe`;
      maps.push({layer: names.moe, weights: {
        kernel_in: id(`${moe}/Mlp/Dense_0/kernel`),
        bias_in: id(`${moe}/Mlp/Dense_0/bias`),
        kernel_out: id(`${moe}/Mlp/Dense_1/kernel`),
        bias_out: id(`${moe}/Mlp/Dense_1/bias`),
        'router/kernel': id(`${moe}/Router/dense/kernel`),
      }});
    } else {
      maps.push({layer: names.mlp, weights: {
        kernel1: id(`${b}/${mlp}/Dense_0/kernel`),
        bias1: id(`${b}/${mlp}/Dense_0/bias`),
        kernel2: id(`${b}/${mlp}/Dense_1/kernel`),
        bias2: id(`${b}/${mlp}/Dense_1/bias`),
      }});
    }
  }
  maps.push({layer: 'encoder_norm', weights: {gamma: id(`${enc}/encoder_norm/scale`), beta: id(`${enc}/encoder_norm/bias`)}});
  if (s.representationSize != null) {
    maps.push({layer: 'pre_logits', weights: {kernel: id('pre_logits/kernel'), bias: id('pre_logits/bias')}});
  }
  maps.push({layer: 'head', weights: {kernel: id('head/kernel'), bias: id('head/bias')}});
  return maps;
}

/**
 * Writes checkpoint values (from {@link checkParams}) into a model built by `vmoe()` / `vit()`.
 * With `consume`, each entry is removed from `values` once its layer is set, so the memory of
 * the checkpoint's bytes is released leaf by leaf while the model fills.
 * Throws {@link ConfigError} when the model's layers are not those of the mapping.
 *
 * @example
 * ```ts
 * setModelWeights(model, checkParams(arrays, expectedParams(sizes, 'vmoe'), file), sizes, 'vmoe');
 * ```
 */
export function setModelWeights(model: tf.LayersModel, values: Values, s: TreeSizes, naming: 'vmoe' | 'vit_jax', consume = false): void {
  for (const map of layerMaps(s, naming)) {
    const layer = model.getLayer(map.layer);
    tf.tidy(() => {
      const named: Record<string, tf.Tensor> = {};
      for (const [w, spec] of Object.entries(map.weights)) {
        const {shape, values: v} = spec.toTfjs(spec.paths.map((p) => values.get(p)!.values));
        named[w] = tf.tensor(v, shape, 'float32');
        if (consume) for (const p of spec.paths) values.delete(p);
      }
      const keys = Object.keys(named);
      layer.setWeights(layer.weights.map((w) => {
        const key = weightKey(w.originalName, keys);
        if (key === undefined) throw unknownWeight(layer, w.originalName, keys, 'import-vmoe');
        return named[key];
      }));
    });
  }
}

/**
 * Reads a model built by `vmoe()` / `vit()` back into vmoe's parameter tree (float32 values by
 * `/`-joined vmoe path, in vmoe's key order).
 *
 * @example
 * ```ts
 * const params = modelParams(model, sizes); // Map {'Encoder/encoder_norm/bias' => ..., ...}
 * ```
 */
export function modelParams(model: tf.LayersModel, s: TreeSizes): Map<string, {shape: number[]; values: Float32Array}> {
  const specs = new Map(expectedParams(s, 'vmoe').map((p) => [p.path, p]));
  const out = new Map<string, {shape: number[]; values: Float32Array}>();
  for (const map of layerMaps(s, 'vmoe')) {
    const layer = model.getLayer(map.layer);
    const keys = Object.keys(map.weights);
    for (const w of layer.weights) {
      const key = weightKey(w.originalName, keys);
      if (key === undefined) throw unknownWeight(layer, w.originalName, keys, 'export-vmoe');
      const spec = map.weights[key];
      const parts = spec.fromTfjs(w.read().dataSync() as Float32Array);
      spec.paths.forEach((p, i) => {
        const shape = specs.get(p)!.shape;
        if (parts[i].length !== sizeOf(shape)) throw new ShapeError(p, `of shape [${shape.join(',')}]`, [parts[i].length], 'export-vmoe');
        out.set(p, {shape, values: parts[i]});
      });
    }
  }
  return new Map([...out.entries()].sort(([a], [b]) => compareKeyPaths(a, b)));
}

/** Code-point order of `/`-joined paths, component by component (JAX's flattening order). */
export function compareKeyPaths(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] !== pb[i]) return pa[i] < pb[i] ? -1 : 1;
  }
  return pa.length - pb.length;
}
