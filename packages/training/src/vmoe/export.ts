/**
 * Export of a tfjs-moe `vit()` / `vmoe()` model to google-research/vmoe: the parameters as a V1
 * partitioned checkpoint (`<prefix>.index` + `<prefix>.data-NNNNN-of-MMMMM`, keys sorted as JAX
 * flattens them) and vmoe's `config.model` as JSON, so that training can continue at scale.
 */
import * as tf from '@tensorflow/tfjs';
import {ConfigError, MoE} from '@tfjs-moe/router';
import {EncodableValue as Encodable, encode, encodeParts, Ext} from './encode';
import {modelParams} from './mapping';
import {compareKeyPaths, type TreeSizes} from './param-tree';
import {shardName, SHARD_MARKER, V1_VERSION} from './partitioned';

/** Options of {@link exportVMoE}. */
export interface VMoEExportOptions {
  /** Number of data shards (leaves are spread by size). Default 1. */
  shards?: number;
  /**
   * vmoe's MLPs use the tanh approximation of GELU. A model trained with the exact (erf) GELU
   * (`'gelu'`, tfjs-moe's default) is an error unless this is true; then vmoe computes a slightly
   * different function (about 1e-3 on activations). Default false.
   */
  allowGeluApproximation?: boolean;
}

/** What {@link exportVMoE} returns: files by name (relative to the prefix's folder) and the config. */
export interface VMoEExport {
  /** File name -> byte parts, in order. Names: `<base>.index`, `<base>.data-...`. */
  files: Map<string, Uint8Array[]>;
  /** vmoe's `config.model` (JSON-ready). */
  config: Record<string, unknown>;
  /** `config.evaluate.model_overrides` when the evaluation capacity factor differs, else null. */
  evalOverrides: Record<string, unknown> | null;
}

const ctx = 'export-vmoe';
type Cfg = Record<string, unknown>;

function layerConfig(model: tf.LayersModel, name: string): Cfg | null {
  try {
    return model.getLayer(name).getConfig() as Cfg;
  } catch {
    return null;
  }
}

function checkActivation(act: unknown, where: string, options: VMoEExportOptions): void {
  if (act === 'gelu_new') return;
  if (act === 'gelu' && options.allowGeluApproximation) return;
  throw new ConfigError(`${where}.activation`, "'gelu_new' (vmoe's tanh GELU), or 'gelu' with allowGeluApproximation (CLI --allow-gelu-approximation)", act, ctx);
}

/** The vmoe router config of one tfjs MoE layer. */
function routerConfig(layer: MoE, tokens: number): {router: Cfg; groupSize: number} {
  const c = layer.getConfig() as Cfg;
  const r = (c.router as {className: string; config: Cfg});
  const rc = r.config;
  const where = `${layer.name}.router`;
  if (c.normalizeCombineWeights === true) throw new ConfigError(`${layer.name}.normalizeCombineWeights`, 'false (vmoe does not renormalize combine weights)', true, ctx);
  if (c.useBias === false) throw new ConfigError(`${layer.name}.useBias`, 'true (vmoe experts have biases)', false, ctx);
  const g = c.groupSize as number | null;
  let groupSize: number;
  if (c.groupingMode === 'flat' || g == null) groupSize = g ?? tokens;
  else if (tokens % g === 0) groupSize = g;
  else throw new ConfigError(`${layer.name}.groupSize`, `a divisor of the tokens per image ${tokens} (per-example groups) or groupingMode 'flat'`, g, ctx);
  const dispatcher: Cfg = {name: 'einsum', bfloat16: false, capacity_factor: c.capacityFactor};
  const capacityFields = (o: Cfg) => {
    dispatcher.capacity_ceil_or_round = o.capacityRounding ?? 'ceil';
    dispatcher.capacity_multiple_of = o.capacityMultipleOf ?? null;
    if (o.fixedCapacity != null) {
      delete dispatcher.capacity_factor;
      dispatcher.capacity = o.fixedCapacity;
    }
  };
  if (r.className === 'TopKRouter' || r.className === 'VMoETopKRouter') {
    if (rc.normalizeGates === true) throw new ConfigError(`${where}.normalizeGates`, 'false (vmoe combines with the raw softmax gates)', true, ctx);
    dispatcher.batch_priority = rc.batchPrioritizedRouting === true;
    if (r.className === 'VMoETopKRouter') capacityFields(rc);
    else dispatcher.capacity_multiple_of = null;
    return {
      router: {
        name: 'NoisyTopExpertsPerItemRouter',
        num_selected_experts: rc.k,
        noise_std: 1.0,
        importance_loss_weight: 0.005,
        load_loss_weight: 0.005,
        dispatcher,
      },
      groupSize,
    };
  }
  if (r.className === 'SparseOTRouter' || r.className === 'VMoESparseOTRouter') {
    // The router's parts as its getConfig() writes them ({className, config} objects).
    const solver = rc.solver as {className?: string; config?: {formulation?: string; maxIterations?: number; learningRate?: number}};
    const assignment = rc.assignment as {className?: string; config?: {dispatch?: string}};
    const ok = assignment?.className === 'ExpertsChooseTokens' && assignment.config?.dispatch === 'top-capacity' && solver?.className === 'Adam'
      && solver.config?.formulation === 'semidual' && rc.gamma === 1 && rc.cost === 'negative-softmax'
      && (rc.gradient as {className?: string})?.className === 'SoftmaxCombine';
    if (!ok) {
      throw new ConfigError(where, "a sparse-OT router with preset 'paper' (semi-dual, Adam, experts choose tokens, top-capacity dispatch, softmax combine weights)", rc, ctx);
    }
    if (r.className === 'VMoESparseOTRouter') capacityFields(rc);
    else dispatcher.capacity_multiple_of = rc.capacityMultipleOf ?? 4;
    return {
      router: {
        name: 'vmoe.projects.sparsity_constrained_ot.ksparse_projection_routing.KSparseProjectionTransportTopItemsPerExpertRouter',
        maxiter: solver.config?.maxIterations ?? 20,
        adam_lr: solver.config?.learningRate ?? 1e-2,
        dispatcher,
      },
      groupSize,
    };
  }
  throw new ConfigError(where, "a router that vmoe has (TopKRouter, VMoETopKRouter, or SparseOTRouter with preset 'paper')", r.className, ctx);
}

