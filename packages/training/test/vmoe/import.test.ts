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
import {ConfigError, ShapeError} from '@tfjs-moe/router';
import {fileHandler} from '../../src/io/file-io';
import {CheckpointError} from '../../src/vmoe/index';
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

  it('an unsupported router is a ConfigError naming encoder.moe.router.name', async () => {
    const cfg = readConfig('topk2-cf1') as {encoder: {moe: {router: Record<string, unknown>}}};
    cfg.encoder.moe.router.name = 'vmoe.projects.sparsity_constrained_ot.kl_projection_routing.KLProjectionNoisyTopItemsPerExpertRouter';
    const err = await importVMoEFromFiles(fixture('v1', 'ckpt'), writeConfig(cfg)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).argument).toBe('encoder.moe.router.name');
    expect((err as Error).message).toBe(
      "vmoe config: Expected encoder.moe.router.name to be one of 'NoisyTopExpertsPerItemRouter', 'KSparseProjectionTransportTopItemsPerExpertRouter', but got \"vmoe.projects.sparsity_constrained_ot.kl_projection_routing.KLProjectionNoisyTopItemsPerExpertRouter\".",
    );
  });

  it('an unknown or unsupported config field is a ConfigError naming it; bfloat16 dispatch needs the opt-in', async () => {
    const cfg = readConfig('topk2-cf1') as {encoder: Record<string, unknown> & {moe: {router: {dispatcher: Record<string, unknown>}}}; classifier: string};
    const withField = {...cfg, encoder: {...cfg.encoder, attention_qk_norm: true}};
    await expect(importVMoEFromFiles(fixture('v1', 'ckpt'), withField)).rejects.toThrow(/Expected encoder.attention_qk_norm to be false/);
    const unknown = {...cfg, encoder: {...cfg.encoder, moe: {...cfg.encoder.moe, capacity_facter: 2}}};
    const e = await importVMoEFromFiles(fixture('v1', 'ckpt'), unknown).catch((x: unknown) => x);
    expect((e as ConfigError).argument).toBe('encoder.moe.capacity_facter');
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
    await expect(importVMoEFromFiles(fixture('v1', 'ckpt'), fixture('configs', 'nope.json'))).rejects.toThrow(CheckpointError);
    const err = await importVMoEFromFiles(fixture('v1', 'nope'), configPath('topk2-cf1')).catch((e: unknown) => e);
    expect((err as CheckpointError).file).toBe(fixture('v1', 'nope.index'));
  });
});
