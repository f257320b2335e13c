import * as tf from '@tensorflow/tfjs';
import {syntheticDataset} from '../src/data/synthetic';
import {buildModel} from '../src/model-factory';
import {probeRouting} from '../src/metrics/probe';
import {routingDetails} from '../src/report/routing';

describe('routingDetails (report)', () => {
  it('agrees with the probe and with softmax and share identities, and frees what it makes', async () => {
    await tf.setBackend('cpu');
    expect(tf.getBackend()).toBe('cpu');
    const ds = syntheticDataset({examples: 24, numClasses: 3, seed: 2});
    const model = buildModel({router: 'topk', k: 2, depth: 2, hiddenSize: 16, numHeads: 2, mlpDim: 32, capacityFactor: 0.5}, ds);
    routingDetails(model, ds, 4); // builds (and caches) the model's probe
    const before = tf.memory().numTensors;
    const details = routingDetails(model, ds, 16);
    expect(tf.memory().numTensors).toBe(before); // repeated calls leave nothing behind
    const d = details.block1_moe;
    expect(d.images).toBe(16);
    // Router probabilities are a softmax over experts: every class's mean row sums to 1.
    for (const row of d.gateByClass) expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    // Shares sum to 1; 17 token positions (16 patches + class token).
    expect(d.served.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    expect(d.combineMass.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    expect(d.positionExpert).toHaveLength(17);
    // Tokens served by no expert are the dropped ones, as the probe's own count (another code path) says.
    const x = tf.tensor4d(ds.images.subarray(0, 16 * 784), [16, 28, 28, 1]);
    const y = tf.tensor1d(Array.from(ds.labels.subarray(0, 16)), 'int32');
    const stats = probeRouting(model, x, y, 3).block1_moe;
    expect(d.served[0]).toBeCloseTo(stats.droppedFraction, 6);
    // Mean dispatch count per token = sum over positions and experts of the dispatch fractions / tokens.
    const meanExperts = d.positionExpert.flat().reduce((a, b) => a + b, 0) / 17;
    expect(meanExperts).toBeCloseTo(stats.expertsPerToken.mean, 5);
    tf.dispose([x, y]);
    model.dispose();
  }, 60000);
});
