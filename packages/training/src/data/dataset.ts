/**
 * In-memory image classification data sets, their deterministic splits, and their feeding
 * through tfjs-data (`tf.data`) in a seeded, resumable order.
 */
import * as tf from '@tensorflow/tfjs';
import {checkOptions, InvalidArgumentError, ShapeError} from '@tfjs-moe/router';
import {deriveSeed, Mulberry32, seededPermutation} from '../rng';

/**
 * A labelled image data set held in memory. Pixels are float32 in [0, 1], laid out
 * `<float32>[examples, height, width, channels]` (row-major, NHWC as tfjs convolutions expect).
 *
 * @example
 * ```ts
 * const ds = syntheticDigits({examples: 100});
 * ds.images.length === 100 * ds.height * ds.width * ds.channels; // true
 * ```
 */
export interface ImageDataset {
  /** A name for logs and reports (e.g. `'mnist-digits'`). */
  readonly name: string;
  /** Pixels `<float32>[examples, height, width, channels]`, values in [0, 1]. */
  readonly images: Float32Array;
  /** Class labels `<int32>[examples]`, each in `[0, numClasses)`. */
  readonly labels: Int32Array;
  /** Image height in pixels. */
  readonly height: number;
  /** Image width in pixels. */
  readonly width: number;
  /** Channels per pixel (1 for grayscale). */
  readonly channels: number;
  /** Number of classes. */
  readonly numClasses: number;
  /** Optional class names, `numClasses` of them. */
  readonly classNames?: readonly string[];
}

/**
 * Number of examples in `ds`.
 *
 * @example
 * ```ts
 * datasetSize(loadDigits()); // 10000
 * ```
 */
export function datasetSize(ds: ImageDataset): number {
  return ds.labels.length;
}

/**
 * Checks a data set's internal consistency (sizes, label range) and returns it.
 * Throws {@link ShapeError} or {@link InvalidArgumentError} naming the field.
 *
 * @example
 * ```ts
 * validateDataset({name: 'x', images: new Float32Array(4), labels: Int32Array.of(0), height: 2, width: 2, channels: 1, numClasses: 1});
 * ```
 */
export function validateDataset(ds: ImageDataset): ImageDataset {
  const n = ds.labels.length;
  for (const [arg, v] of [['height', ds.height], ['width', ds.width], ['channels', ds.channels], ['numClasses', ds.numClasses]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(arg, 'a positive integer', v, `dataset ${ds.name}`);
  }
  const per = ds.height * ds.width * ds.channels;
  if (ds.images.length !== n * per) {
    throw new ShapeError('images', `${n} x ${ds.height} x ${ds.width} x ${ds.channels} = ${n * per} values`, ds.images.length, `dataset ${ds.name}`);
  }
  for (let i = 0; i < n; i++) {
    const l = ds.labels[i];
    if (!(l >= 0 && l < ds.numClasses)) {
      throw new InvalidArgumentError(`labels[${i}]`, `an integer in [0, ${ds.numClasses})`, l, `dataset ${ds.name}`);
    }
  }
  return ds;
}

/**
 * The examples of `ds` at `indices`, in that order, as a new data set.
 *
 * @example
 * ```ts
 * const firstTen = subset(ds, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
 * ```
 */
export function subset(ds: ImageDataset, indices: ArrayLike<number>, name = ds.name): ImageDataset {
  const per = ds.height * ds.width * ds.channels;
  const images = new Float32Array(indices.length * per);
  const labels = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const src = indices[i];
    images.set(ds.images.subarray(src * per, (src + 1) * per), i * per);
    labels[i] = ds.labels[src];
  }
  return {...ds, name, images, labels};
}

/** Options of {@link splitDataset}. */
export interface SplitOptions {
  /** Fraction of each class held out for evaluation, in (0, 1). Default 0.2. */
  heldOutFraction?: number;
  /** Seed of the split. The same seed always gives the same split. Default 0. */
  seed?: number;
}

