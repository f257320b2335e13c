import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {useBackend} from '../../router/test/helpers/backends';
import {loadDigits, splitDataset, syntheticDataset} from '../src/data';
import {nodeFileSystem, WriteError, type FileSystem} from '../src/io/file-io';
import {ConfigError} from '@tfjs-moe/router';
import {evaluate, readLatestCheckpoint, train, type StepRecord} from '../src/train';

/** A small dense classifier with dropout (so per-step randomness matters for reproducibility). */
/** A small MLP whose initializers are seeded from the trainer's initialization seed. */
function denseModel(h = 28, w = 28, classes = 10, seed = 0): tf.LayersModel {
  return tf.sequential({
    layers: [
      tf.layers.flatten({inputShape: [h, w, 1]}),
      tf.layers.dense({units: 32, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({seed})}),
      tf.layers.dense({units: classes, kernelInitializer: tf.initializers.glorotUniform({seed: seed + 1})}),
    ],
  });
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-moe-train-'));
}

/** A history without wall-clock fields, for exact comparisons. */
function deterministic(h: StepRecord[]): unknown[] {
  return h.map(({imagesPerSecond: _t, ...rest}) => rest);
}

async function weightsOf(model: tf.LayersModel): Promise<number[][]> {
  return Promise.all(model.weights.map(async (w) => Array.from(await w.read().data())));
}

const synth = splitDataset(syntheticDataset({examples: 200, numClasses: 4, height: 8, width: 8, seed: 2}), {seed: 0});
const synthModel = (seed: number): tf.LayersModel => denseModel(8, 8, 4, seed);

