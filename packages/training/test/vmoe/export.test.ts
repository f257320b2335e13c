/**
 * Export to vmoe's V1 partitioned format: export then import gives bit-identical weights and
 * logits; the written config equals the one imported (apart from training-only fields); the
 * index is V1 with keys in JAX's sorted order; what vmoe cannot express is a ConfigError.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {vmoe} from '@tfjs-moe/models';
import {ConfigError} from '@tfjs-moe/router';
import {fileHandler} from '../../src/io/file-io';
import {readPartitionedIndex} from '../../src/vmoe/index';
import {exportVMoEFromFolder, importVMoEFromFiles, writeVMoECheckpoint} from '../../src/vmoe/node';
import {fileSource} from '../../src/vmoe/node-source';
import {configPath, fixture, images, predict, readConfig, reference, tmpDir} from './helpers';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const weightsOf = (m: tf.LayersModel) => m.getWeights().map((w) => ({shape: w.shape, bits: Array.from(new Uint32Array((w.dataSync() as Float32Array).slice().buffer))}));

describe('export-vmoe', () => {
  it('runs on the cpu backend', () => {
    expect(tf.getBackend()).toBe('cpu');
  });

  it.each(['topk2-cf1-bpr', 'ot-paper'])('export then import is bit-identical (%s), over 3 shards', async (setting) => {
    const {model} = await importVMoEFromFiles(fixture('legacy', 'ckpt'), configPath(setting));
    const dir = tmpDir();
    const written = writeVMoECheckpoint(model, path.join(dir, 'ckpt_7'), {shards: 3});
    expect(written.map((f) => path.basename(f))).toEqual([
      'ckpt_7.index', 'ckpt_7.data-00000-of-00003', 'ckpt_7.data-00001-of-00003', 'ckpt_7.data-00002-of-00003', 'ckpt_7.config.json',
    ]);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'ckpt_7.config.json'), 'utf8'));
    const again = await importVMoEFromFiles(path.join(dir, 'ckpt_7'), config);
    expect(weightsOf(again.model).map((w) => w.bits)).toEqual(weightsOf(model).map((w) => w.bits));
    const x = images(reference.images);
    expect(predict(again.model, x)).toEqual(predict(model, x));
    x.dispose();
    // The config matches the imported one in every field that changes the logits.
    const source = readConfig(setting) as {encoder: {moe: {router: {dispatcher: Record<string, unknown>}}}};
    const drop = (o: Record<string, unknown>, keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));
    expect(drop(config, ['encoder', 'head_bias_init'])).toEqual(drop(source as Record<string, unknown>, ['encoder', 'head_bias_init']));
    expect(config.encoder.moe.router.dispatcher.capacity_factor).toBe(source.encoder.moe.router.dispatcher.capacity_factor);
    expect(config.encoder.moe.router.dispatcher.capacity_multiple_of).toBe(4);
    expect(config.encoder.moe.group_size).toBe(20);
    const src = await fileSource(path.join(dir, 'ckpt_7.index'));
    const index = await readPartitionedIndex(src);
    await src.close?.();
    expect(index.version).toBe('20220622');
    expect(index.leaves.map((l) => l.path.join('/')).slice(0, 3)).toEqual([
      'Encoder/encoder_norm/bias', 'Encoder/encoder_norm/scale', 'Encoder/encoderblock_0/LayerNorm_0/bias',
    ]);
    expect(new Set(index.leaves.flatMap((l) => l.shards))).toEqual(new Set([0, 1, 2]));
    model.dispose();
    again.model.dispose();
  });

  it('exports a model prototyped in tfjs-moe from its saved folder, with eval overrides', async () => {
    const model = vmoe({
      imageSize: 8, channels: 3, patchSize: 4, hiddenSize: 8, depth: 2, numHeads: 2, mlpDim: 12, numClasses: 3,
      activation: 'gelu_new', headActivation: 'linear', representationSize: 4, seed: 3, moeBlocks: [1],
      moe: {numExperts: 4, router: {name: 'vmoe-topk', k: 2}, capacityFactor: 1.25, evalCapacityFactor: 2, groupSize: 10, groupingMode: 'flat'},
    });
    const dir = tmpDir();
    await model.save(fileHandler(path.join(dir, 'model')));
    const written = await exportVMoEFromFolder(path.join(dir, 'model'), path.join(dir, 'out', 'ckpt_0'));
    expect(written.map((f) => path.basename(f))).toContain('ckpt_0.eval_overrides.json');
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'out', 'ckpt_0.config.json'), 'utf8'));
    expect(config.encoder.moe).toMatchObject({num_experts: 4, layers: [1], group_size: 10});
    expect(config.encoder.moe.router).toMatchObject({name: 'NoisyTopExpertsPerItemRouter', num_selected_experts: 2});
    const back = await importVMoEFromFiles(path.join(dir, 'out', 'ckpt_0'), config);
    expect(weightsOf(back.model).map((w) => w.bits)).toEqual(weightsOf(model).map((w) => w.bits));
    model.dispose();
    back.model.dispose();
  });

  it('what vmoe cannot express is a ConfigError naming it', async () => {
    const base = {imageSize: 8, channels: 3, patchSize: 4, hiddenSize: 8, depth: 2, numHeads: 2, mlpDim: 12, numClasses: 3, moeBlocks: [1]};
    const erf = vmoe({...base, moe: {numExperts: 4, router: 'topk'}});
    const e1 = (() => {
      try {
        writeVMoECheckpoint(erf, path.join(tmpDir(), 'x'));
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(e1).toBeInstanceOf(ConfigError);
    expect((e1 as ConfigError).argument).toBe('block0_mlp.activation');
    const sinkhorn = vmoe({...base, activation: 'gelu_new', moe: {numExperts: 4, router: 'sinkhorn'}});
    expect(() => writeVMoECheckpoint(sinkhorn, path.join(tmpDir(), 'x'))).toThrow(/block1_moe.router.*SinkhornRouter/);
    erf.dispose();
    sinkhorn.dispose();
  });

  it('an existing checkpoint under the prefix is refused unless overwrite, which also removes stale shards', async () => {
    const {model} = await importVMoEFromFiles(fixture('params.npz'), configPath('topk2-cf1'));
    const dir = tmpDir();
    const prefix = path.join(dir, 'ckpt_0');
    writeVMoECheckpoint(model, prefix, {shards: 3});
    const listing = fs.readdirSync(dir).sort();
    const bytes = fs.readFileSync(`${prefix}.index`);
    const err = (() => {
      try {
        writeVMoECheckpoint(model, prefix);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toBe(`prefix ${prefix}: a checkpoint is already there (ckpt_0.config.json, ckpt_0.data-00000-of-00003, ckpt_0.data-00001-of-00003, ckpt_0.data-00002-of-00003, ...); `
      + 'pass overwrite: true to replace it (or choose another prefix).');
    expect(fs.readdirSync(dir).sort()).toEqual(listing);
    expect(fs.readFileSync(`${prefix}.index`).equals(bytes)).toBe(true);
    // A model folder export is checked before the model is loaded.
    await expect(exportVMoEFromFolder(path.join(dir, 'no-model'), prefix)).rejects.toThrow(/a checkpoint is already there/);
    writeVMoECheckpoint(model, prefix, {overwrite: true});
    expect(fs.readdirSync(dir).sort()).toEqual(['ckpt_0.config.json', 'ckpt_0.data-00000-of-00001', 'ckpt_0.index']);
    // Other files beside it stay, another prefix in the same folder is fine.
    writeVMoECheckpoint(model, path.join(dir, 'ckpt_1'));
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('ckpt_0.')).length).toBe(3);
    // A folder as the prefix, or a file where the prefix's folder should be.
    const asFolder = (() => {
      try {
        writeVMoECheckpoint(model, dir);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect((asFolder as Error).message).toBe(`Expected prefix to be a checkpoint prefix such as export/ckpt_0 (files <prefix>.index, <prefix>.data-*), but got "${dir} (a folder)".`);
    const underFile = path.join(dir, 'ckpt_0.index', 'x');
    expect(() => writeVMoECheckpoint(model, underFile)).toThrow(`but got "${underFile} (${path.join(dir, 'ckpt_0.index')} is a file)".`);
    model.dispose();
  });
});