/** A training part and a held-out part of one data set, disjoint; optionally a test set. */
export interface DataSplit {
  /** Examples to train on. */
  train: ImageDataset;
  /** Examples never trained on, for evaluation (the validation set, for model selection, when `test` is given). */
  heldOut: ImageDataset;
  /** Examples never trained on nor used for model selection: the final evaluation's data when given (e.g. MNIST's official test set). */
  test?: ImageDataset;
}

/**
 * Splits `ds` into disjoint training and held-out parts, stratified by class: from every class a
 * seeded random `round(heldOutFraction * count)` examples are held out (at least one when the
 * class has two or more examples). Deterministic in `seed`.
 *
 * @example
 * ```ts
 * const {train, heldOut} = splitDataset(loadDigits(), {heldOutFraction: 0.2, seed: 0});
 * datasetSize(heldOut); // about 2000
 * ```
 */
export function splitDataset(ds: ImageDataset, options: SplitOptions = {}): DataSplit {
  checkOptions(options as Record<string, unknown>, ['heldOutFraction', 'seed'], 'splitDataset');
  const fraction = options.heldOutFraction ?? 0.2;
  if (typeof fraction !== 'number' || !(fraction > 0 && fraction < 1)) {
    throw new InvalidArgumentError('heldOutFraction', 'a number in (0, 1)', fraction, 'splitDataset');
  }
  const seed = options.seed ?? 0;
  const byClass: number[][] = Array.from({length: ds.numClasses}, () => []);
  for (let i = 0; i < ds.labels.length; i++) byClass[ds.labels[i]].push(i);
  const trainIdx: number[] = [];
  const heldIdx: number[] = [];
  byClass.forEach((members, c) => {
    const perm = seededPermutation(members.length, deriveSeed(seed, 'split', c));
    let nHeld = Math.round(fraction * members.length);
    if (members.length >= 2) nHeld = Math.min(members.length - 1, Math.max(1, nHeld));
    for (let i = 0; i < members.length; i++) (i < nHeld ? heldIdx : trainIdx).push(members[perm[i]]);
  });
  trainIdx.sort((a, b) => a - b);
  heldIdx.sort((a, b) => a - b);
  return {train: subset(ds, trainIdx, `${ds.name}/train`), heldOut: subset(ds, heldIdx, `${ds.name}/held-out`)};
}

/** One batch: `xs <float32>[batch, height, width, channels]`, `ys <int32>[batch]`. */
export interface Batch extends tf.TensorContainerObject {
  xs: tf.Tensor4D;
  ys: tf.Tensor1D;
}

/** Options of {@link batchOrder} and {@link toTfDataset}. */
export interface BatchOptions {
  /** Examples per batch. */
  batchSize: number;
  /** Shuffle seed; omit for the data set's own order (evaluation). */
  seed?: number;
  /** The epoch: each epoch has its own order, derived from `(seed, epoch)`. Default 0. */
  epoch?: number;
  /** Drop the last, smaller batch (training, so that every step sees `batchSize` examples). Default false. */
  dropRemainder?: boolean;
  /**
   * Augmentation: shift every image by a random whole number of pixels in [-maxShift, maxShift]
   * along each axis (independently), filling with 0, drawn from `(seed, epoch, batch)` so a
   * resumed run sees the same images. Needs `seed`. Default 0 (no shift).
   */
  maxShift?: number;
}

/**
 * Number of batches in one epoch of `n` examples.
 *
 * @example
 * ```ts
 * batchesPerEpoch(10, 3, true); // 3
 * batchesPerEpoch(10, 3); // 4
 * ```
 */
export function batchesPerEpoch(n: number, batchSize: number, dropRemainder = false): number {
  return dropRemainder ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
}

/**
 * The example order of one epoch: a permutation seeded by `(seed, epoch)`, or the identity when
 * no seed is given. A resumed run recomputes it from the same numbers, which is what makes data
 * order part of the exactly-resumable state without storing it.
 *
 * @example
 * ```ts
 * batchOrder(5, {batchSize: 2}); // Int32Array [0, 1, 2, 3, 4]
 * batchOrder(5, {batchSize: 2, seed: 1, epoch: 0}); // a seeded permutation
 * ```
 */
