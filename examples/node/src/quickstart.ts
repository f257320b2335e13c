import * as tf from '@tensorflow/tfjs';
import {moe, solveSparseOT, type MoE} from '@tfjs-moe/router';

export async function quickstart(): Promise<void> {
  // 1. The k-sparse OT core: 8 tokens, 4 experts; each expert takes at most k = 2 tokens.
  const gates = tf.softmax(tf.randomNormal([8, 4], 0, 1, 'float32', 42)); // <float32>[tokens, experts]; seed 0 would mean unseeded in tfjs
  const cost = tf.neg(gates);
  const ot = solveSparseOT(cost, {k: 2}); // a = 1 per token, b = 8 / 4 per expert
  ot.plan.print(); // <float32>[8, 4]: at most 2 nonzeros per column, columns sum to 2;
  // rows may not sum to 1: with k < tokens the relaxation's plan can break the row marginals
  // even at the optimum (the router's rebalancing then gives every token a slot; see below)
  console.log(`dropped ${ot.droppedFraction}, mean row error ${ot.meanRowError.toFixed(3)}`);
  ot.dispose();
  tf.dispose([gates, cost]);

  // 2. An MoE layer routed by sparse OT, in a functional model trained with model.fit.
  const input = tf.input({shape: [16, 32]}); // <float32>[batch, tokens, d]
  const layer = moe({numExperts: 4, hiddenDim: 64, router: 'sparse-ot', capacityFactor: 1.25});
  const mixed = layer.apply(input) as tf.SymbolicTensor;
  const output = tf.layers.add().apply([input, mixed]) as tf.SymbolicTensor; // dropped tokens ride the residual
  const model = tf.model({inputs: input, outputs: output});
  model.compile({optimizer: tf.train.adam(1e-3), loss: 'meanSquaredError'});
  const x = tf.randomNormal([8, 16, 32], 0, 1, 'float32', 1);
  const y = tf.tanh(x);
  await model.fit(x, y, {epochs: 2, batchSize: 4, verbose: 0}); // + the router's auxiliary loss
  console.log((model.getLayer(layer.name) as MoE).lastMetrics); // per-expert load, drops, ...
  model.dispose();
  tf.dispose([x, y]);
}
