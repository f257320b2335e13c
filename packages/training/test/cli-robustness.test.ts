/**
 * Bad input and damaged files on the command line and in runTraining: every case ends in one
 * clear, typed line (or the documented recovery), never a stack trace, a silent NaN or a run
 * that continues another run's checkpoint.
 */
import {spawn} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {ConfigError, InvalidArgumentError, NonFiniteError, ShapeError, UnknownOptionError} from '@tfjs-moe/router';
import {vmoe} from '@tfjs-moe/models';
import {meanStdText} from '../src/compare';
import {syntheticDataset} from '../src/data/synthetic';
import {splitDataset} from '../src/data/dataset';
import {DamagedFileError} from '../src/io/file-io';
import {fileSystem, loadModel, unregisteredLayerClasses} from '../src/io/load-model';
import {RunFolderBusyError} from '../src/io/run-folder';
import {buildModel} from '../src/model-factory';
import {runTraining, summaryLines, type RunOptions} from '../src/run';
import {inspectLatestCheckpoint, readLatestCheckpoint} from '../src/train/checkpoint';
import {DivergedError, train} from '../src/train/trainer';
import {runCli} from './helpers/run-cli';

jest.setTimeout(120000);


/** One clear line: exit 1, a single line naming the command, no stack frame. */
function expectOneLine(r: {code: number; stderr: string}, pieces: string[]): void {
  expect(r.code).toBe(1);
  expect(r.stderr.split('\n')).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  for (const p of pieces) expect(r.stderr).toContain(p);
}

const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'robust-'));
const TINY: RunOptions = {data: 'synthetic', router: 'topk', depth: 2, hiddenSize: 16, numHeads: 2, mlpDim: 32, batchSize: 16, backend: 'cpu', progress: null, report: false};
const TINY_FLAGS = ['--data', 'synthetic', '--router', 'topk', '--batch-size', '16', '--backend', 'cpu', '--quiet', '--no-report', '--preset', 'mnist-tiny'];

/** A finished 4-step run with checkpoints at steps 2 and 4, copied fresh for each test that damages it. */
let baseRun: string;
let baseAccuracy: number;
let baseSummary: string[];
let baseSplits: Array<[number, boolean, string | undefined]>;
beforeAll(async () => {
  baseRun = path.join(tmp(), 'base');
  const r = await runTraining({...TINY, steps: 4, checkpointEvery: 2, out: baseRun, seed: 3});
  baseAccuracy = r.result.final.accuracy;
  baseSummary = summaryLines(r);
  baseSplits = r.result.evals.map((e) => [e.step, e.final, e.split]);
  r.result.model.dispose();
});
function copyRun(): string {
  const dir = path.join(tmp(), 'run');
  fs.cpSync(baseRun, dir, {recursive: true});
  return dir;
}

