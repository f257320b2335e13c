import {execFileSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {buildModel, resolveModelSpec} from '../src/model-factory';
import {runTraining} from '../src/run';
import {forwardFlopsPerImage, parseVariants} from '../src/compare';
import {formatProgress, ProgressBar} from '../src/report/progress';
import type {ReportData} from '../src/report/html';
import {runCli} from './helpers/run-cli';


describe('tfjs-moe CLI: bad input', () => {
  it('rejects an unknown router', async () => {
    const r = await runCli(['train', '--router', 'switch', '--backend', 'cpu', '--quiet']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`tfjs-moe train: Expected --router to be one of 'sparse-ot', 'topk', 'expert-choice', 'sinkhorn', 'dense', but got "switch".`);
  });

  it('rejects a capacity factor <= 0', async () => {
    for (const cf of ['0', '-1']) {
      const r = await runCli(['train', `--capacity-factor=${cf}`, '--backend', 'cpu', '--quiet']);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`tfjs-moe train: Expected --capacity-factor to be a finite number > 0, but got ${cf}.`);
    }
    const r = await runCli(['train', '--capacity-factor', 'lots', '--quiet']);
    expect(r.stderr).toBe('tfjs-moe train: Expected --capacity-factor to be a number, but got "lots".');
  });

  it('names a bad setting first even when --out holds an earlier run (as runs/sparse-ot does after the main job)', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-earlier-run-'));
    fs.mkdirSync(path.join(out, 'checkpoints'));
    fs.writeFileSync(path.join(out, 'log.jsonl'), '');
    for (const flag of ['--capacity-factor=0', '--experts=0']) {
      const r = await runCli(['train', flag, '--out', out, '--backend', 'cpu', '--quiet']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^tfjs-moe train: Expected --(capacity-factor|experts) to be /);
    }
    // A valid command on the same folder still refuses to overwrite the earlier run.
    const r = await runCli(['train', '--steps=1', '--out', out, '--backend', 'cpu', '--quiet']);
    expect(r.stderr).toContain('already holds');
    expect(fs.readdirSync(out).sort()).toEqual(['checkpoints', 'log.jsonl']);
  });

  it('rejects a missing data folder, and a gradient mode on a router without one', async () => {
    const r = await runCli(['train', '--data', '/no/such/folder', '--router', 'topk', '--backend', 'cpu', '--quiet', '--out', fs.mkdtempSync(path.join(os.tmpdir(), 'cli-'))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`tfjs-moe train: Expected data to be 'mnist', 'fashion-mnist', 'idx:DIR', 'digits', 'synthetic', an existing folder of images or a .npy/.json file, but got "/no/such/folder".`);
    expect(() => resolveModelSpec({router: 'topk', gradient: 'implicit'})).toThrow(
      `Expected gradient to be 'softmax' for router 'topk' (implicit and unrolled are sparse-ot modes), but got "implicit".`,
    );
    expect(() => parseVariants('dense,moe')).toThrow(`Expected router to be one of 'sparse-ot', 'topk', 'expert-choice', 'sinkhorn', 'dense', but got "moe".`);
  });

  it('rejects --resume without a run, and eval of a folder without a model', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-'));
    const r = await runCli(['train', '--resume', '--out', dir, '--backend', 'cpu', '--quiet']);
    expect(r.stderr).toBe(`tfjs-moe train: Expected resume to be a run folder holding run.json (from an earlier tfjs-moe train --out ${dir}), but got "${dir}".`);
    expect(r.code).toBe(1);
    const e = await runCli(['eval', '--model', dir, '--backend', 'cpu']);
    expect(e.stderr).toBe(`tfjs-moe eval: Expected model to be a folder holding model.json and weights.bin, but got "${dir}".`);
  });

  it('prints usage for no command and for unknown flags', async () => {
    expect((await runCli([])).code).toBe(2);
    const r = await runCli(['train', '--routr', 'topk']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("Unknown option '--routr'");
  });
});

