/**
 * The parameter tree of vmoe's `VisionTransformerMoe` (and vit_jax's dense ViT; param-tree.ts)
 * against the layers of tfjs-moe's `vmoe()` / `vit()` (shared/docs/vmoe-checkpoints.md, sections
 * 2 and 6.1): which checkpoint path feeds which tfjs weight, with which reshape, in both directions.
 */
import * as tf from '@tensorflow/tfjs';
import {blockLayerNames} from '@tfjs-moe/models';
import {ConfigError, ShapeError} from '@tfjs-moe/router';
import {sizeOf} from './arrays';
import {compareKeyPaths, expectedParams, type TreeSizes} from './param-tree';

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
