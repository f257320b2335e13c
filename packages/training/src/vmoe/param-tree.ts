/**
 * The parameter tree of vmoe's `VisionTransformerMoe` (and vit_jax's dense ViT) as a checkpoint
 * holds it (shared/docs/vmoe-checkpoints.md, section 2): every path with its shape for given
 * sizes, the check of a checkpoint's arrays against it, and JAX's flattening order of the paths.
 * Which tfjs weight each path feeds is mapping.ts.
 */
import {ConfigError, ShapeError} from '@tfjs-moe/router';
import {CheckpointArrays, toFloat32} from './arrays';
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

/** Code-point order of `/`-joined paths, component by component (JAX's flattening order). */
export function compareKeyPaths(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] !== pb[i]) return pa[i] < pb[i] ? -1 : 1;
  }
  return pa.length - pb.length;
}