/**
 * vmoe's model config for a tfjs-moe `vit()` / `vmoe()` model, and the parameter-tree sizes.
 * Throws {@link ConfigError} naming the layer or field that vmoe cannot express (a router it does
 * not have, renormalized combine weights, exact GELU without `allowGeluApproximation`, LayerNorm
 * epsilon other than 1e-6, ...).
 *
 * @example
 * ```ts
 * const {config} = modelToVMoEConfig(vmoe({preset: 'mnist-tiny', activation: 'gelu_new', moe: {numExperts: 4, router: 'topk'}}));
 * ```
 */
export function modelToVMoEConfig(model: tf.LayersModel, options: VMoEExportOptions = {}): {config: Cfg; evalOverrides: Cfg | null; sizes: TreeSizes} {
  const patch = layerConfig(model, 'patch_embedding');
  const head = layerConfig(model, 'head');
  if (!patch || !head) throw new ConfigError('model', 'a model built by vit() or vmoe() (layers patch_embedding ... head)', model.name, ctx);
  const p = patch.patchSize as number;
  const d = patch.hiddenSize as number;
  const inputShape = model.inputs[0].shape;
  const [height, width, channels] = [inputShape[1], inputShape[2], inputShape[3]] as number[];
  const classToken = layerConfig(model, 'class_token') != null;
  const pooling = layerConfig(model, 'pooling');
  const classifier = (pooling?.mode as string) ?? 'token';
  const tokens = (height / p) * (width / p) + (classToken ? 1 : 0);
  let depth = 0;
  while (layerConfig(model, `block${depth}_norm1`)) depth++;
  const norms = ['encoder_norm', ...Array.from({length: depth}, (_, i) => [`block${i}_norm1`, `block${i}_norm2`]).flat()];
  for (const n of norms) {
    const eps = layerConfig(model, n)?.epsilon as number | undefined;
    if (eps === undefined || Math.abs(eps - 1e-6) > 1e-12) throw new ConfigError(`${n}.epsilon`, '1e-6 (vmoe\'s LayerNorm)', eps, ctx);
  }
  const numHeads = layerConfig(model, 'block0_attention')?.numHeads as number;
  let mlpDim: number | null = null;
  const moeLayersFound: number[] = [];
  let numExperts = 0;
  let moeRouter: Cfg | null = null;
  let groupSize = 0;
  let evalCf: unknown = null;
  for (let i = 0; i < depth; i++) {
    const mlp = layerConfig(model, `block${i}_mlp`);
    const moeLayer = (() => {
      try {
        return model.getLayer(`block${i}_moe`) as MoE;
      } catch {
        return null;
      }
    })();
    const hidden = mlp ? (mlp.hiddenDim as number) : moeLayer?.hiddenDim;
    if (hidden === undefined) throw new ConfigError('model', `an MLP or MoE layer in block ${i}`, model.name, ctx);
    checkActivation(mlp ? mlp.activation : moeLayer?.activation, mlp ? `block${i}_mlp` : `block${i}_moe`, options);
    if (mlpDim !== null && hidden !== mlpDim) throw new ConfigError(`block${i} hidden width`, `equal in every block (vmoe has one mlp_dim, ${mlpDim})`, hidden, ctx);
    mlpDim = hidden;
    if (moeLayer) {
      const r = routerConfig(moeLayer, tokens);
      if (moeRouter && JSON.stringify(r) !== JSON.stringify({router: moeRouter, groupSize})) {
        throw new ConfigError(`block${i}_moe`, 'the same router and group size in every MoE block (vmoe has one moe config)', r, ctx);
      }
      if (numExperts && moeLayer.numExperts !== numExperts) throw new ConfigError(`block${i}_moe.numExperts`, `${numExperts} as in the other MoE blocks`, moeLayer.numExperts, ctx);
      moeRouter = r.router;
      groupSize = r.groupSize;
      numExperts = moeLayer.numExperts;
      evalCf = moeLayer.evalCapacityFactor !== moeLayer.capacityFactor ? moeLayer.evalCapacityFactor : null;
      moeLayersFound.push(i);
    }
  }
  const pre = layerConfig(model, 'pre_logits');
  if (pre && pre.activation !== 'tanh') throw new ConfigError('pre_logits.activation', "'tanh'", pre.activation, ctx);
  const representationSize = pre ? (pre.units as number) : null;
  const numClasses = head.units as number;
  const encoder: Cfg = {num_layers: depth, mlp_dim: mlpDim, num_heads: numHeads, dropout_rate: 0.0, attention_dropout_rate: 0.0};
  if (moeLayersFound.length > 0) {
    encoder.moe = {num_experts: numExperts, layers: moeLayersFound, dropout_rate: 0.0, split_rngs: false, group_size: groupSize, router: moeRouter};
  }
  const config: Cfg = {
    name: 'VisionTransformerMoe',
    num_classes: numClasses,
    patch_size: [p, p],
    hidden_size: d,
    classifier,
    representation_size: representationSize,
    encoder,
  };
  const evalOverrides = evalCf == null ? null : {encoder: {moe: {router: {dispatcher: {capacity_factor: evalCf}}}}};
  const sizes: TreeSizes = {
    patchSize: p, channels, hiddenSize: d, numHeads, mlpDim: mlpDim as number, depth, tokens, classToken,
    representationSize, numClasses, moeBlocks: moeLayersFound, numExperts,
  };
  return {config, evalOverrides, sizes};
}

