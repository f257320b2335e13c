/**
 * Import of vmoe checkpoints against the float64 numpy forward pass of fixtures/generate.py
 * (tanh GELU, LayerNorm 1e-6, pre_logits, groups of 20 tokens spanning 4 images, vmoe's capacity
 * rounded to a multiple of 4, batch priority, top-1 / top-2, the k-sparse OT router): logits
 * within 1e-4 of the largest reference logit, for every format and routing setting; save/load;
 * typed errors for bad configs and mismatched checkpoints.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '@tfjs-moe/models';
import {resolveViTConfig, vmoe, VMoEConfig} from '@tfjs-moe/models';
import {ConfigError, InvalidArgumentError, ShapeError} from '@tfjs-moe/router';
import {fileHandler} from '../../src/io/file-io';
import {
  buildFromArrays, CheckpointError, checkParams, expectedParams, readCheckpointParams, setModelWeights, treeSizes, UnsupportedRouterError, vmoeConfigToTfjs,
} from '../../src/vmoe/index';
import {fileSource} from '../../src/vmoe/node-source';
import {importVMoEFromFiles, importVMoEToFolder} from '../../src/vmoe/node';
import {configPath, fixture, images, MAIN_CHECKPOINTS, predict, readConfig, reference, relativeError, tmpDir} from './helpers';

const TOL = 1e-4;
const SETTINGS = Object.keys(reference.logits);

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('import-vmoe: logits of the numpy reference', () => {
  it('runs on the cpu backend', () => {
    expect(tf.getBackend()).toBe('cpu');
  });

  it('every checkpoint format gives the reference logits (top-2, capacity factor 1, drops)', async () => {
    const x = images(reference.images);
    for (const ckpt of MAIN_CHECKPOINTS) {
      const {model} = await importVMoEFromFiles(fixture(ckpt), configPath('topk2-cf1'));
      expect({ckpt, err: relativeError(predict(model, x), reference.logits['topk2-cf1']) < TOL}).toEqual({ckpt, err: true});
      model.dispose();
    }
    x.dispose();
  });

  it.each(SETTINGS)('routing setting %s gives its reference logits', async (setting) => {
    const x = images(reference.images);
    const {model} = await importVMoEFromFiles(fixture('v1', 'ckpt'), configPath(setting));
    const got = predict(model, x);
    expect(relativeError(got, reference.logits[setting])).toBeLessThan(TOL);
    // The settings differ from each other by far more than the tolerance (generator-checked), so
    // this also shows that each setting is the one applied.
    for (const other of SETTINGS.filter((s) => s !== setting)) {
      expect(relativeError(got, reference.logits[other])).toBeGreaterThan(10 * TOL);
    }
    model.dispose();
    x.dispose();
  });

  it("classifier 'gap' without pre_logits, and a dense vit_jax ViT (.npz, pre-Linen names) into vit()", async () => {
    const gap = await importVMoEFromFiles(fixture('gap.msgpack'), configPath('gap'));
    const xg = images(reference.gap.images);
    expect(relativeError(predict(gap.model, xg), reference.gap.logits)).toBeLessThan(TOL);
    expect(gap.model.layers.some((l) => l.name === 'pre_logits')).toBe(false);
    const dense = await importVMoEFromFiles(fixture('vit_jax.npz'), configPath('vit_jax'));
    expect(dense.config.isMoE).toBe(false);
    expect(dense.config.naming).toBe('vit_jax');
    const xv = images(reference.vit_jax.images);
    expect(relativeError(predict(dense.model, xv), reference.vit_jax.logits)).toBeLessThan(TOL);
    tf.dispose([xg, xv]);
    gap.model.dispose();
    dense.model.dispose();
  });

  it('the saved folder loads with tf.loadLayersModel and predicts the same, without leaking tensors', async () => {
    const out = path.join(tmpDir(), 'model');
    const {model} = await importVMoEToFolder(fixture('v1', 'ckpt'), configPath('topk2-cf1-bpr'), out);
    expect(fs.existsSync(path.join(out, 'model.json'))).toBe(true);
    const loaded = await tf.loadLayersModel(fileHandler(out));
    const x = images(reference.images);
    const a = predict(model, x);
    const b = predict(loaded, x);
    // MoE layers keep the last call's metrics; later calls replace them.
    const before = tf.memory().numTensors;
    predict(loaded, x);
    predict(loaded, x);
    expect(tf.memory().numTensors).toBe(before);
    expect(b).toEqual(a);
    expect(relativeError(b, reference.logits['topk2-cf1-bpr'])).toBeLessThan(TOL);
    tf.dispose(x);
    model.dispose();
    loaded.dispose();
  });
});

describe('import-vmoe: typed errors', () => {
  const writeConfig = (cfg: unknown) => {
    const file = path.join(tmpDir(), 'config.json');
    fs.writeFileSync(file, JSON.stringify(cfg));
    return file;
  };

  it('an unsupported router is an UnsupportedRouterError naming the router and the supported ones', async () => {
    const supported = 'Supported: NoisyTopExpertsPerItemRouter (top-k experts per token, with or without batch priority) and '
      + 'KSparseProjectionTransportTopItemsPerExpertRouter (sparse OT, experts choose tokens, without batch priority).';
    const cases: Array<[string, string]> = [
      ['vmoe.projects.sparsity_constrained_ot.kl_projection_routing.KLProjectionNoisyTopItemsPerExpertRouter', 'entropic OT (ott-jax Sinkhorn)'],
      ['NoisyTopItemsPerExpertRouter', "expert choice: each expert takes its top tokens; tfjs-moe's expert-choice router sizes capacity differently from vmoe's compute_capacity"],
      ['KSparseProjectionTransportTopExpertsPerItemRouter', 'k-sparse OT with tokens choosing experts (the token-choice dispatcher on plan values, with or without batch priority)'],
    ];
    for (const [name, what] of cases) {
      const cfg = readConfig('topk2-cf1') as {encoder: {moe: {router: Record<string, unknown>}}};
      cfg.encoder.moe.router.name = name;
      const err = await importVMoEFromFiles(fixture('v1', 'ckpt'), writeConfig(cfg)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnsupportedRouterError);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as UnsupportedRouterError).router).toBe(name);
      expect((err as ConfigError).argument).toBe('encoder.moe.router.name');
      expect((err as Error).message).toBe(`vmoe config: encoder.moe.router.name "${name}" (${what}) is not supported by the importer. ${supported}`);
    }
    // The supported OT router with batch priority: not supported, said so.
    const ot = readConfig('ot-paper') as {encoder: {moe: {router: {dispatcher: Record<string, unknown>}}}};
    ot.encoder.moe.router.dispatcher.batch_priority = true;
    const bpr = await importVMoEFromFiles(fixture('v1', 'ckpt'), ot).catch((e: unknown) => e);
    expect(bpr).toBeInstanceOf(ConfigError);
    expect((bpr as Error).message).toBe('vmoe config: Expected encoder.moe.router.dispatcher.batch_priority to be absent or false '
      + '(KSparseProjectionTransportTopItemsPerExpertRouter lets experts choose tokens; batch priority is not supported with it) '
      + '(other values are not supported), but got true.');
  });

  it('an unsupported config field names the field, its value and the supported fields', async () => {
    const cfg = readConfig('topk2-cf1') as {encoder: {moe: Record<string, unknown>}};
    cfg.encoder.moe.ensemble_size = 2;
    const err = await importVMoEFromFiles(fixture('v1', 'ckpt'), cfg).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).argument).toBe('encoder.moe.ensemble_size');
    expect((err as ConfigError).value).toBe(2);
    expect((err as Error).message).toMatch(/^vmoe config: field encoder\.moe\.ensemble_size = 2 is not supported by the importer\. Supported fields of encoder\.moe: num_experts, layers, group_size, router \(and the training-only .*\)\.$/);
    const top = await importVMoEFromFiles(fixture('v1', 'ckpt'), {...readConfig('topk2-cf1'), stem: 'conv'}).catch((e: unknown) => e);
    expect((top as Error).message).toMatch(/^vmoe config: field stem = "conv" is not supported by the importer\. Supported fields at the top level: name, num_classes,/);
  });

  it('an unknown or unsupported config field is a ConfigError naming it; bfloat16 dispatch needs the opt-in', async () => {
    const cfg = readConfig('topk2-cf1') as {encoder: Record<string, unknown> & {moe: {router: {dispatcher: Record<string, unknown>}}}; classifier: string};
    const withField = {...cfg, encoder: {...cfg.encoder, attention_qk_norm: true}};
    await expect(importVMoEFromFiles(fixture('v1', 'ckpt'), withField)).rejects.toThrow(/Expected encoder.attention_qk_norm to be false/);
    const unknown = {...cfg, encoder: {...cfg.encoder, moe: {...cfg.encoder.moe, capacity_facter: 2}}};
    const e = await importVMoEFromFiles(fixture('v1', 'ckpt'), unknown).catch((x: unknown) => x);
    expect((e as ConfigError).argument).toBe('encoder.moe.capacity_facter');
    expect((e as Error).message).toMatch(/^vmoe config: field encoder\.moe\.capacity_facter = 2 is not supported/);
    await expect(importVMoEFromFiles(fixture('v1', 'ckpt'), {...cfg, classifier: 'map'})).rejects.toThrow(ConfigError);
    cfg.encoder.moe.router.dispatcher.bfloat16 = true;
    const bf = await importVMoEFromFiles(fixture('v1', 'ckpt'), cfg).catch((x: unknown) => x);
    expect((bf as ConfigError).argument).toBe('encoder.moe.router.dispatcher.bfloat16');
    const {model} = await importVMoEFromFiles(fixture('v1', 'ckpt'), cfg, {acceptFloat32Dispatch: true});
    model.dispose();
  });

  it('a checkpoint shape that disagrees with the config is a ShapeError naming the path, expected and found shapes', async () => {
    const cfg = readConfig('topk2-cf1') as {encoder: Record<string, unknown>};
    cfg.encoder.mlp_dim = 16;
    const err = await importVMoEFromFiles(fixture('params.msgpack'), cfg).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShapeError);
    expect((err as Error).message).toBe(
      `import-vmoe: ${fixture('params.msgpack')}: Expected Encoder/encoderblock_0/Mlp/Dense_0/kernel to be of shape [8,16] (from the config), but got [8,12].`,
    );
    const moeCfg = readConfig('topk2-cf1') as {encoder: {moe: Record<string, unknown>}};
    moeCfg.encoder.moe.num_experts = 8;
    const e2 = await importVMoEFromFiles(fixture('params.npz'), moeCfg).catch((e: unknown) => e);
    expect((e2 as ShapeError).argument).toBe('Encoder/encoderblock_1/Moe/Mlp/Dense_0/kernel');
    const fewer = readConfig('topk2-cf1') as {encoder: {num_layers: number; moe: {layers: number[]}}};
    fewer.encoder.num_layers = 11;
    fewer.encoder.moe.layers = [1];
    const e3 = await importVMoEFromFiles(fixture('v1', 'ckpt'), fewer).catch((e: unknown) => e);
    expect(e3).toBeInstanceOf(CheckpointError);
    expect((e3 as CheckpointError).path).toBe('Encoder/encoderblock_10/Mlp/Dense_0/kernel');
  });

  it('a missing config file or checkpoint names the file', async () => {
    const noConfig = await importVMoEFromFiles(fixture('v1', 'ckpt'), fixture('configs', 'nope.json')).catch((e: unknown) => e);
    expect(noConfig).toBeInstanceOf(InvalidArgumentError);
    expect((noConfig as Error).message).toBe(`Expected config to be a JSON file holding vmoe's config.model, but got "${fixture('configs', 'nope.json')} (no such file)".`);
    const err = await importVMoEFromFiles(fixture('v1', 'nope'), configPath('topk2-cf1')).catch((e: unknown) => e);
    expect((err as CheckpointError).file).toBe(fixture('v1', 'nope.index'));
  });

  it('a folder where a file is expected names the argument, the path and what is wrong', async () => {
    const dir = tmpDir();
    for (const name of ['dir.msgpack', 'dir.npz', 'cfg']) fs.mkdirSync(path.join(dir, name));
    const msgpack = await importVMoEFromFiles(path.join(dir, 'dir.msgpack'), configPath('topk2-cf1')).catch((e: unknown) => e);
    expect(msgpack).toBeInstanceOf(InvalidArgumentError);
    expect((msgpack as Error).message).toBe(`Expected checkpoint to be a flax .msgpack file, but got "${path.join(dir, 'dir.msgpack')} (a folder)".`);
    const npz = await importVMoEFromFiles(path.join(dir, 'dir.npz'), configPath('topk2-cf1')).catch((e: unknown) => e);
    expect((npz as Error).message).toBe(`Expected checkpoint to be a .npz file, but got "${path.join(dir, 'dir.npz')} (a folder)".`);
    const cfg = await importVMoEFromFiles(fixture('params.npz'), path.join(dir, 'cfg')).catch((e: unknown) => e);
    expect((cfg as Error).message).toBe(`Expected config to be a JSON file holding vmoe's config.model, but got "${path.join(dir, 'cfg')} (a folder)".`);
    // A folder given as a partitioned prefix: the checkpoints inside are named.
    const prefix = await importVMoEFromFiles(fixture('v1'), configPath('topk2-cf1')).catch((e: unknown) => e);
    expect((prefix as InvalidArgumentError).argument).toBe('checkpoint');
    expect((prefix as Error).message).toBe('Expected checkpoint to be a partitioned checkpoint prefix (<prefix>.index + <prefix>.data-*), a .msgpack or a .npz file, '
      + `but got "${fixture('v1')} (a folder; it holds the checkpoint ${fixture('v1', 'ckpt')})".`);
    // The file source itself refuses a folder (API users who open files themselves).
    const direct = await fileSource(path.join(dir, 'dir.msgpack')).catch((e: unknown) => e);
    expect(direct).toBeInstanceOf(CheckpointError);
    expect((direct as Error).message).toBe(`${path.join(dir, 'dir.msgpack')}: a folder, not a checkpoint file`);
  });

  it('importing into a folder that holds files is refused unless overwrite, and leaves the folder as it was', async () => {
    const out = tmpDir();
    fs.writeFileSync(path.join(out, 'notes.txt'), 'mine');
    const err = await importVMoEToFolder(fixture('params.npz'), configPath('topk2-cf1'), out).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toBe(`outDir ${out} already holds notes.txt; pass overwrite: true to replace its contents (or choose another outDir).`);
    expect(fs.readdirSync(out)).toEqual(['notes.txt']);
    const file = path.join(out, 'notes.txt');
    const onFile = await importVMoEToFolder(fixture('params.npz'), configPath('topk2-cf1'), file).catch((e: unknown) => e);
    expect((onFile as Error).message).toBe(`Expected outDir to be a folder (or a path where one can be created), but got "${file} (an existing file)".`);
    const {model} = await importVMoEToFolder(fixture('params.npz'), configPath('topk2-cf1'), out, {overwrite: true});
    model.dispose();
    expect(fs.readdirSync(out).sort()).toEqual(['model.json', 'weights.bin']);
  });

  it('streams leaf by leaf: setModelWeights with consume releases each value once set, same logits', async () => {
    const {arrays} = await readCheckpointParams(fixture('params.npz'), fileSource);
    const cfg = readConfig('topk2-cf1');
    const a = buildFromArrays(arrays, cfg, 'params.npz');
    expect(arrays.size).toBeGreaterThan(0);
    const imported = vmoeConfigToTfjs(cfg, [8, 8], 3);
    const moe = imported.config as VMoEConfig;
    const sizes = treeSizes(resolveViTConfig(moe), moe.moeBlocks as number[], moe.moe.numExperts);
    const values = checkParams(arrays, expectedParams(sizes, 'vmoe'), 'params.npz');
    const count = values.size;
    const b = vmoe(moe);
    const before = tf.memory().numTensors;
    setModelWeights(b, values, sizes, 'vmoe', true);
    expect(values.size).toBe(0);
    expect(count).toBe(arrays.size);
    expect(tf.memory().numTensors).toBe(before);
    const x = images(reference.images);
    expect(predict(b, x)).toEqual(predict(a.model, x));
    expect(relativeError(predict(b, x), reference.logits['topk2-cf1'])).toBeLessThan(TOL);
    x.dispose();
    a.model.dispose();
    b.dispose();
  });
});