describe('run folders are owned', () => {
  it('refuses a fresh run into a folder holding a run, unless --overwrite or --resume', async () => {
    const dir = copyRun();
    await expect(runTraining({...TINY, steps: 2, out: dir})).rejects.toThrow(
      `${dir} already holds checkpoints, log.jsonl, model, run.json, ...; pass --resume to continue that run or --overwrite to replace it (or choose another --out).`,
    );
    const r = await runTraining({...TINY, steps: 2, out: dir, overwrite: true, checkpointEvery: 50});
    // The old checkpoints are gone: only the new run's final checkpoint (step 2) is there.
    expect(fs.readdirSync(path.join(dir, 'checkpoints')).sort()).toEqual(['ckpt-00000002', 'latest.json']);
    expect(readLatestCheckpoint(path.join(dir, 'checkpoints')).step).toBe(2);
    r.result.model.dispose();
    await expect(runTraining({...TINY, out: dir, resume: true, overwrite: true})).rejects.toThrow(ConfigError);
  });

  it('a run without a report (--no-report) does not claim to have written report.html', () => {
    expect(fs.existsSync(path.join(baseRun, 'report.html'))).toBe(false);
    expect(baseSummary[baseSummary.length - 1]).toBe(`wrote ${path.join(baseRun, 'model')}/, ${path.join(baseRun, 'log.jsonl')}`);
  });

  it('evaluations name their examples: periodic ones the validation split, the final one the test set', () => {
    // 4 steps, evaluations every 4 / 4 = 1 step by default, then the final one at step 4.
    expect(baseSplits.length).toBeGreaterThanOrEqual(2);
    expect(baseSplits[baseSplits.length - 1]).toEqual([4, true, 'test']);
    for (const s of baseSplits.slice(0, -1)) expect([s[1], s[2]]).toEqual([false, 'validation']);
  });

  it('the summary gives each MoE layer\'s normalized router entropy in training and at test', () => {
    const balance = baseSummary.filter((l) => / (train|test): /.test(l));
    expect(balance.length).toBeGreaterThanOrEqual(2);
    for (const line of balance) {
      const e = / entropy (\d\.\d\d)$/.exec(line);
      expect([line, e !== null]).toEqual([line, true]);
      expect(Number(e![1])).toBeGreaterThan(0);
      expect(Number(e![1])).toBeLessThanOrEqual(1);
    }
  });

  it('refuses --out naming a file', async () => {
    const file = path.join(tmp(), 'f.txt');
    fs.writeFileSync(file, 'x');
    const r = await runCli(['train', ...TINY_FLAGS, '--out', file]);
    expectOneLine(r, [`Expected --out to be a folder (or a path where one can be created), but got "${file} (an existing file)".`]);
    const under = path.join(file, 'run');
    const r2 = await runCli(['train', ...TINY_FLAGS, '--out', under]);
    expectOneLine(r2, [`Expected --out to be a folder (or a path where one can be created), but got "${under} (${file} is a file, not a folder)".`]);
  });

  it('refuses a folder locked by a live process, and takes over the lock of a dead one', async () => {
    const dir = copyRun();
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      fs.writeFileSync(path.join(dir, '.lock'), JSON.stringify({pid: child.pid, host: os.hostname(), started: 'then'}));
      const err = await runTraining({...TINY, out: dir, resume: true}).catch((e) => e);
      expect(err).toBeInstanceOf(RunFolderBusyError);
      expect(err.message).toBe(`${dir} is in use by process ${child.pid} on ${os.hostname()} (since then); wait for that run to finish, or remove ${path.join(dir, '.lock')} if that process is gone.`);
    } finally {
      child.kill();
    }
    await new Promise((res) => child.on('exit', res));
    // The holder is gone: its lock is stale and the run proceeds (and releases the lock after).
    const r = await runTraining({...TINY, out: dir, resume: true});
    expect(r.result.resumedFrom).toBe(4);
    expect(fs.existsSync(path.join(dir, '.lock'))).toBe(false);
    r.result.model.dispose();
  });

  it('refuses to resume from a checkpoint of another run', async () => {
    const a = copyRun();
    const b = path.join(tmp(), 'b');
    const rb = await runTraining({...TINY, steps: 2, checkpointEvery: 2, out: b, seed: 3});
    rb.result.model.dispose();
    // b's run.json with a's checkpoints: the run ids differ.
    fs.rmSync(path.join(b, 'checkpoints'), {recursive: true});
    fs.cpSync(path.join(a, 'checkpoints'), path.join(b, 'checkpoints'), {recursive: true});
    const err = await runTraining({...TINY, out: b, resume: true}).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/^Expected checkpoint to be a checkpoint of the run in .*run\.json \(run [0-9a-f-]{36}\), but got ".*ckpt-00000004 of run [0-9a-f-]{36}"\.$/);
  });

  it('removes temporary files left by killed writes and restores a folder renamed aside', async () => {
    const dir = copyRun();
    const ck = path.join(dir, 'checkpoints');
    fs.mkdirSync(path.join(ck, '.ckpt-00000006.tmp-999-abc'));
    fs.writeFileSync(path.join(dir, '.summary.json.tmp-999-abc'), '{');
    // Killed between the two renames of atomicWriteFolder: the old folder is aside, the new never arrived.
    fs.renameSync(path.join(dir, 'model'), path.join(dir, '.model.tmp-999-abd.old'));
    const lines: string[] = [];
    const r = await runTraining({...TINY, out: dir, resume: true, progress: {write: (s: string) => lines.push(s)}});
    expect(fs.readdirSync(ck).filter((f) => f.startsWith('.'))).toEqual([]);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([]);
    expect(lines.join('')).toContain('removed what interrupted writes left:');
    r.result.model.dispose();
  });
});

