/**
 * moeify of a Keras-style tf.sequential model with a single token MLP: the default block choice
 * ('every-other', indices 1, 3, ...) selects nothing, and the error says what to pass instead;
 * `blocks: 'all'` upcycles the one MLP and predicts what the dense model predicts.
 */
import * as tf from '@tensorflow/tfjs';
import {ConfigError} from '@tfjs-moe/router';
import {moeify, moeLayers} from '../src';

function oneMlpModel(): tf.Sequential {
  return tf.sequential({
    layers: [
      tf.layers.dense({inputShape: [8, 16], units: 16, name: 'embed', kernelInitializer: tf.initializers.glorotUniform({seed: 1})}),
      tf.layers.dense({units: 32, activation: 'relu', name: 'mlp_in', kernelInitializer: tf.initializers.glorotUniform({seed: 2})}),
      tf.layers.dense({units: 16, name: 'mlp_out', kernelInitializer: tf.initializers.glorotUniform({seed: 3})}),
      tf.layers.flatten(),
      tf.layers.dense({units: 3, kernelInitializer: tf.initializers.glorotUniform({seed: 4})}),
    ],
  });
}

describe('moeify of a sequential model with one MLP [cpu]', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    expect(tf.getBackend()).toBe('cpu');
  });

  it("names the block count and 'all' when the default selection picks no MLP", () => {
    const dense = oneMlpModel();
    let error: unknown;
    try {
      moeify(dense, {numExperts: 4});
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain('blocks');
    expect((error as Error).message).toContain("use 'all' or [0]");
    expect((error as Error).message).toContain('1 block(s)');
    dense.dispose();
  });

  it("with blocks: 'all' replaces the MLP and predicts what the dense model predicts", () => {
    const dense = oneMlpModel();
    const sparse = moeify(dense, {numExperts: 4, blocks: 'all'});
    expect(moeLayers(sparse)).toHaveLength(1);
    const x = tf.randomNormal([4, 8, 16], 0, 1, 'float32', 7);
    const diff = tf.tidy(() => tf.sub(dense.predict(x) as tf.Tensor, sparse.predict(x) as tf.Tensor).abs().max().dataSync()[0]);
    expect(diff).toBeLessThan(1e-5); // upcycled experts, normalized combine weights, dropless inference
    x.dispose();
    dense.dispose();
    sparse.dispose();
  });
});