const sliceNd = (shape: number[]) => encode(shape.map((n) => encode([0, n, null])));

/**
 * Exports a tfjs-moe model as a V1 partitioned vmoe checkpoint (float32 params, keys in JAX's
 * sorted order, leaves numbered in that order) plus vmoe's model config.
 *
 * @param model a model built by `vit()` / `vmoe()` (or imported from vmoe)
 * @param base the checkpoint's file base name (e.g. `ckpt_0`): files are `<base>.index`, ...
 * @throws ConfigError naming what vmoe cannot express (see {@link modelToVMoEConfig})
 * @example
 * ```ts
 * const {files, config} = exportVMoE(model, 'ckpt_0', {shards: 2});
 * ```
 */
export function exportVMoE(model: tf.LayersModel, base: string, options: VMoEExportOptions = {}): VMoEExport {
  const {config, evalOverrides, sizes} = modelToVMoEConfig(model, options);
  const params = modelParams(model, sizes);
  const shardCount = options.shards ?? 1;
  if (!Number.isInteger(shardCount) || shardCount < 1) throw new ConfigError('shards', 'a positive integer', shardCount, ctx);
  const shards: Map<string, Encodable>[] = Array.from({length: shardCount}, () => new Map<string, Encodable>([[SHARD_MARKER, true]]));
  const bytesIn = new Array<number>(shardCount).fill(0);
  const maxItems = Math.floor(2 ** 30 / 4);
  const infos = new Map<string, Ext>();
  const paths = [...params.keys()].sort(compareKeyPaths);
  paths.forEach((path, num) => {
    const {shape, values} = params.get(path)!;
    const target = bytesIn.indexOf(Math.min(...bytesIn));
    const bytes = new Uint8Array(values.length * 4);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i], true);
    const subchunks: Ext[] = [];
    for (let i = 0; i < Math.max(values.length, 1); i += maxItems) {
      const n = Math.min(maxItems, values.length - i);
      subchunks.push(new Ext(1, encode([[n], 'float32', bytes.subarray(4 * i, 4 * (i + n))])));
    }
    shards[target].set(String(num), [[subchunks, new Ext(6, sliceNd(shape))]]);
    bytesIn[target] += bytes.length;
    const shaped = encode([shape, 'float32', false, new Map()]);
    infos.set(path, new Ext(8, encode([shaped, [sliceNd(shape)], [target]])));
  });
  // The index tree: nested maps in sorted key order.
  const root = new Map<string, Encodable>();
  for (const path of paths) {
    const keys = path.split('/');
    let node = root;
    for (const k of keys.slice(0, -1)) {
      if (!node.has(k)) node.set(k, new Map<string, Encodable>());
      node = node.get(k) as Map<string, Encodable>;
    }
    node.set(keys[keys.length - 1], infos.get(path)!);
  }
  const files = new Map<string, Uint8Array[]>();
  files.set(`${base}.index`, encodeParts(new Map<string, Encodable>([['shard_count', shardCount], ['index', root], ['version', V1_VERSION]])));
  shards.forEach((s, i) => files.set(shardName(base, i, shardCount), encodeParts(s)));
  return {files, config, evalOverrides};
}