describe('runTraining', () => {
  it('writes the run folder, and --resume continues with the stored settings', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'run-'));
    const settings = {data: 'synthetic', router: 'topk' as const, depth: 2, hiddenSize: 16, numHeads: 2, mlpDim: 32, batchSize: 16, backend: 'cpu' as const, progress: null, report: false};
    const first = await runTraining({...settings, steps: 4, checkpointEvery: 2, out, seed: 3});
    expect(fs.readdirSync(out).sort()).toEqual(['checkpoints', 'log.jsonl', 'model', 'run.json', 'summary.json']);
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'));
    expect(summary.accuracy).toBe(first.result.final.accuracy);
    expect(Object.keys(summary.heldOutBalance)).toEqual(['block1_moe']);
    // Resuming the finished run keeps the stored settings (seed 3, 4 steps) and starts from the
    // last checkpoint (step 4), so the result is the same model; a changed seed is an error.
    const again = await runTraining({out, resume: true, backend: 'cpu', progress: null, report: false});
    expect(again.result.resumedFrom).toBe(4);
    expect(again.config.seed).toBe(3);
    expect(again.result.final.accuracy).toBe(first.result.final.accuracy);
    await expect(runTraining({out, resume: true, backend: 'cpu', progress: null, report: false, seed: 99})).rejects.toThrow('changed settings: seed 3 -> 99.');
    first.result.model.dispose();
    again.result.model.dispose();
  });
});

describe('model factory and FLOP count', () => {
  it('builds the dense ViT and the V-MoE with linear heads', () => {
    const input = {height: 28, width: 28, channels: 1, numClasses: 10};
    const dense = buildModel({router: 'dense'}, input);
    const moe = buildModel({router: 'topk', experts: 4}, input);
    expect(dense.outputs[0].shape).toEqual([null, 10]);
    expect(moe.layers.map((l) => l.name).filter((n) => n.endsWith('_moe'))).toEqual(['block1_moe', 'block3_moe']);
    dense.dispose();
    moe.dispose();
  });

  it('counts matMul FLOPs by the ViT formula', () => {
    const input = {height: 28, width: 28, channels: 1, numClasses: 10};
    // mnist-tiny: 16 patches of 7x7, T = 17, d 64, h 128, depth 4.
    // patch embed 2*16*49*64 = 100352; head 2*64*10 = 1280;
    // per block: qkv 2*17*64*192 = 417792, scores+values 4*17*17*64 = 73984, out 2*17*64*64 = 139264,
    // MLP 4*17*64*128 = 557056 -> 1188096 per block, x 4 = 4752384. Total 4854016.
    expect(forwardFlopsPerImage({router: 'dense'}, input)).toBe(4854016);
    // top-k with 4 experts, capacity factor 1.25: capacity ceil(17*1.25/4) = 6 -> 24 slots for 17 tokens;
    // an MoE block's MLP costs 4*24*64*128 = 786432 plus the router 2*17*64*4 = 8704 instead of 557056.
    expect(forwardFlopsPerImage({router: 'topk', experts: 4, capacityFactor: 1.25}, input)).toBe(4854016 + 2 * (786432 + 8704 - 557056));
  });
});

describe('progress line', () => {
  it('shows step, loss, accuracy, balance and speed', () => {
    const line = formatProgress(
      {type: 'step', step: 50, epoch: 0, loss: 1.2345, crossEntropy: 1.2, auxLoss: 0.03, accuracy: 0.5, learningRate: 1e-3, gradNorm: 1, imagesPerSecond: 321.4,
        balance: {a: {maxOverMean: 1.5, droppedFraction: 0.02} as never, b: {maxOverMean: 1.1, droppedFraction: 0.05} as never}},
      100,
      65,
      10,
    );
    expect(line).toBe('[#####.....]  50/100 loss 1.234 acc 0.500 bal 1.50 drop 5.0% | 321 img/s ETA 1m05s');
  });

  it("measures the ETA from the first logged step, so the first steps' warm-up does not inflate it", () => {
    const lines: string[] = [];
    let ms = 0;
    const bar = new ProgressBar(100, {write: (s: string) => lines.push(s)}, () => ms);
    const record = (step: number) => ({type: 'step' as const, step, epoch: 0, loss: 1, crossEntropy: 1, auxLoss: 0, accuracy: 0.5, learningRate: 1e-3, gradNorm: 1, imagesPerSecond: 100, balance: {}});
    ms = 60_000; // a minute of model building and warm-up before step 10 was logged
    bar.update(record(10));
    ms = 70_000; // then 10 s for 10 steps: 1 s per step, 80 steps left
    bar.update(record(20));
    ms = 75_000; // 15 s for 20 steps since the first log: 0.75 s per step x 70 left
    bar.update(record(30));
    expect(lines.map((l) => l.slice(l.indexOf('ETA')).trim())).toEqual(['ETA ?', 'ETA 1m20s', 'ETA 53s']);
  });
});

