/**
 * Issue 13 item 7: `--help` says what 0 means for `--checkpoint-every` and `--eval-every` (never),
 * and training with both at 0 (the options the flags set) does what the help says: no
 * checkpoint, only the final evaluation.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {vmoe} from '@tfjs-moe/models';
import {useBackend} from '../../router/test/helpers/backends';
import {splitDataset, syntheticDataset} from '../src/data';
import {train} from '../src/train/trainer';
import {runCli} from './helpers/run-cli';

describe('--checkpoint-every 0 and --eval-every 0 mean never', () => {
  it('--help says so', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--checkpoint-every <n> +steps between checkpoints \(default 50\); 0: never \(no checkpoint, so no --resume\)/);
    expect(r.stdout).toMatch(/--eval-every <n> +steps between held-out evaluations \(default: 4 per run\); 0: never \(only the final one\)/);
  });

  it('train() with both at 0 (what the flags set) writes no checkpoint and runs only the final evaluation', async () => {
    await useBackend('cpu');
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-moe-help-'));
    const split = splitDataset(syntheticDataset({examples: 40, height: 8, width: 8}), {seed: 0});
    const tiny = {imageSize: 8, channels: 1, patchSize: 4, hiddenSize: 8, depth: 1, numHeads: 2, mlpDim: 8, numClasses: 10, headActivation: 'linear' as const};
    const r = await train({
      model: () => vmoe({...tiny, moeBlocks: [0], moe: {numExperts: 2, router: 'topk'}}), data: split, steps: 4, batchSize: 4,
      checkpointEvery: 0, evalEvery: 0, outDir: out,
    });
    const ckpt = path.join(out, 'checkpoints');
    expect(fs.existsSync(ckpt) ? fs.readdirSync(ckpt) : []).toEqual([]);
    expect(r.evals.map((e) => e.final)).toEqual([true]);
    r.model.dispose();
    fs.rmSync(out, {recursive: true, force: true});
  });
});