describe('NaN never trains silently', () => {
  it('stops at the first non-finite loss, keeping the last good checkpoint newest', async () => {
    const ds = syntheticDataset({examples: 200, seed: 1});
    ds.images[5 * 28 * 28 + 17] = NaN; // one pixel of example 5
    const data = splitDataset(ds, {seed: 0});
    const outDir = tmp();
    const before = tf.memory().numTensors;
    const err = await train({
      model: (seed: number) => buildModel({router: 'topk', depth: 2, hiddenSize: 16, numHeads: 2, mlpDim: 32}, ds, seed),
      data, batchSize: 16, epochs: 2, logEvery: 1, checkpointEvery: 1, outDir,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(DivergedError);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect(err.firstStep).toBe(err.lastStep);
    expect(err.lastCheckpoint).toBe(err.lastStep - 1);
    // The first MoE layer's router check finds the NaN the pixel spread through its example: the
    // message names that layer and its inputs (issue 13 item 6), not a loss of NaN.
    expect(err.message).toMatch(
      /^Training stopped: non-finite values in step \d+ \(found by MoE 'block\d+_moe': Expected inputs to be finite \(no NaN or Infinity; shape \[\d+, \d+, \d+\]\), but got NaN\)\. /);
    expect(err.cause).toBeInstanceOf(NonFiniteError);
    expect(err.argument).toBe('inputs');
    // Nothing of the bad step was saved: the newest checkpoint is the step before, all finite.
    const ckpt = readLatestCheckpoint(path.join(outDir, 'checkpoints'));
    expect(ckpt.step).toBe(err.lastCheckpoint);
    const weights = tf.io.decodeWeights(ckpt.artifacts.weightData!, ckpt.artifacts.weightSpecs!);
    for (const t of Object.values(weights)) expect(tf.tidy(() => tf.all(tf.isFinite(t)).dataSync()[0])).toBe(1);
    tf.dispose([...Object.values(weights), ...ckpt.optimizer.m, ...ckpt.optimizer.v]);
    expect(fs.readFileSync(path.join(outDir, 'log.jsonl'), 'utf8')).not.toContain('null');
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a sparse-OT run whose weights overflow stops with the divergence message, not the router cost', async () => {
    // With sparse-OT the overflowed weights first show in the router's cost (at the next
    // step or evaluation); the run must still say it diverged, name the learning rate, exit 1.
    const r = await runCli(['train', ...TINY_FLAGS.filter((f) => f !== 'topk' && f !== '--router'), '--router', 'sparse-ot', '--steps', '3', '--lr', '1e30', '--out', path.join(tmp(), 'x')]);
    expectOneLine(r, ['tfjs-moe train: Training stopped: non-finite values in', 'Lower the learning rate (now 1e+30)']);
    expect(r.stderr).not.toContain('cost');
    const split = splitDataset(syntheticDataset({examples: 40, height: 8, width: 8}), {seed: 0});
    const tiny = {imageSize: 8, channels: 1, patchSize: 4, hiddenSize: 8, depth: 1, numHeads: 2, mlpDim: 8, numClasses: 10, headActivation: 'linear' as const};
    const err = await train({model: () => vmoe({...tiny, moeBlocks: [0], moe: {numExperts: 2, router: 'sparse-ot'}}), data: split, steps: 4, batchSize: 4, learningRate: 1e30}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DivergedError);
  });

  it('exits non-zero with one line for a learning rate that diverges', async () => {
    const r = await runCli(['train', ...TINY_FLAGS, '--steps', '6', '--lr', '1e30', '--out', path.join(tmp(), 'x')]);
    expectOneLine(r, ['tfjs-moe train: Training stopped: non-finite values in', 'Lower the learning rate (now 1e+30)']);
  });

  it('rejects NaN / Infinity pixels in .npy and JSON data, naming the file and index', async () => {
    const dir = tmp();
    const images = Array.from({length: 4}, () => Array.from({length: 4}, () => [0.5, 0.5, 0.5, 0.5]));
    const file = path.join(dir, 'd.json');
    const bad = JSON.parse(JSON.stringify(images));
    bad[2][1][3] = 'NaN';
    fs.writeFileSync(file, JSON.stringify({images: bad, labels: [0, 1, 0, 1]}));
    expectOneLine(await runCli(['train', '--data', file, '--backend', 'cpu', '--quiet', '--out', path.join(dir, 'o')]), [
      `data ${file}: Expected images value 39 (flat index, example 2) to be a finite number, but got "NaN".`,
    ]);
    // .npy float32 with Infinity at flat index 3 (written byte by byte as numpy would).
    const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }";
    const pad = 64 - ((10 + header.length + 1) % 64);
    const head = Buffer.concat([Buffer.from([0x93]), Buffer.from('NUMPY'), Buffer.from([1, 0]), Buffer.from([header.length + pad + 1, 0]), Buffer.from(header + ' '.repeat(pad) + '\n')]);
    const px = new Float32Array([0, 0.1, 0.2, Infinity, 0, 0, 0, 0]);
    fs.writeFileSync(path.join(dir, 'x.npy'), Buffer.concat([head, Buffer.from(px.buffer)]));
    const lh = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    const lpad = 64 - ((10 + lh.length + 1) % 64);
    fs.writeFileSync(path.join(dir, 'labels.npy'), Buffer.concat([Buffer.from([0x93]), Buffer.from('NUMPY'), Buffer.from([1, 0]), Buffer.from([lh.length + lpad + 1, 0]), Buffer.from(lh + ' '.repeat(lpad) + '\n'), Buffer.from(new Float32Array([0, 1]).buffer)]));
    expectOneLine(await runCli(['train', '--data', path.join(dir, 'x.npy'), '--backend', 'cpu', '--quiet', '--out', path.join(dir, 'o2')]), [
      `data ${path.join(dir, 'x.npy')}: Expected images value 3 (flat index, example 0) to be a finite number, but got Infinity.`,
    ]);
  });
});

describe('model settings that do not fit the data', () => {
  it("a patch size that does not divide the images names patchSize and the image size, and leaves the folder free for the retry", async () => {
    const dir = tmp();
    const file = path.join(dir, 'd8.json');
    // 8x8 images: the default preset's 7-pixel patches do not divide them; mnist-small's 4 do.
    const images = Array.from({length: 40}, (_, i) => Array.from({length: 8}, (_, y) => Array.from({length: 8}, (_, x) => ((i + x + y) % 5) / 5)));
    fs.writeFileSync(file, JSON.stringify({images, labels: images.map((_, i) => i % 2)}));
    const out = path.join(dir, 'o');
    const flags = ['train', '--data', file, '--router', 'topk', '--batch-size', '8', '--steps', '1', '--backend', 'cpu', '--quiet', '--no-report', '--out', out];
    expectOneLine(await runCli(flags), [
      "Expected patchSize to be a divisor of the data's 8x8 images (preset 'mnist-tiny'; set patchSize in a --config file, or pick another --preset), but got 7.",
    ]);
    expect(fs.existsSync(path.join(out, 'run.json'))).toBe(false);
    const retry = await runCli([...flags, '--preset', 'mnist-small']);
    expect(retry.stderr).toBe('');
    expect(retry.code).toBe(0);
  });
});

describe('silently wrong values are errors', () => {
  it('a negative value after a flag (--epochs -1, not only --epochs=-1) reaches the flag check', async () => {
    const cases: Array<[string, string, string]> = [
      ['--epochs', '-1', 'Expected --epochs to be a finite number > 0, but got -1.'],
      ['--steps', '-5', 'Expected --steps to be a positive integer, but got -5.'],
      ['--lr', '-1', 'Expected --lr to be a finite number > 0, but got -1.'],
      ['--capacity-factor', '-.5', 'Expected --capacity-factor to be a finite number > 0, but got -0.5.'],
      ['--batch-size', '-8', 'Expected --batch-size to be a positive integer, but got -8.'],
    ];
    for (const [flag, value, message] of cases) {
      const r = await runCli(['train', ...TINY_FLAGS, flag, value, '--out', path.join(tmp(), 'x')]);
      expectOneLine(r, [`tfjs-moe train: ${message}`]);
    }
    // A flag followed by another flag is still the usage error it was.
    const missing = await runCli(['train', '--steps', '--quiet']);
    expect(missing.code).toBe(2);
    const shards = await runCli(['export-vmoe', '--model', 'm', '--out', path.join(tmp(), 'c'), '--shards', '-2']);
    expectOneLine(shards, ['tfjs-moe export-vmoe: Expected --shards to be a positive integer, but got "-2".']);
  });

  it('rejects --epochs 0, -1 and -1e9', async () => {
    for (const e of ['0', '-1', '-1e9']) {
      const r = await runCli(['train', ...TINY_FLAGS, `--epochs=${e}`, '--out', path.join(tmp(), 'x')]);
      expectOneLine(r, [`tfjs-moe train: Expected --epochs to be a finite number > 0, but got ${Number(e)}.`]);
    }
  });

  it('rejects labels 1.5, 0.5, "x" and -1, naming the file and index', async () => {
    const dir = tmp();
    const images = Array.from({length: 4}, () => Array.from({length: 4}, () => [0.5, 0.5, 0.5, 0.5]));
    for (const [label, shown] of [[1.5, '1.5'], [0.5, '0.5'], ['x', '"x"'], [-1, '-1']] as const) {
      const file = path.join(dir, `l${shown.length}.json`);
      fs.writeFileSync(file, JSON.stringify({images, labels: [0, 1, label, 1]}));
      expectOneLine(await runCli(['train', '--data', file, '--backend', 'cpu', '--quiet', '--out', path.join(dir, 'o')]), [
        `tfjs-moe train: data ${file}: Expected labels[2] to be an integer class index >= 0, but got ${shown}.`,
      ]);
    }
  });

  it('rejects malformed JSON data and a one-class data set', async () => {
    const dir = tmp();
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, '{"images": [[[0.1');
    expectOneLine(await runCli(['train', '--data', file, '--backend', 'cpu', '--quiet', '--out', path.join(dir, 'o')]), [`Expected data ${file} to be valid JSON, but got "unreadable JSON (`]);
    const one = path.join(dir, 'one.json');
    fs.writeFileSync(one, JSON.stringify({images: Array.from({length: 10}, () => [[0.1, 0.2], [0.3, 0.4]]), labels: Array(10).fill(0)}));
    expectOneLine(await runCli(['train', '--data', one, '--backend', 'cpu', '--quiet', '--out', path.join(dir, 'o2')]), [
      `Expected data to be a data set with at least 2 classes, but got "${one} with 1 class".`,
    ]);
  });
});

