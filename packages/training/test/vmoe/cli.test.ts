/**
 * `tfjs-moe import-vmoe` / `export-vmoe` through the CLI's `main`: files written, the imported
 * folder's logits equal the reference, errors as one line with exit code 1.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '@tfjs-moe/models';
import {fileHandler} from '../../src/io/file-io';
import {configPath, fixture, images, predict, reference, relativeError, tmpDir} from './helpers';
import {runCli} from '../helpers/run-cli';


beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('tfjs-moe import-vmoe / export-vmoe', () => {
  it('imports a partitioned checkpoint into a loadable folder and exports it back', async () => {
    expect(tf.getBackend()).toBe('cpu');
    const dir = tmpDir();
    const r = await runCli(['import-vmoe', fixture('v1', 'ckpt'), '--config', configPath('topk1-cf1'), '--out', path.join(dir, 'model')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('partitioned V1 (20220622)');
    expect(r.stdout).toContain('MoE blocks 1,10');
    const model = await tf.loadLayersModel(fileHandler(path.join(dir, 'model')));
    const x = images(reference.images);
    expect(relativeError(predict(model, x), reference.logits['topk1-cf1'])).toBeLessThan(1e-4);
    const e = await runCli(['export-vmoe', '--model', path.join(dir, 'model'), '--out', path.join(dir, 'export', 'ckpt_0'), '--shards', '2']);
    expect(e.code).toBe(0);
    expect(fs.readdirSync(path.join(dir, 'export')).sort()).toEqual([
      'ckpt_0.config.json', 'ckpt_0.data-00000-of-00002', 'ckpt_0.data-00001-of-00002', 'ckpt_0.index',
    ]);
    const again = await runCli(['import-vmoe', path.join(dir, 'export', 'ckpt_0'), '--config', path.join(dir, 'export', 'ckpt_0.config.json'), '--out', path.join(dir, 'model2')]);
    expect(again.code).toBe(0);
    const model2 = await tf.loadLayersModel(fileHandler(path.join(dir, 'model2')));
    expect(predict(model2, x)).toEqual(predict(model, x));
    tf.dispose(x);
    model.dispose();
    model2.dispose();
  });

  it('reports a missing shard, an unsupported router and a missing flag as one line', async () => {
    const missing = await runCli(['import-vmoe', fixture('v1', 'nope'), '--config', configPath('topk1-cf1'), '--out', path.join(tmpDir(), 'm')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`tfjs-moe import-vmoe: ${fixture('v1', 'nope.index')}: missing: no such file`);
    const cfg = JSON.parse(fs.readFileSync(configPath('topk1-cf1'), 'utf8'));
    cfg.encoder.moe.router.name = 'NoisyTopItemsPerExpertRouter';
    const file = path.join(tmpDir(), 'config.json');
    fs.writeFileSync(file, JSON.stringify(cfg));
    const router = await runCli(['import-vmoe', fixture('params.npz'), '--config', file, '--out', path.join(tmpDir(), 'm')]);
    expect(router.code).toBe(1);
    expect(router.stderr).toMatch(/^tfjs-moe import-vmoe: vmoe config: encoder\.moe\.router\.name "NoisyTopItemsPerExpertRouter" \(expert choice: .*\) is not supported by the importer\. Supported: NoisyTopExpertsPerItemRouter .*\.$/);
    const noConfig = await runCli(['import-vmoe', fixture('params.npz'), '--out', 'x']);
    expect(noConfig.code).toBe(1);
    expect(noConfig.stderr).toContain('Expected --config to be');
    const bad = await runCli(['export-vmoe', '--modle', 'x']);
    expect(bad.code).toBe(2);
  });

  it('refuses to replace an existing output (one line, nothing touched) unless --overwrite', async () => {
    const dir = tmpDir();
    const out = path.join(dir, 'model');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'keep.txt'), 'mine');
    const args = ['import-vmoe', fixture('params.npz'), '--config', configPath('topk1-cf1'), '--out', out];
    const refused = await runCli(args);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(`tfjs-moe import-vmoe: --out ${out} already holds keep.txt; pass --overwrite to replace its contents (or choose another --out).`);
    expect(fs.readdirSync(out)).toEqual(['keep.txt']);
    const file = path.join(dir, 'file');
    fs.writeFileSync(file, 'x');
    const onFile = await runCli(['import-vmoe', fixture('params.npz'), '--config', configPath('topk1-cf1'), '--out', file]);
    expect(onFile.stderr).toBe(`tfjs-moe import-vmoe: Expected --out to be a folder (or a path where one can be created), but got "${file} (an existing file)".`);
    const replaced = await runCli([...args, '--overwrite']);
    expect(replaced.code).toBe(0);
    expect(fs.readdirSync(out).sort()).toEqual(['model.json', 'weights.bin']);

    const prefix = path.join(dir, 'export', 'ckpt_0');
    expect((await runCli(['export-vmoe', '--model', out, '--out', prefix])).code).toBe(0);
    const before = fs.readFileSync(`${prefix}.index`);
    const again = await runCli(['export-vmoe', '--model', out, '--out', prefix, '--shards', '2']);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`tfjs-moe export-vmoe: --out ${prefix}: a checkpoint is already there (ckpt_0.config.json, ckpt_0.data-00000-of-00001, ckpt_0.index); `
      + 'pass --overwrite to replace it (or choose another --out).');
    expect(fs.readFileSync(`${prefix}.index`).equals(before)).toBe(true);
    const folder = await runCli(['export-vmoe', '--model', out, '--out', path.join(dir, 'export')]);
    expect(folder.stderr).toBe(`tfjs-moe export-vmoe: Expected --out to be a checkpoint prefix such as export/ckpt_0 (files <prefix>.index, <prefix>.data-*), but got "${path.join(dir, 'export')} (a folder)".`);
    expect((await runCli(['export-vmoe', '--model', out, '--out', prefix, '--shards', '2', '--overwrite'])).code).toBe(0);
    expect(fs.readdirSync(path.join(dir, 'export')).sort()).toEqual(['ckpt_0.config.json', 'ckpt_0.data-00000-of-00002', 'ckpt_0.data-00001-of-00002', 'ckpt_0.index']);
  });

  it('a folder where a file is expected: one line naming the argument, the path and what is wrong', async () => {
    const dir = tmpDir();
    fs.mkdirSync(path.join(dir, 'dir.msgpack'));
    fs.mkdirSync(path.join(dir, 'cfg'));
    const out = path.join(dir, 'm');
    const msgpack = await runCli(['import-vmoe', path.join(dir, 'dir.msgpack'), '--config', configPath('topk1-cf1'), '--out', out]);
    expect(msgpack.code).toBe(1);
    expect(msgpack.stderr).toBe(`tfjs-moe import-vmoe: Expected <checkpoint> to be a flax .msgpack file, but got "${path.join(dir, 'dir.msgpack')} (a folder)".`);
    const cfg = await runCli(['import-vmoe', fixture('params.npz'), '--config', path.join(dir, 'cfg'), '--out', out]);
    expect(cfg.stderr).toBe(`tfjs-moe import-vmoe: Expected --config to be a JSON file holding vmoe's config.model, but got "${path.join(dir, 'cfg')} (a folder)".`);
    const noCfg = await runCli(['import-vmoe', fixture('params.npz'), '--config', path.join(dir, 'none.json'), '--out', out]);
    expect(noCfg.stderr).toBe(`tfjs-moe import-vmoe: Expected --config to be a JSON file holding vmoe's config.model, but got "${path.join(dir, 'none.json')} (no such file)".`);
    const prefix = await runCli(['import-vmoe', fixture('v1'), '--config', configPath('topk1-cf1'), '--out', out]);
    expect(prefix.stderr).toBe('tfjs-moe import-vmoe: Expected <checkpoint> to be a partitioned checkpoint prefix (<prefix>.index + <prefix>.data-*), a .msgpack or a .npz file, '
      + `but got "${fixture('v1')} (a folder; it holds the checkpoint ${fixture('v1', 'ckpt')})".`);
    const model = await runCli(['export-vmoe', '--model', path.join(dir, 'cfg'), '--out', path.join(dir, 'x', 'ckpt')]);
    expect(model.code).toBe(1);
    expect(model.stderr).toBe(`tfjs-moe export-vmoe: Expected model to be a folder holding model.json and weights.bin, but got "${path.join(dir, 'cfg')}".`);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('says the command once, and a truncated file "past" its end', async () => {
    const cfg = JSON.parse(fs.readFileSync(configPath('topk1-cf1'), 'utf8'));
    cfg.encoder.mlp_dim = 16;
    const file = path.join(tmpDir(), 'config.json');
    fs.writeFileSync(file, JSON.stringify(cfg));
    const shape = await runCli(['import-vmoe', fixture('params.msgpack'), '--config', file, '--out', path.join(tmpDir(), 'm')]);
    expect(shape.code).toBe(1);
    expect(shape.stderr).toBe(`tfjs-moe import-vmoe: ${fixture('params.msgpack')}: Expected Encoder/encoderblock_0/Mlp/Dense_0/kernel to be of shape [8,16] (from the config), but got [8,12].`);
    const cut = path.join(tmpDir(), 'cut.msgpack');
    const bytes = fs.readFileSync(fixture('params.msgpack'));
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 50));
    const truncated = await runCli(['import-vmoe', cut, '--config', configPath('topk1-cf1'), '--out', path.join(tmpDir(), 'm')]);
    expect(truncated.code).toBe(1);
    expect(truncated.stderr).toMatch(new RegExp(`^tfjs-moe import-vmoe: ${cut.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: truncated: .* past the end of the file \\(\\d+ bytes\\)$`));
  });
});
