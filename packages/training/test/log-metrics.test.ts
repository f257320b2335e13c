/**
 * The trainer computes the routing metrics only on the steps that log: the other steps skip them
 * (`withRoutingMetrics`), and what it logs (drop %, load balance) equals a run that computes them
 * on every step (same seed), with identical weights at the end.
 */
import * as tf from '@tensorflow/tfjs';
import {useBackend} from '../../router/test/helpers/backends';
import {findMoELayers, splitDataset, syntheticDataset, train, type TrainResult} from '../src';
import {buildModel, type ModelSpec} from '../src/model-factory';
import type {RouteOptions} from '@tfjs-moe/router';

const spec: ModelSpec = {router: 'sparse-ot', experts: 4, capacityFactor: 1.0, depth: 2, hiddenSize: 16, numHeads: 2, mlpDim: 32};
const data = splitDataset(syntheticDataset({examples: 64, numClasses: 4, seed: 2}), {seed: 0});

/** Trains 6 steps logging every `logEvery`; records, per training-mode routing call, whether it computed metrics. */
async function run(logEvery: number): Promise<{result: TrainResult; metricsOn: boolean[]; weights: number[][]}> {
  const metricsOn: boolean[] = [];
  const result = await train({
    model: (initSeed: number) => {
      const model = buildModel(spec, data.train, initSeed);
      // Observe every training-mode routing call of the first MoE layer (test instrumentation only).
      const router = findMoELayers(model)[0].router;
      const route = router.route.bind(router);
      router.route = (tokens: tf.Tensor3D, options: RouteOptions) => {
        if (options.training) metricsOn.push(router.computeMetrics);
        return route(tokens, options);
      };
      return model;
    },
    data, batchSize: 8, steps: 6, logEvery, evalEvery: 0, evalExamples: 8, seed: 5,
  });
  const weights = result.model.weights.map((w) => Array.from(w.read().dataSync()));
  return {result, metricsOn, weights};
}

describe('routing metrics only on logging steps [cpu]', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('steps that do not log skip the metrics; the logged balance equals a run with metrics on every step', async () => {
    expect(tf.getBackend()).toBe('cpu');
    const every = await run(1);
    const sparse = await run(3);
    expect(every.metricsOn).toEqual([true, true, true, true, true, true]);
    expect(sparse.metricsOn).toEqual([false, false, true, false, false, true]);
    expect(sparse.weights).toEqual(every.weights);
    const logged = sparse.result.history.map((r) => r.step);
    expect(logged).toEqual([3, 6]);
    for (const r of sparse.result.history) {
      const ref = every.result.history.find((h) => h.step === r.step)!;
      expect(Object.keys(r.balance).length).toBeGreaterThan(0);
      expect(r.balance).toEqual(ref.balance);
    }
    // The final evaluation (inference) computes its metrics as before.
    expect(sparse.result.final).toEqual(every.result.final);
    // After training every layer computes metrics again (the trainer restores the setting).
    for (const l of findMoELayers(sparse.result.model)) expect(l.computeMetrics).toBe(true);
    for (const r of [every, sparse]) r.result.model.dispose();
  });

  it('no tensor leaks across runs that skip the metrics', async () => {
    expect(tf.getBackend()).toBe('cpu');
    const first = await run(4);
    first.result.model.dispose();
    const before = tf.memory().numTensors;
    const again = await run(4);
    again.result.model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