describe('HTML report', () => {
  it('is one self-contained page with SVG charts for curves, per-expert load and class x expert', () => {
    const stats = (loads: number[]) => ({
      numExperts: 2, tokensPerExpert: loads, min: Math.min(...loads), mean: 1, max: Math.max(...loads), maxOverMean: Math.max(...loads), cv: 0.1,
      loadHistogram: [0, 0, 2, 0, 0, 0], droppedFraction: 0.01, expertsPerToken: {min: 0, mean: 1, max: 1},
    });
    const data: ReportData = {
      title: 'test <run>',
      config: {router: 'sparse-ot', steps: 20, preset: 'mnist-tiny', depth: 2},
      history: [10, 20].map((step) => ({type: 'step', step, epoch: 0, loss: 2 / step, crossEntropy: 2 / step, auxLoss: 0, accuracy: step / 25, learningRate: 1e-3, gradNorm: 1, imagesPerSecond: 100,
        balance: {block1_moe: stats([0.9, 1.1])}})),
      evals: [{type: 'eval', step: 20, final: true, accuracy: 0.75, loss: 0.5, examples: 40, perClassAccuracy: [0.8, 0.7],
        balance: {block1_moe: {...stats([1, 1]), classExpert: [[30, 4], [5, 25]]}}}],
      trainBalance: {block1_moe: stats([0.95, 1.05])},
      classNames: ['cat', 'dog'],
    };
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'report-'));
    fs.writeFileSync(path.join(dir, 'in.json'), JSON.stringify(data));
    const tsx = path.join(__dirname, '../../../node_modules/.bin/tsx');
    execFileSync(tsx, [path.join(__dirname, 'helpers/render-report.ts'), path.join(dir, 'in.json'), path.join(dir, 'out.html')]);
    const html = fs.readFileSync(path.join(dir, 'out.html'), 'utf8');
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).toContain('<title>test &lt;run&gt;</title>');
    // A final record without `split` (written before it existed) counts as the test set.
    expect(html).toContain('Test accuracy: 75.00%</b> on 40 test examples');
    // Five charts: loss, accuracy, the layer's per-expert load over training, its per-expert share
    // at held-out, its class x expert heatmap (no solver chart: the stats carry no solver numbers).
    expect((html.match(/<svg/g) ?? []).length).toBe(5);
    for (const id of ['loss', 'accuracy', 'load-block1_moe', 'experts-block1_moe', 'classes-block1_moe']) expect(html).toContain(`<figure id="${id}">`);
    // Step axes are integers: two logged steps (10, 20) never show as "10.000000".
    expect(html).not.toMatch(/<text[^>]*>\d+\.0{4,}</);
    // The heatmap has one cell per (class, expert): 2 x 2 rect marks with the class names on its axis.
    const heat = html.slice(html.indexOf('<figure id="classes-block1_moe">'));
    expect(heat).toContain('>cat<');
    expect(heat).toContain('>dog<');
    // The preset's model sizes (VIT_PRESETS['mnist-tiny']) with the run's override (depth 2).
    expect(html).toContain('<td>preset</td><td>mnist-tiny (patch 7, d 64, depth 2, 4 heads, MLP 128)</td>');
    // Self-contained: no scripts and no external resources.
    expect(html).not.toMatch(/<script|<link|src="http/);
  }, 60000);
});