describe('train [cpu]', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('lowers the loss on the embedded digits and beats chance on held-out digits', async () => {
    const data = splitDataset(loadDigits({perClassLimit: 60}), {seed: 0, heldOutFraction: 0.25});
    const r = await train({model: (seed: number) => denseModel(28, 28, 10, seed), data, batchSize: 30, steps: 45, learningRate: 3e-3, logEvery: 5, seed: 1});
    const first = r.history[0].crossEntropy;
    const last = r.history[r.history.length - 1].crossEntropy;
    // Chance level cross-entropy is ln 10 = 2.30; the first logged mean sits near it.
    expect(first).toBeGreaterThan(1.5);
    expect(last).toBeLessThan(0.6 * first);
    // 150 held-out digits, 10 classes: chance is 0.1.
    expect(r.final.examples).toBe(150);
    expect(r.final.accuracy).toBeGreaterThan(0.5);
    r.model.dispose();
  });

  it('is reproducible for a seed, and differs across seeds', async () => {
    const a = await train({model: synthModel, data: synth, batchSize: 16, steps: 12, logEvery: 3, seed: 5});
    const b = await train({model: synthModel, data: synth, batchSize: 16, steps: 12, logEvery: 3, seed: 5});
    const c = await train({model: synthModel, data: synth, batchSize: 16, steps: 12, logEvery: 3, seed: 6});
    expect(deterministic(b.history)).toEqual(deterministic(a.history));
    expect(await weightsOf(b.model)).toEqual(await weightsOf(a.model));
    expect(await weightsOf(c.model)).not.toEqual(await weightsOf(a.model));
    [a, b, c].forEach((r) => r.model.dispose());
  });

  it('resumes a killed run exactly: weights, Adam state and data order', async () => {
    const opts = {model: synthModel, data: synth, batchSize: 16, steps: 20, logEvery: 2, checkpointEvery: 4, evalEvery: 10, seed: 3};
    const full = await train({...opts, outDir: tmpDir()});
    // 160 training examples / 16 = 10 steps per epoch, so the kill at step 14 is mid-epoch 1.
    const dir = tmpDir();
    await expect(
      train({
        ...opts,
        outDir: dir,
        onLog: (r) => {
          if (r.step === 14) throw new Error('killed');
        },
      }),
    ).rejects.toThrow('killed');
    expect(readLatestCheckpoint(dir + '/checkpoints').step).toBe(12);
    const resumed = await train({...opts, outDir: dir, resume: true});
    expect(resumed.resumedFrom).toBe(12);
    expect(await weightsOf(resumed.model)).toEqual(await weightsOf(full.model));
    expect(deterministic(resumed.history)).toEqual(deterministic(full.history));
    expect(resumed.final.accuracy).toBe(full.final.accuracy);
    // The log on disk holds each step once, as the uninterrupted run's does.
    const steps = (d: string): number[] =>
      fs.readFileSync(path.join(d, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'step').map((r) => r.step);
    expect(steps(dir)).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
    full.model.dispose();
    resumed.model.dispose();
  });

  it('leaves the previous checkpoint intact when a checkpoint write fails', async () => {
    const dir = tmpDir();
    let failWrites = false;
    const failing: FileSystem = {
      ...nodeFileSystem,
      writeFileSync: (f, d) => {
        if (failWrites && f.endsWith('weights.bin')) throw new Error('disk full (injected)');
        nodeFileSystem.writeFileSync(f, d);
      },
    };
    const opts = {model: synthModel, data: synth, batchSize: 16, steps: 8, logEvery: 4, checkpointEvery: 4, seed: 1, outDir: dir, fs: failing};
    const snapshot = (): Record<string, string> => {
      const out: Record<string, string> = {};
      const walk = (d: string): void => {
        for (const f of fs.readdirSync(d)) {
          const p = path.join(d, f);
          if (fs.statSync(p).isDirectory()) walk(p);
          else out[path.relative(path.join(dir, 'checkpoints'), p)] = fs.readFileSync(p).toString('base64');
        }
      };
      walk(path.join(dir, 'checkpoints'));
      return out;
    };
    await expect(
      train({
        ...opts,
        onLog: (r) => {
          if (r.step === 4) failWrites = false;
          if (r.step === 8) failWrites = true; // the step-8 checkpoint is written after this log
        },
      }),
    ).rejects.toThrow(WriteError);
    const after = snapshot();
    // Only the step-4 checkpoint and the pointer to it exist; no temporary folder is left over.
    expect(Object.keys(after).sort()).toEqual([
      'ckpt-00000004/model.json',
      'ckpt-00000004/optimizer.bin',
      'ckpt-00000004/trainer.json',
      'ckpt-00000004/weights.bin',
      'latest.json',
    ]);
    expect(JSON.parse(Buffer.from(after['latest.json'], 'base64').toString())).toEqual({checkpoint: 'ckpt-00000004', step: 4});
    // And it is complete: resuming from it reproduces the uninterrupted run.
    failWrites = false;
    const resumed = await train({...opts, resume: true});
    const clean = await train({...opts, outDir: tmpDir(), fs: nodeFileSystem});
    expect(resumed.resumedFrom).toBe(4);
    expect(await weightsOf(resumed.model)).toEqual(await weightsOf(clean.model));
    resumed.model.dispose();
    clean.model.dispose();
  });

  it('rejects a model whose head already applies a softmax', async () => {
    const softmaxHead = (): tf.LayersModel =>
      tf.sequential({layers: [tf.layers.flatten({inputShape: [8, 8, 1]}), tf.layers.dense({units: 4, activation: 'softmax'})]});
    await expect(train({model: softmaxHead, data: synth, steps: 1})).rejects.toThrow(
      'Expected model output to be logits (a linear classifier head; the loss applies the softmax), but got "softmax".',
    );
  });

  it('rejects data whose labels or classes do not fit the model (train and evaluate), leaking nothing', async () => {
    expect(tf.getBackend()).toBe('cpu');
    const before = tf.memory().numTensors;
    // 4-class data (labels 0..3), a 3-class model: label 3 has no output unit.
    await expect(train({model: (s) => denseModel(8, 8, 3, s), data: synth, steps: 1})).rejects.toThrow(ConfigError);
    await expect(train({model: (s) => denseModel(8, 8, 3, s), data: synth, steps: 1})).rejects.toThrow(
      `train: Expected data classes (${synth.train.name}) to be the model's 3 classes (output units), but got 4.`,
    );
    // A data set claiming 3 classes whose labels reach 3.
    const liar = {...synth, train: {...synth.train, numClasses: 3}};
    await expect(train({model: (s) => denseModel(8, 8, 3, s), data: liar, steps: 1})).rejects.toThrow(
      `train: Expected data labels (${synth.train.name}) to be less than the model's 3 classes (output units), but got "label 3".`,
    );
    expect(tf.memory().numTensors).toBe(before);
    // A 5-class model: every label fits, but the data set has 4 classes.
    const five = denseModel(8, 8, 5, 0);
    await expect(evaluate(five, synth.heldOut)).rejects.toThrow(
      `evaluate: Expected data classes (${synth.heldOut.name}) to be the model's 5 classes (output units), but got 4.`,
    );
    five.dispose();
  });

  it('pins the message of a failed write', async () => {
    const failing: FileSystem = {
      ...nodeFileSystem,
      writeFileSync: (f, d) => {
        if (f.includes('ckpt-')) throw new Error('disk full');
        nodeFileSystem.writeFileSync(f, d);
      },
    };
    const dir = tmpDir();
    await expect(
      train({model: synthModel, data: synth, batchSize: 16, steps: 2, checkpointEvery: 2, outDir: dir, fs: failing}),
    ).rejects.toThrow(`Could not write ${path.join(dir, 'checkpoints', 'ckpt-00000002')}: disk full. The previous version, if any, is intact.`);
  });
});
