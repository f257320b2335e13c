/**
 * SparseOTRouter inside the MoE layer: model.fit trains through each gradient mode, and a model
 * with a warm-started 'implicit' router survives save + loadLayersModel with identical outputs
 * and its warm-start weight restored.
 */
import * as tf from '@tensorflow/tfjs';

import {MoE, moe} from '../../src/moe/moe-layer';
import {SparseOTRouter} from '../../src/routers/sparse-ot';
import {describeBackends, expectAllClose} from '../helpers/backends';

const B = 2;
const T = 12;
const D = 6;
const E = 3;

function model(gradient: 'softmax' | 'implicit' | 'unrolled', warmStart = false): tf.Sequential {
  const s = tf.sequential();
  s.add(tf.layers.dense({units: D, inputShape: [T, D], kernelInitializer: tf.initializers.glorotUniform({seed: 1})}));
  s.add(moe({numExperts: E, hiddenDim: 8, router: {name: 'sparse-ot', gradient, warmStart, gamma: 1}, capacityFactor: 1.5,
    kernelInitializer: {className: 'GlorotUniform', config: {seed: 2}}}));
  return s;
}

describeBackends('SparseOTRouter in the MoE layer', () => {
  for (const gradient of ['softmax', 'implicit', 'unrolled'] as const) {
    test(`model.fit lowers the loss with gradient '${gradient}', and the router kernel receives a gradient`, async () => {
      const m = model(gradient);
      m.compile({optimizer: tf.train.adam(1e-2), loss: 'meanSquaredError'});
      const x = tf.randomNormal([8, T, D], 0, 1, 'float32', 3);
      const y = tf.randomNormal([8, T, D], 0, 1, 'float32', 4);
      const layer = m.layers[1] as MoE;
      const kernel = (layer.router as SparseOTRouter).kernel!.read() as tf.Variable;
      const {grads} = tf.variableGrads(() => tf.mean(tf.square(tf.sub(m.apply(x, {training: true}) as tf.Tensor, y))) as tf.Scalar, [kernel]);
      expect(tf.norm(Object.values(grads)[0]).dataSync()[0]).toBeGreaterThan(0);
      tf.dispose(Object.values(grads));
      const h = await m.fit(x, y, {epochs: 5, batchSize: 8, verbose: 0, shuffle: false});
      const losses = h.history.loss as number[];
      expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
      tf.dispose([x, y]);
    });
  }

  test('save + loadLayersModel: identical outputs and the warm-start weight restored (implicit, warm start)', async () => {
    const m = model('implicit', true);
    m.compile({optimizer: tf.train.sgd(1e-2), loss: 'meanSquaredError'});
    const x = tf.randomNormal([B, T, D], 0, 1, 'float32', 5);
    await m.fit(x, x, {epochs: 2, batchSize: 2, verbose: 0});
    const router = (m.layers[1] as MoE).router as SparseOTRouter;
    const beta = router.warmStartBeta!.read().arraySync() as number[];
    expect(beta.some((v) => v !== 0)).toBe(true);
    const before = (m.predict(x) as tf.Tensor).arraySync() as number[][][];
    let saved: tf.io.ModelArtifacts | undefined;
    await m.save(tf.io.withSaveHandler(async (a) => {
      saved = a;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
    const loadedRouter = (loaded.layers.find((l) => l instanceof MoE) as MoE).router as SparseOTRouter;
    expect([loadedRouter.gradient, loadedRouter.warmStart]).toEqual([{className: 'ImplicitDifferentiation', config: {space: 'experts'}}, true]);
    expectAllClose(loadedRouter.warmStartBeta!.read().arraySync() as number[], beta, 0, 0);
    expectAllClose((loaded.predict(x) as tf.Tensor).arraySync() as number[][][], before, 0, 0);
    x.dispose();
  });
});
