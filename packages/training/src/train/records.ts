/**
 * The records of a training run: the options of `train`, what each logged step and each
 * evaluation record, what `train` returns, and the trainer state a checkpoint carries.
 */
import type * as tf from '@tensorflow/tfjs';
import type {DataSplit} from '../data/dataset';
import type {FileSystem} from '../io/file-io';
import type {LoadBalanceStats} from '../metrics/load-balance';
import type {EvalResult} from './evaluate';

/** Options of {@link train}. Every field has a default except `model` and `data`. */
export interface TrainOptions {
  /**
   * Builds the model (called once) from the initialization seed that the trainer derives from
   * `seed`: pass it to the model's seeded initializers (`vit({..., seed})`, `vmoe({..., seed})`)
   * for initial weights that are a function of `seed`. Input `<float32>[batch, h, w, c]`, output
   * logits `<float32>[batch, classes]`.
   */
  model: (seed: number) => tf.LayersModel;
  /** Training and held-out data. */
  data: DataSplit;
  /** Seed of initialization, data order and per-step randomness. Default 0. */
  seed?: number;
  /** Examples per step. Default {@link TRAINING_DEFAULTS}.batchSize. */
  batchSize?: number;
  /** Length of training in epochs (of `floor(n / batchSize)` steps); ignored when `steps` is given. Default {@link TRAINING_DEFAULTS}.epochs. */
  epochs?: number;
  /** Length of training in steps. */
  steps?: number;
  /** Peak learning rate. Default {@link TRAINING_DEFAULTS}.learningRate. */
  learningRate?: number;
  /** Linear warmup steps. Default {@link TRAINING_DEFAULTS}.warmupFraction of the steps. */
  warmupSteps?: number;
  /** Augmentation: random shift of each training image by up to this many pixels per axis ({@link toTfDataset}). Default {@link TRAINING_DEFAULTS}.maxShift. */
  maxShift?: number;
  /** Learning rate at the end of the cosine decay. Default {@link TRAINING_DEFAULTS}.endLearningRate. */
  endLearningRate?: number;
  /** Decoupled weight decay of AdamW. Default {@link TRAINING_DEFAULTS}.weightDecay. */
  weightDecay?: number;
  /** Clip gradients to this global norm. Default {@link TRAINING_DEFAULTS}.clipNorm. */
  clipNorm?: number;
  /** Weight of the model's auxiliary losses (`model.calculateLosses()`, e.g. MoE load balancing). Default {@link TRAINING_DEFAULTS}.auxLossWeight. */
  auxLossWeight?: number;
  /** Log (loss, accuracy, load balance) every this many steps. Default {@link TRAINING_DEFAULTS}.logEvery. */
  logEvery?: number;
  /** Evaluate on held-out (validation) data every this many steps (0: only at the end). Default {@link defaultEvalEvery}(steps). */
  evalEvery?: number;
  /** Periodic evaluations use at most this many held-out examples (the final one uses all). Default {@link TRAINING_DEFAULTS}.evalExamples. */
  evalExamples?: number;
  /** Write a checkpoint every this many steps (0: never). Default {@link TRAINING_DEFAULTS}.checkpointEvery with `outDir`, else 0. */
  checkpointEvery?: number;
  /** Checkpoints kept on disk. Default {@link TRAINING_DEFAULTS}.keepCheckpoints. */
  keepCheckpoints?: number;
  /** Run folder: `checkpoints/`, `log.jsonl`. */
  outDir?: string;
  /**
   * Continue from the newest intact checkpoint in `outDir/checkpoints` if there is one. Default
   * false. `seed` and `batchSize` must be the checkpoint's; `steps` / `epochs` may extend the run
   * (the cosine schedule is recomputed for the new length).
   */
  resume?: boolean;
  /** Identity of the run, stored in every checkpoint; on resume a checkpoint of another run is refused. */
  runId?: string;
  /** Called after every logged step. Throwing stops training (the run can be resumed). */
  onLog?: (record: StepRecord) => void | Promise<void>;
  /** Called after every evaluation. */
  onEval?: (record: EvalRecord) => void | Promise<void>;
  /** File system used for checkpoints and logs (tests inject failures). */
  fs?: FileSystem;
}

/** One logged training step. Loss and accuracy are means over the steps since the last log. */
export interface StepRecord {
  type: 'step';
  /** Steps completed. */
  step: number;
  /** Epoch (0-based) of the last step. */
  epoch: number;
  /** Mean total loss (cross-entropy + weighted auxiliary). */
  loss: number;
  /** Mean cross-entropy. */
  crossEntropy: number;
  /** Mean auxiliary loss (unweighted). */
  auxLoss: number;
  /** Mean training accuracy. */
  accuracy: number;
  /** Learning rate of the last step. */
  learningRate: number;
  /** Global gradient norm of the last step, before clipping. */
  gradNorm: number;
  /** Training images per second since the last log (wall time; excluded from equality checks). */
  imagesPerSecond: number;
  /** Load statistics of each MoE layer on the last step's batch. */
  balance: Record<string, LoadBalanceStats>;
}

/** One evaluation on held-out data. */
export interface EvalRecord extends EvalResult {
  type: 'eval';
  /** Steps completed. */
  step: number;
  /** True for the final evaluation (all test examples when `data.test` is given, else all held-out ones). */
  final: boolean;
  /**
   * The examples evaluated: `'test'` (the final evaluation when `data.test` is given) or
   * `'validation'` (the held-out split). Absent in records written before 1 Dec 2026: read
   * {@link evalSplit}.
   */
  split?: 'validation' | 'test';
}

/** What {@link train} returns. */
export interface TrainResult {
  /** The trained model. */
  model: tf.LayersModel;
  /** Logged steps, in order (including those before a resume). */
  history: StepRecord[];
  /** Evaluations, in order; the last is the final one. */
  evals: EvalRecord[];
  /** The final evaluation. */
  final: EvalRecord;
  /** Steps run in total. */
  steps: number;
  /** Step the run resumed from (0 for a fresh run). */
  resumedFrom: number;
  /** Load statistics of each MoE layer averaged over every logged step. */
  trainBalance: Record<string, LoadBalanceStats>;
}

/** What a checkpoint carries besides weights and optimizer state. */
export interface TrainerState {
  runId?: string;
  seed: number;
  totalSteps: number;
  batchSize: number;
  history: StepRecord[];
  evals: EvalRecord[];
}

/**
 * Which examples an evaluation read: its `split`, or for older records without one, `'test'`
 * for the final evaluation and `'validation'` for the periodic ones.
 *
 * @example
 * ```ts
 * evalSplit({type: 'eval', step: 10, final: false, ...result}); // 'validation'
 * ```
 */
export function evalSplit(record: Pick<EvalRecord, 'final' | 'split'>): 'validation' | 'test' {
  return record.split ?? (record.final ? 'test' : 'validation');
}