describe('--resume', () => {
  it('extends a finished run to a larger budget and says what it resumed', async () => {
    const dir = copyRun();
    const lines: string[] = [];
    const r = await runTraining({out: dir, resume: true, steps: 6, backend: 'cpu', progress: {write: (s: string) => lines.push(s)}, report: false});
    expect(r.result.resumedFrom).toBe(4);
    expect(r.result.steps).toBe(6);
    // Steps 2 and 4 were logged before (at the checkpoints), step 6 by the extension.
    expect(r.result.history.map((h) => h.step)).toEqual([2, 4, 6]);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'run.json'), 'utf8')).steps).toBe(6);
    expect(readLatestCheckpoint(path.join(dir, 'checkpoints')).step).toBe(6);
    expect(lines.join('')).toContain(`resuming ${dir} from ${path.join('checkpoints', 'ckpt-00000004')} (step 4 of 4); budget 4 -> 6 steps`);
    r.result.model.dispose();
    // A budget below the checkpoint is an error.
    await expect(runTraining({out: dir, resume: true, steps: 3, backend: 'cpu', progress: null, report: false})).rejects.toThrow(
      'Expected steps to be at least 6 (the step of the checkpoint being resumed), but got 3.',
    );
  });

  it('refuses changed model settings, naming them', async () => {
    const dir = copyRun();
    // The learning rate the run was started with is whatever run.json recorded (the default may change).
    const recorded = JSON.parse(fs.readFileSync(path.join(dir, 'run.json'), 'utf8')).learningRate;
    expect(recorded).not.toBe(0.01);
    const r = await runCli(['train', '--out', dir, '--resume', '--router', 'expert-choice', '--lr', '0.01', '--backend', 'cpu', '--quiet']);
    expectOneLine(r, [`Cannot resume ${dir} with changed settings: router "topk" -> "expert-choice", learningRate ${recorded} -> 0.01.`]);
  });

  it('is an error without a checkpoint; runs shorter than the interval still write one', async () => {
    const dir = path.join(tmp(), 'short');
    const r = await runTraining({...TINY, steps: 3, checkpointEvery: 50, out: dir});
    expect(fs.readdirSync(path.join(dir, 'checkpoints')).sort()).toEqual(['ckpt-00000003', 'latest.json']);
    r.result.model.dispose();
    fs.rmSync(path.join(dir, 'checkpoints'), {recursive: true});
    const c = await runCli(['train', '--out', dir, '--resume', '--backend', 'cpu', '--quiet']);
    expectOneLine(c, [`Expected resume to be a run folder with a checkpoint (${path.join(dir, 'checkpoints', 'latest.json')}), but got "${path.join(dir, 'checkpoints')}".`]);
  });
});