export function batchOrder(n: number, options: BatchOptions): Int32Array {
  if (options.seed === undefined) return Int32Array.from({length: n}, (_, i) => i);
  return seededPermutation(n, deriveSeed(options.seed, 'epoch', options.epoch ?? 0));
}

/**
 * Feeds `ds` through tfjs-data: a `tf.data.Dataset` of {@link Batch}es in the order of
 * {@link batchOrder}, starting at batch `startBatch` (to resume mid-epoch). Tensors are made
 * lazily, one batch at a time; the consumer disposes them.
 *
 * @example
 * ```ts
 * const batches = toTfDataset(train, {batchSize: 64, seed: 1, epoch: 0, dropRemainder: true});
 * await batches.forEachAsync(({xs, ys}) => { ...; tf.dispose([xs, ys]); });
 * ```
 */
export function toTfDataset(ds: ImageDataset, options: BatchOptions, startBatch = 0): tf.data.Dataset<Batch> {
  const {batchSize} = options;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new InvalidArgumentError('batchSize', 'a positive integer', batchSize, 'toTfDataset');
  }
  const n = datasetSize(ds);
  const order = batchOrder(n, options);
  const numBatches = batchesPerEpoch(n, batchSize, options.dropRemainder);
  const per = ds.height * ds.width * ds.channels;
  const maxShift = options.maxShift ?? 0;
  if (!Number.isInteger(maxShift) || maxShift < 0) throw new InvalidArgumentError('maxShift', 'an integer >= 0', maxShift, 'toTfDataset');
  if (maxShift > 0 && options.seed === undefined) throw new InvalidArgumentError('seed', 'a number when maxShift > 0', options.seed, 'toTfDataset');
  function* batches(): Iterator<Batch> {
    for (let b = startBatch; b < numBatches; b++) {
      const size = Math.min(batchSize, n - b * batchSize);
      const x = new Float32Array(size * per);
      const y = new Int32Array(size);
      const rng = maxShift > 0 ? new Mulberry32(deriveSeed(options.seed!, 'shift', options.epoch ?? 0, b)) : null;
      for (let i = 0; i < size; i++) {
        const src = order[b * batchSize + i];
        const image = ds.images.subarray(src * per, (src + 1) * per);
        if (rng) {
          const dy = Math.floor(rng.next() * (2 * maxShift + 1)) - maxShift;
          const dx = Math.floor(rng.next() * (2 * maxShift + 1)) - maxShift;
          shiftImage(image, x.subarray(i * per, (i + 1) * per), ds.height, ds.width, ds.channels, dy, dx);
        } else x.set(image, i * per);
        y[i] = ds.labels[src];
      }
      yield {xs: tf.tensor4d(x, [size, ds.height, ds.width, ds.channels]), ys: tf.tensor1d(y, 'int32')};
    }
  }
  return tf.data.generator(batches as unknown as () => Iterator<tf.TensorContainer>) as unknown as tf.data.Dataset<Batch>;
}

/**
 * Copies `src` (`[height, width, channels]`) into `dst` shifted by `dy` rows and `dx` columns
 * (positive: down / right), filling the uncovered pixels with 0: `dst[y][x] = src[y - dy][x - dx]`.
 *
 * @example
 * ```ts
 * shiftImage(Float32Array.of(1, 2, 3, 4), out, 2, 2, 1, 0, 1); // out = [0, 1, 0, 3]
 * ```
 */
export function shiftImage(src: Float32Array, dst: Float32Array, height: number, width: number, channels: number, dy: number, dx: number): void {
  dst.fill(0);
  const row = width * channels;
  const x0 = Math.max(0, dx);
  const x1 = Math.min(width, width + dx);
  if (x1 <= x0) return;
  for (let y = Math.max(0, dy); y < Math.min(height, height + dy); y++) {
    const from = (y - dy) * row + (x0 - dx) * channels;
    dst.set(src.subarray(from, from + (x1 - x0) * channels), y * row + x0 * channels);
  }
}
