/**
 * Seeded per-expert initialization (issue 9 item 3): a seeded initializer gives every expert a
 * distinct, deterministic draw; the same seed gives the same weights; each expert's values follow
 * the initializer's distribution for one expert's fans (Glorot-uniform: U(-L, L) with
 * L = sqrt(6 / (fanIn + fanOut)), variance L^2 / 3). The initializer round-trips through
 * tf.serialization, and so does a layer built with it.
 */
import * as tf from '@tensorflow/tfjs';
import {useBackend} from '../helpers/backends';
import {moe, MoE} from '../../src/moe/moe-layer';
import {deriveSeed, PerExpertInitializer, perExpertInitializer} from '../../src/moe/expert-initializer';

const E = 4;
const D = 16;
const H = 48;

function kernels(layer: MoE): number[][] {
  layer.build([null, 8, D]);
  const k = layer.kernelIn!.read();
  return Array.from({length: E}, (_, e) => Array.from(tf.slice(k, [e, 0, 0], [1, D, H]).dataSync()));
}

describe('per-expert initializer [cpu]', () => {
  beforeAll(() => useBackend('cpu'));

  it.each([
    ['an initializer instance', () => tf.initializers.glorotUniform({seed: 1})],
    ['the {className, config} form', () => ({className: 'GlorotUniform', config: {seed: 1}})],
  ])('%s: experts differ, same seed gives the same weights, values follow Glorot-uniform per expert', (_name, init) => {
    expect(tf.getBackend()).toBe('cpu');
    const a = kernels(moe({numExperts: E, hiddenDim: H, router: 'topk', kernelInitializer: init() as never}));
    const b = kernels(moe({numExperts: E, hiddenDim: H, router: 'topk', kernelInitializer: init() as never}));
    expect(b).toEqual(a);
    for (let i = 0; i < E; i++) for (let j = i + 1; j < E; j++) expect(a[i]).not.toEqual(a[j]);
    const limit = Math.sqrt(6 / (D + H));
    for (const values of a) {
      const n = values.length;
      const mean = values.reduce((s, v) => s + v, 0) / n;
      const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / n;
      expect(Math.max(...values.map(Math.abs))).toBeLessThanOrEqual(limit);
      // 768 draws: the mean's std is L / sqrt(3 n) = 0.0074 and the variance's relative std ~ 0.04.
      expect(Math.abs(mean)).toBeLessThan(4 * limit / Math.sqrt(3 * n));
      expect(variance / (limit * limit / 3)).toBeGreaterThan(0.85);
      expect(variance / (limit * limit / 3)).toBeLessThan(1.15);
    }
    // The second kernel is drawn from its own seeds, not a reshaped copy of the first.
    const layer = moe({numExperts: E, hiddenDim: H, router: 'topk', kernelInitializer: init() as never});
    layer.build([null, 8, D]);
    const kin = Array.from(layer.kernelIn!.read().dataSync()).slice(0, 20);
    const kout = Array.from(layer.kernelOut!.read().dataSync()).slice(0, 20);
    expect(kout.map((v) => v / kout[0])).not.toEqual(kin.map((v) => v / kin[0]));
  });

  it('different seeds give different experts; unseeded experts differ too', () => {
    const s1 = kernels(moe({numExperts: E, hiddenDim: H, router: 'topk', kernelInitializer: tf.initializers.glorotUniform({seed: 1})}));
    const s2 = kernels(moe({numExperts: E, hiddenDim: H, router: 'topk', kernelInitializer: tf.initializers.glorotUniform({seed: 2})}));
    expect(s1[0]).not.toEqual(s2[0]);
    const u = kernels(moe({numExperts: E, hiddenDim: H, router: 'topk'}));
    expect(u[0]).not.toEqual(u[1]);
  });

  it('expert e draws from deriveSeed(seed, salt, e): equal to the plain initializer with that seed', () => {
    const init = perExpertInitializer({initializer: tf.initializers.randomNormal({seed: 5, stddev: 2}), salt: 3});
    const w = init.apply([3, 2, 2]);
    for (let e = 0; e < 3; e++) {
      const expected = tf.initializers.randomNormal({seed: deriveSeed(5, 3, e), stddev: 2}).apply([2, 2]);
      expect(Array.from(tf.slice(w, [e, 0, 0], [1, 2, 2]).dataSync())).toEqual(Array.from(expected.dataSync()));
    }
    expect(new Set([0, 1, 2, 3].map((e) => deriveSeed(5, 3, e))).size).toBe(4);
  });

  it('is registered: serializes and deserializes through tf.serialization', () => {
    const init = perExpertInitializer({initializer: {className: 'GlorotUniform', config: {seed: 9}}, salt: 1});
    const config = {className: init.getClassName(), config: init.getConfig()};
    expect(config.className).toBe('PerExpertInitializer');
    expect(() => perExpertInitializer({initializer: 'glorotUniform', seed: 1} as never)).toThrow("PerExpertInitializer: Unknown option 'seed'");
    const [cls, fromConfig] = tf.serialization.SerializationMap.getMap().classNameMap.PerExpertInitializer;
    const back = fromConfig(cls, JSON.parse(JSON.stringify(config.config))) as PerExpertInitializer;
    expect(Array.from(back.apply([2, 3, 4]).dataSync())).toEqual(Array.from(init.apply([2, 3, 4]).dataSync()));
    // A layer whose config holds a seeded initializer rebuilds with the same weights.
    const layer = moe({numExperts: E, hiddenDim: H, router: 'topk', kernelInitializer: tf.initializers.glorotUniform({seed: 4})});
    const copy = MoE.fromConfig(MoE, JSON.parse(JSON.stringify(layer.getConfig()))) as MoE;
    expect(kernels(copy)).toEqual(kernels(layer));
  });
});
