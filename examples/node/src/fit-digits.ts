/**
 * Trains a small V-MoE (sparse-OT router) on the embedded handwritten digits with a plain
 * `model.fit`, logging per-expert load with `LoadBalanceCallback`, then prints held-out accuracy.
 *
 *   npm run fit -w @tfjs-moe/example-node -- [--examples=2000] [--epochs=2] [--router=sparse-ot]
 *
 * The `tfjs-moe train` command does the same with checkpoints, schedules and a report; this file
 * shows the pieces a user combines in their own script.
 */
import {parseArgs} from 'util';
import * as tf from '@tensorflow/tfjs';
import {vmoe} from '@tfjs-moe/models';
import {LoadBalanceCallback, loadDigits, setupBackend, splitDataset, type ImageDataset} from '@tfjs-moe/training';

/** Options of {@link fitDigits}. */
export interface FitDigitsOptions {
  /** Examples of each digit to use (train + held out). Default 200. */
  perClass?: number;
  /** Epochs of `model.fit`. Default 2. */
  epochs?: number;
  /** Router of the MoE blocks. Default 'sparse-ot'. */
  router?: string;
  /** Seed of the split and of the initialization. Default 0. */
  seed?: number;
  /** Print progress. Default true. */
  verbose?: boolean;
}

/** What {@link fitDigits} returns. */
export interface FitDigitsResult {
  /** Held-out accuracy after training. */
  accuracy: number;
  /** Training loss of each epoch (cross-entropy plus auxiliary losses). */
  losses: number[];
  /** Max/mean expert load of each MoE layer in the last epoch. */
  maxOverMean: Record<string, number>;
}

function tensors(ds: ImageDataset): {xs: tf.Tensor4D; ys: tf.Tensor1D} {
  return {
    xs: tf.tensor4d(ds.images, [ds.labels.length, ds.height, ds.width, ds.channels]),
    ys: tf.tensor1d(Float32Array.from(ds.labels)), // tfjs's sparse cross-entropy wants float labels
  };
}

/**
 * Trains and evaluates; see the file header.
 *
 * @example
 * ```ts
 * const {accuracy} = await fitDigits({perClass: 100, epochs: 1});
 * ```
 */
export async function fitDigits(options: FitDigitsOptions = {}): Promise<FitDigitsResult> {
  const verbose = options.verbose ?? true;
  const {train, heldOut} = splitDataset(loadDigits({perClassLimit: options.perClass ?? 200}), {seed: options.seed ?? 0});
  const model = vmoe({
    preset: 'mnist-tiny',
    headActivation: 'softmax', // probabilities, for sparseCategoricalCrossentropy
    seed: options.seed ?? 0,
    moe: {numExperts: 4, router: options.router ?? 'sparse-ot', capacityFactor: 1.25},
  });
  const optimizer = tf.train.adam(2e-3);
  model.compile({optimizer, loss: 'sparseCategoricalCrossentropy', metrics: ['accuracy']});
  const tr = tensors(train);
  const ho = tensors(heldOut);
  const balance = new LoadBalanceCallback({everyBatches: 5});
  const history = await model.fit(tr.xs, tr.ys, {
    epochs: options.epochs ?? 2,
    batchSize: 32,
    shuffle: true,
    verbose: 0,
    callbacks: [balance, new tf.CustomCallback({onEpochEnd: async (epoch, logs) => {
      if (verbose) console.log(`epoch ${epoch + 1}: loss ${logs?.loss.toFixed(3)}, accuracy ${logs?.acc.toFixed(3)}`);
    }})],
  });
  const probs = model.predict(ho.xs) as tf.Tensor;
  const correct = tf.tidy(() => tf.mean(tf.equal(tf.argMax(probs, -1), ho.ys.cast('int32')).cast('float32')));
  const accuracy = (await correct.data())[0];
  const last = balance.epochs[balance.epochs.length - 1] ?? {};
  const maxOverMean = Object.fromEntries(Object.entries(last).map(([name, s]) => [name, s.maxOverMean]));
  if (verbose) {
    console.log(`held-out accuracy ${accuracy.toFixed(3)} on ${heldOut.labels.length} digits`);
    for (const [name, s] of Object.entries(last)) {
      console.log(`${name}: tokens per expert [${s.tokensPerExpert.map((v) => v.toFixed(1)).join(', ')}], max/mean ${s.maxOverMean.toFixed(2)}, dropped ${(100 * s.droppedFraction).toFixed(1)}%`);
    }
  }
  tf.dispose([probs, correct, tr.xs, tr.ys, ho.xs, ho.ys]);
  model.dispose();
  optimizer.dispose(); // a user-made optimizer is not disposed with the model
  return {accuracy, losses: history.history.loss as number[], maxOverMean};
}


if (require.main === module) {
  const args = parseArgs({options: {examples: {type: 'string'}, epochs: {type: 'string'}, router: {type: 'string'}}, strict: true, allowPositionals: false}).values;
  const flag = (name: 'examples' | 'epochs' | 'router'): string | undefined => args[name];
  void (async () => {
    const setup = await setupBackend('auto');
    console.log(`backend: ${setup.backend}`);
    await fitDigits({
      perClass: flag('examples') ? Math.ceil(Number(flag('examples')) / 10) : undefined,
      epochs: flag('epochs') ? Number(flag('epochs')) : undefined,
      router: flag('router'),
    });
  })();
}