describe('damaged files', () => {
  const newest = (dir: string, f: string): string => path.join(dir, 'checkpoints', 'ckpt-00000004', f);
  const truncate = (file: string): void => fs.writeFileSync(file, fs.readFileSync(file).subarray(0, Math.floor(fs.statSync(file).size / 2)));
  /** Overwrites the float32 value at `index` of a weights file with NaN (its size stays right). */
  const poison = (file: string, index = 2): void => {
    const b = fs.readFileSync(file);
    b.writeFloatLE(NaN, 4 * index);
    fs.writeFileSync(file, b);
  };

  it.each([
    ['latest.json', (d: string) => truncate(path.join(d, 'checkpoints', 'latest.json')), 'latest.json', 4],
    ['trainer.json', (d: string) => truncate(newest(d, 'trainer.json')), 'trainer.json', 2],
    ['trainer.json with an infinite loss', (d: string) => fs.writeFileSync(newest(d, 'trainer.json'), fs.readFileSync(newest(d, 'trainer.json'), 'utf8').replace(/"loss":[^,}]+/, '"loss":1e999')), 'trainer.json', 2],
    ['model.json', (d: string) => fs.writeFileSync(newest(d, 'model.json'), '{"modelTopology": 3}'), 'model.json', 2],
    ['optimizer.bin', (d: string) => truncate(newest(d, 'optimizer.bin')), 'optimizer.bin', 2],
    ['a missing weights.bin', (d: string) => fs.rmSync(newest(d, 'weights.bin')), 'weights.bin', 2],
    ['a NaN in weights.bin', (d: string) => poison(newest(d, 'weights.bin')), 'weights.bin', 2],
    ['a NaN in optimizer.bin', (d: string) => poison(newest(d, 'optimizer.bin')), 'optimizer.bin', 2],
  ])('the newest intact checkpoint is found past a damaged %s, saying why', (_name, damage, file, step) => {
    const dir = copyRun();
    damage(dir);
    const found = inspectLatestCheckpoint(path.join(dir, 'checkpoints'));
    expect(found.step).toBe(step);
    expect(found.skipped).toHaveLength(1);
    expect(found.skipped[0].reason).toMatch(new RegExp(`^Expected \\S*${file.replace('.', '\\.')} to be `));
  });

  it('a non-finite number in trainer.json (JSON.parse reads 1e999 as Infinity) is named with its path', () => {
    const dir = copyRun();
    const file = newest(dir, 'trainer.json');
    const json = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(json.trainer.history.length).toBeGreaterThan(0);
    fs.writeFileSync(file, JSON.stringify(json).replace(`"loss":${JSON.stringify(json.trainer.history[0].loss)}`, '"loss":1e999'));
    const found = inspectLatestCheckpoint(path.join(dir, 'checkpoints'));
    expect(found.step).toBe(2);
    expect(found.skipped[0].reason).toBe(`Expected ${file} to be a checkpoint state (trainer.json), but got "a non-finite number at trainer.history[0].loss (Infinity)".`);
  });

  it('--resume falls back from a truncated weights.bin, says so, and reproduces the run', async () => {
    const dir = copyRun();
    truncate(newest(dir, 'weights.bin'));
    const lines: string[] = [];
    const r = await runTraining({out: dir, resume: true, backend: 'cpu', progress: {write: (s: string) => lines.push(s)}, report: false});
    expect(lines.join('')).toContain(`skipped damaged checkpoint: Expected ${newest(dir, 'weights.bin')} to be `);
    expect(r.resumed!.step).toBe(2);
    expect(r.result.resumedFrom).toBe(2);
    // Re-running steps 3-4 from the step-2 checkpoint reproduces the uninterrupted run.
    expect(r.result.final.accuracy).toBe(baseAccuracy);
    r.result.model.dispose();
  });

  it('--resume falls back from a NaN in weights.bin, naming the file and the weight', async () => {
    const dir = copyRun();
    const bin = newest(dir, 'weights.bin');
    poison(bin);
    const lines: string[] = [];
    const r = await runTraining({out: dir, resume: true, backend: 'cpu', progress: {write: (s: string) => lines.push(s)}, report: false});
    expect(lines.join('')).toMatch(new RegExp(`skipped damaged checkpoint: Expected ${bin.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} to be finite weights, but got "NaN in weight \\S+ at index 2"\\.`));
    expect(r.resumed!.step).toBe(2);
    expect(r.result.final.accuracy).toBe(baseAccuracy);
    r.result.model.dispose();
  });

  it('says it skipped a damaged checkpoint on stderr also with --quiet', async () => {
    const dir = copyRun();
    const bin = newest(dir, 'weights.bin');
    truncate(bin);
    const writes: string[] = [];
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: unknown) => {
      writes.push(String(chunk));
      return true;
    });
    let r: Awaited<ReturnType<typeof runCli>>;
    try {
      r = await runCli(['train', '--out', dir, '--resume', '--quiet', '--no-report', '--backend', 'cpu']);
    } finally {
      spy.mockRestore();
    }
    expect(r.code).toBe(0);
    expect(writes.join('')).toContain(`skipped damaged checkpoint: Expected ${bin} to be `);
  });

  it('gives one line for a damaged run.json and when every checkpoint is damaged', async () => {
    const dir = copyRun();
    fs.writeFileSync(path.join(dir, 'run.json'), '{"router": "topk", "ste');
    expectOneLine(await runCli(['train', '--out', dir, '--resume', '--backend', 'cpu', '--quiet']), [`tfjs-moe train: Expected ${path.join(dir, 'run.json')} to be a run settings file (run.json) in JSON, but got "unreadable JSON (`]);
    const d2 = copyRun();
    for (const c of ['ckpt-00000002', 'ckpt-00000004']) fs.writeFileSync(path.join(d2, 'checkpoints', c, 'trainer.json'), '');
    expectOneLine(await runCli(['train', '--out', d2, '--resume', '--backend', 'cpu', '--quiet']), [`Expected ${newest(d2, 'trainer.json')} to be a checkpoint state (trainer.json) in JSON, but got "unreadable JSON (`]);
  });

  it.each([
    ['truncated model.json', (m: string) => fs.writeFileSync(path.join(m, 'model.json'), fs.readFileSync(path.join(m, 'model.json'), 'utf8').slice(0, 100)), 'model.json to be a tfjs layers model (model.json) in JSON, but got "unreadable JSON ('],
    ['model.json without topology', (m: string) => fs.writeFileSync(path.join(m, 'model.json'), '{"weightsManifest": []}'), 'model.json to be a tfjs layers model (model.json), but got "no \\"modelTopology\\" object"'],
    ['model.json as an array', (m: string) => fs.writeFileSync(path.join(m, 'model.json'), '[]'), 'model.json to be a tfjs layers model (model.json), but got "no \\"modelTopology\\" object"'],
    ['truncated weights.bin', (m: string) => truncate(path.join(m, 'weights.bin')), 'weights.bin to be '],
    ['weights.bin too long', (m: string) => fs.appendFileSync(path.join(m, 'weights.bin'), Buffer.alloc(8)), 'weights.bin to be '],
    ['missing weights.bin', (m: string) => fs.rmSync(path.join(m, 'weights.bin')), 'weights.bin to be an existing weights file (model.json lists it), but got "no such file".'],
    ['empty model.json', (m: string) => fs.writeFileSync(path.join(m, 'model.json'), ''), 'model.json to be a tfjs layers model (model.json) in JSON'],
    ['NaN in weights.bin', (m: string) => poison(path.join(m, 'weights.bin')), 'weights.bin to be finite weights, but got "NaN in weight '],
  ])('eval --model gives one line for a %s', async (_name, damage, text) => {
    const dir = copyRun();
    damage(path.join(dir, 'model'));
    expectOneLine(await runCli(['eval', '--model', path.join(dir, 'model'), '--data', 'synthetic', '--backend', 'cpu']), [`tfjs-moe eval: Expected ${path.join(dir, 'model')}/${text}`]);
  });

  it('eval --model of a 2-class model on 10-class data is one line naming both class counts', async () => {
    const dir = path.join(tmp(), 'two');
    const two = tf.sequential({layers: [tf.layers.flatten({inputShape: [28, 28, 1]}), tf.layers.dense({units: 2})]});
    await two.save(fileSystem(dir));
    two.dispose();
    const r = await runCli(['eval', '--model', dir, '--data', 'synthetic', '--backend', 'cpu']);
    expectOneLine(r, ['tfjs-moe eval: evaluate: Expected data classes (synthetic', `to be the model's 2 classes (output units), but got 10.`]);
  });

  it('eval --model takes the run folder as well as its model/, and a missing folder is one line', async () => {
    const r = await runCli(['eval', '--model', baseRun, '--data', 'synthetic', '--seed', '3', '--backend', 'cpu']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${path.join(baseRun, 'model')} on synthetic`);
    expect(r.stdout).toContain(`accuracy ${(100 * baseAccuracy).toFixed(2)}%`);
    expectOneLine(await runCli(['eval', '--model', '/no/such/run', '--backend', 'cpu']), ['tfjs-moe eval: Expected model to be a folder holding model.json and weights.bin, but got "/no/such/run".']);
  });
});

describe('loadModel', () => {
  it('rejects a NaN weight from an IOHandler too, naming the weight', async () => {
    expect(tf.getBackend()).toBe('cpu');
    const m = tf.sequential({layers: [tf.layers.flatten({inputShape: [4, 4, 1]}), tf.layers.dense({units: 2, name: 'head'})]});
    let saved: tf.io.ModelArtifacts | undefined;
    await m.save(tf.io.withSaveHandler(async (a) => {
      saved = a;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    m.dispose();
    const bytes = new Float32Array(tf.io.CompositeArrayBuffer.join(saved!.weightData!));
    bytes[1] = Infinity;
    const before = tf.memory().numTensors;
    await expect(loadModel(tf.io.fromMemory({...saved!, weightData: bytes.buffer}))).rejects.toThrow(
      new DamagedFileError('the model weights', 'finite weights', `Infinity in weight ${saved!.weightSpecs![0].name} at index 1`),
    );
    expect(tf.memory().numTensors).toBe(before);
  });

  it('frees what a failed load made (tfjs alone leaks it), and loads an intact model exactly', async () => {
    const dir = copyRun();
    const modelDir = path.join(dir, 'model');
    const good = await loadModel(modelDir);
    const x = tf.randomNormal([2, 28, 28, 1], 0, 1, 'float32', 7);
    const y1 = good.predict(x) as tf.Tensor;
    // The head's units changed in the topology: the layers are built, then the weights do not fit.
    const json = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8'));
    const layers = json.modelTopology.config.layers as Array<{class_name: string; config: {units?: number}}>;
    layers.filter((l) => l.class_name === 'Dense').slice(-1)[0].config.units = 5;
    fs.writeFileSync(path.join(modelDir, 'model.json'), JSON.stringify(json));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const err = await loadModel(modelDir).catch((e) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.message).toMatch(new RegExp(`^Could not load ${modelDir}: `));
    }
    expect(tf.memory().numTensors).toBe(before);
    // The same failure through a bare tf.loadLayersModel leaves tensors behind (what loadModel fixes).
    await tf.loadLayersModel(fileSystem(modelDir)).catch(() => undefined);
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    const again = await loadModel(path.join(baseRun, 'model'));
    const y2 = again.predict(x) as tf.Tensor;
    expect(Array.from(y2.dataSync())).toEqual(Array.from(y1.dataSync()));
    // A loaded image model names the expected image shape, as the built one does.
    const small = tf.zeros([2, 16, 16, 1]);
    expect(() => again.predict(small)).toThrow(ShapeError);
    expect(() => again.predict(small)).toThrow(/Expected images to be of shape \[batch, 28, 28, 1\].*but got \[2,16,16,1\]/);
    small.dispose();
    tf.dispose([x, y1, y2]);
    good.dispose();
    again.dispose();
  });

  it('names the package to import for an unregistered tfjs-moe class', async () => {
    const map = tf.serialization.SerializationMap.getMap().classNameMap;
    const saved = map.MoE;
    delete map.MoE;
    try {
      const topology = JSON.parse(fs.readFileSync(path.join(baseRun, 'model', 'model.json'), 'utf8')).modelTopology;
      expect(unregisteredLayerClasses(topology)).toEqual(['MoE']);
      const err = await loadModel(path.join(baseRun, 'model')).catch((e) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect(err.message).toBe(`${path.join(baseRun, 'model')} uses layer classes that are not registered: 'MoE' is registered by import '@tfjs-moe/router'. Import the package before tf.loadLayersModel.`);
    } finally {
      map.MoE = saved;
    }
  });
});

describe('CLI flags and config files', () => {
  it('suggests the nearest flag for an unknown one, and rejects a flag of another command', async () => {
    const r = await runCli(['train', '--capacity-facter', '2']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("tfjs-moe train: Unknown option '--capacity-facter'. Did you mean '--capacity-factor'? Run 'tfjs-moe --help' for the options.");
    const e = await runCli(['eval', '--model', 'x', '--router', 'topk']);
    expect(e.code).toBe(2);
    expect(e.stderr).toBe("tfjs-moe eval: option --router not taken by 'eval'. Run 'tfjs-moe --help' for the options.");
    expect((await runCli(['trian'])).stderr).toBe(`tfjs-moe: unknown command "trian". Did you mean 'train'? Commands: train, eval, compare.`);
  });

  it('reads --config (unknown keys named with a suggestion; flags override it; paths relative to the file)', async () => {
    const dir = tmp();
    const cfg = path.join(dir, 'cfg.json');
    fs.writeFileSync(cfg, JSON.stringify({router: 'topk', capacityFacter: 2}));
    const r = await runCli(['train', '--config', cfg, '--backend', 'cpu', '--quiet']);
    expectOneLine(r, [`tfjs-moe train: ${cfg}: Unknown option 'capacityFacter'. Did you mean 'capacityFactor'?`]);
    fs.writeFileSync(cfg, JSON.stringify({...TINY, progress: undefined, backend: 'cpu', steps: 50, out: 'from-config', k: 2}));
    const ok = await runCli(['train', '--config', cfg, '--steps', '2', '--quiet', '--checkpoint-every', '2']);
    expect(ok.code).toBe(0);
    const stored = JSON.parse(fs.readFileSync(path.join(dir, 'from-config', 'run.json'), 'utf8'));
    expect([stored.router, stored.steps, stored.k, stored.depth]).toEqual(['topk', 2, 2, 2]);
  });

  it('resolves paths against INIT_CWD (npm run in a workspace) and applies router knobs', async () => {
    const dir = tmp();
    const saved = process.env.INIT_CWD;
    process.env.INIT_CWD = dir;
    try {
      const r = await runCli(['train', ...TINY_FLAGS, '--steps', '1', '--out', 'rel', '--k', '2', '--z-loss-weight', '0.001', '--jitter', '0.01', '--load-balance-loss-weight', '0.02']);
      expect(r.code).toBe(0);
      const model = await loadModel(path.join(dir, 'rel'));
      const moeLayer = model.layers.find((l) => l.getClassName() === 'MoE')!;
      const router = (moeLayer.getConfig() as {router: {config: Record<string, unknown>}}).router.config;
      expect([router.k, router.zLossWeight, router.jitterNoise, router.loadBalanceLossWeight]).toEqual([2, 0.001, 0.01, 0.02]);
      model.dispose();
    } finally {
      if (saved === undefined) delete process.env.INIT_CWD;
      else process.env.INIT_CWD = saved;
    }
    const j = await runCli(['train', ...TINY_FLAGS, '--router', 'sinkhorn', '--jitter', '0.1', '--out', path.join(dir, 'j')]);
    expectOneLine(j, [`Expected --jitter to be unset for router 'sinkhorn' (it applies to 'topk'), but got 0.1.`]);
    const k = await runCli(['train', ...TINY_FLAGS, '--k', '9', '--out', path.join(dir, 'k')]);
    expectOneLine(k, ['Expected --k to be an integer in [1, 4] (the experts), but got 9.']);
  });

  it('train() names bad options: unknown keys, a non-function model, missing data, a fractional seed, negative weight decay', async () => {
    const data = splitDataset(syntheticDataset({examples: 40, height: 8, width: 8}), {seed: 0});
    const model = () => vmoe({imageSize: 8, channels: 1, patchSize: 4, hiddenSize: 8, depth: 1, numHeads: 2, mlpDim: 8, numClasses: 10, headActivation: 'linear', moeBlocks: [0], moe: {numExperts: 2}});
    const base = {model, data, steps: 1, batchSize: 4};
    const unknown = await train({...base, epoch: 2} as never).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(UnknownOptionError);
    expect((unknown as Error).message).toContain("'epoch'");
    expect((unknown as Error).message).toContain("'epochs'");
    await expect(train({...base, model: 5} as never)).rejects.toThrow('train: Expected model to be a function that builds the model from a seed, but got 5.');
    await expect(train({model, steps: 1} as never)).rejects.toThrow('train: Expected data to be a split {train, heldOut} (splitDataset(...)), but got undefined.');
    await expect(train({...base, seed: 1.5})).rejects.toThrow('train: Expected seed to be an integer, but got 1.5.');
    await expect(train({...base, weightDecay: -1})).rejects.toThrow('train: Expected weightDecay to be a finite number >= 0, but got -1.');
  });

  it('runTraining rejects unknown option keys with a suggestion', async () => {
    const err = await runTraining({...TINY, learningrate: 1} as RunOptions).catch((e) => e);
    expect(err).toBeInstanceOf(UnknownOptionError);
    expect(err.message).toMatch(/^runTraining: Unknown option 'learningrate'\. Did you mean 'learningRate'\?/);
    expect(err).toBeInstanceOf(InvalidArgumentError);
  });
});

describe('compare', () => {
  it('shows a single seed without "± 0.00" and lists the run folders', () => {
    expect(meanStdText([0.5], 2)).toBe('0.50');
    // Sample std of 1, 2, 3 is 1.
    expect(meanStdText([1, 2, 3], 2)).toBe('2.00 ± 1.00');
  });
});
