/** Resolves a data specification (as given to the CLI's `--data`) to a data set. */
import * as fs from 'fs';
import {InvalidArgumentError, ShapeError} from '@tfjs-moe/router';
import type {ImageDataset} from './dataset';
import {loadDigits} from './digits';
import {syntheticDataset} from './synthetic';
import {loadArrayFile, loadImageFolder} from './files';

/** Options of {@link loadData}. */
export interface LoadDataOptions {
  /** Required image size `[height, width]` for image folders and array files. */
  size?: [number, number];
  /** Seed of the synthetic data set. */
  seed?: number;
  /** For `'synthetic'`: number of examples. Default 1000. */
  examples?: number;
}

/**
 * Loads data named by `spec`:
 * - `'digits'` (or `'mnist'`): the embedded handwritten digits ({@link loadDigits});
 * - `'synthetic'`: {@link syntheticDataset} with 28 x 28 images and 10 classes;
 * - a folder path: {@link loadImageFolder};
 * - a `.npy` / `.json` path: {@link loadArrayFile}.
 *
 * With `size`, data of any other image size is rejected with a {@link ShapeError}.
 *
 * @example
 * ```ts
 * const ds = loadData('digits');
 * ```
 */
export function loadData(spec: string, options: LoadDataOptions = {}): ImageDataset {
  let ds: ImageDataset;
  if (spec === 'digits' || spec === 'mnist') ds = loadDigits();
  else if (spec === 'synthetic') ds = syntheticDataset({examples: options.examples ?? 1000, seed: options.seed ?? 0});
  else if (fs.existsSync(spec) && fs.statSync(spec).isDirectory()) ds = loadImageFolder(spec, {size: options.size});
  else if (/\.(npy|json)$/i.test(spec) && fs.existsSync(spec)) ds = loadArrayFile(spec);
  else {
    throw new InvalidArgumentError('data', `'digits', 'synthetic', an existing folder of images or a .npy/.json file`, spec);
  }
  if (options.size && (ds.height !== options.size[0] || ds.width !== options.size[1])) {
    throw new ShapeError('image size', `${options.size[0]}x${options.size[1]} (the model's input)`, `${ds.height}x${ds.width}`, `data ${spec}`);
  }
  return ds;
}
