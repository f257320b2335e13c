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
    expect(router.stderr).toMatch(/^tfjs-moe import-vmoe: vmoe config: Expected encoder.moe.router.name to be one of .*, but got "NoisyTopItemsPerExpertRouter"\.$/);
    const noConfig = await runCli(['import-vmoe', fixture('params.npz'), '--out', 'x']);
    expect(noConfig.code).toBe(1);
    expect(noConfig.stderr).toContain('Expected --config to be');
    const bad = await runCli(['export-vmoe', '--modle', 'x']);
    expect(bad.code).toBe(2);
  });
});
