/**
 * The IDX file format of MNIST and Fashion-MNIST (LeCun et al., "THE MNIST DATABASE of
 * handwritten digits", section "FILE FORMATS FOR THE MNIST DATABASE"): a 4-byte magic number
 * (two zero bytes, a type code, the number of dimensions), one big-endian uint32 per dimension,
 * then the values in C order, big-endian. Files may be gzip-compressed (`.gz`), as Debian ships
 * Fashion-MNIST.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import {InvalidArgumentError, ShapeError} from '@tfjs-moe/router';
import {validateDataset, type ImageDataset} from './dataset';

/** A parsed IDX array: its dimensions and its values. */
export interface IdxArray {
  /** Dimensions (C order), e.g. `[60000, 28, 28]` for MNIST's training images. */
  dims: number[];
  /** The values: a `Uint8Array` for type 0x08 (the MNIST files), else converted to float64. */
  data: Uint8Array | Float64Array;
}

/** IDX type codes: bytes per value and a big-endian reader. */
const IDX_TYPES: Record<number, [string, number, (v: DataView, o: number) => number]> = {
  0x08: ['uint8', 1, (v, o) => v.getUint8(o)],
  0x09: ['int8', 1, (v, o) => v.getInt8(o)],
  0x0b: ['int16', 2, (v, o) => v.getInt16(o, false)],
  0x0c: ['int32', 4, (v, o) => v.getInt32(o, false)],
  0x0d: ['float32', 4, (v, o) => v.getFloat32(o, false)],
  0x0e: ['float64', 8, (v, o) => v.getFloat64(o, false)],
};

/**
 * Parses the bytes of an IDX file (gunzipping them first when they start with the gzip magic
 * `1f 8b`). `source` names the file in errors.
 *
 * Errors: {@link InvalidArgumentError} for a bad magic number, an unknown type code, zero
 * dimensions or a corrupt gzip stream; {@link ShapeError} when the file is shorter than its
 * header says (truncated) or longer.
 *
 * @example
 * ```ts
 * const {dims, data} = parseIdx(fs.readFileSync('t10k-labels-idx1-ubyte')); // dims [10000], Uint8Array
 * ```
 */
export function parseIdx(bytes: Uint8Array, source = 'idx'): IdxArray {
  let buf = bytes;
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = zlib.gunzipSync(buf);
    } catch (e) {
      throw new InvalidArgumentError(source, 'a readable gzip stream', (e as Error).message);
    }
  }
  if (buf.length < 4) throw new ShapeError(source, 'an IDX header of at least 4 bytes', `${buf.length} bytes`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf[0] !== 0 || buf[1] !== 0) {
    throw new InvalidArgumentError(source, 'an IDX file (magic number 00 00 <type> <dims>)', hex(buf.subarray(0, 4)));
  }
  const type = IDX_TYPES[buf[2]];
  if (!type) {
    throw new InvalidArgumentError(`${source} type code`, `one of ${Object.keys(IDX_TYPES).map((k) => `0x${Number(k).toString(16).padStart(2, '0')}`).join(', ')}`, `0x${buf[2].toString(16).padStart(2, '0')}`);
  }
  const rank = buf[3];
  if (rank < 1) throw new InvalidArgumentError(`${source} number of dimensions`, 'at least 1', rank);
  const start = 4 + 4 * rank;
  if (buf.length < start) throw new ShapeError(source, `a header of ${start} bytes (${rank} dimensions)`, `${buf.length} bytes (truncated)`);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  const [, bytesPer, read] = type;
  const body = buf.length - start;
  if (body !== count * bytesPer) {
    throw new ShapeError(source, `${count * bytesPer} data bytes for dims [${dims.join(', ')}]`, `${body} bytes${body < count * bytesPer ? ' (truncated)' : ''}`);
  }
  if (bytesPer === 1 && type[0] === 'uint8') return {dims, data: buf.slice(start)};
  const data = new Float64Array(count);
  for (let i = 0; i < count; i++) data[i] = read(view, start + i * bytesPer);
  return {dims, data};
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

/**
 * Reads and parses one IDX file ({@link parseIdx}); errors name the file.
 *
 * @example
 * ```ts
 * const labels = readIdxFile('/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz');
 * ```
 */
export function readIdxFile(file: string): IdxArray {
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new InvalidArgumentError('IDX file', 'an existing file', file);
  return parseIdx(fs.readFileSync(file), file);
}

/**
 * Builds an image data set from an IDX images array `[n, h, w]` (or `[n, h, w, c]`) of uint8
 * pixels and an IDX labels array `[n]`: pixels become float32 in [0, 1] (divided by 255).
 * Errors name the two files.
 *
 * @example
 * ```ts
 * const test = idxDataset(readIdxFile(imagesFile), readIdxFile(labelsFile), {name: 'mnist/test'});
 * ```
 */
export function idxDataset(
  images: IdxArray,
  labels: IdxArray,
  options: {name: string; classNames?: readonly string[]; imagesSource?: string; labelsSource?: string},
): ImageDataset {
  const imgSrc = options.imagesSource ?? `${options.name} images`;
  const lblSrc = options.labelsSource ?? `${options.name} labels`;
  if (images.dims.length !== 3 && images.dims.length !== 4) throw new ShapeError(imgSrc, 'images of dims [n, height, width] or [n, height, width, channels]', `[${images.dims.join(', ')}]`);
  if (labels.dims.length !== 1) throw new ShapeError(lblSrc, 'labels of dims [n]', `[${labels.dims.join(', ')}]`);
  const [n, h, w, c = 1] = images.dims;
  if (labels.dims[0] !== n) throw new ShapeError(lblSrc, `${n} labels (one per image of ${imgSrc})`, labels.dims[0]);
  const scale = images.data instanceof Uint8Array ? 255 : Math.max(1, ...maxOf(images.data));
  const pixels = new Float32Array(images.data.length);
  for (let i = 0; i < pixels.length; i++) pixels[i] = images.data[i] / scale;
  const lbl = Int32Array.from(labels.data);
  let numClasses = options.classNames?.length ?? 0;
  for (let i = 0; i < lbl.length; i++) numClasses = Math.max(numClasses, lbl[i] + 1);
  for (let i = 0; i < lbl.length; i++) {
    if (!(lbl[i] >= 0)) throw new InvalidArgumentError(`${lblSrc} label ${i}`, 'an integer >= 0', lbl[i]);
  }
  return validateDataset({name: options.name, images: pixels, labels: lbl, height: h, width: w, channels: c, numClasses, ...(options.classNames ? {classNames: options.classNames} : {})});
}

function maxOf(a: ArrayLike<number>): [number] {
  let m = -Infinity;
  for (let i = 0; i < a.length; i++) if (a[i] > m) m = a[i];
  return [m];
}

/** A data set that comes with an official test set. */
export interface TrainTestData {
  /** The official training set. */
  train: ImageDataset;
  /** The official test set (never trained on, never used for model selection). */
  test: ImageDataset;
}

/** Options of {@link loadIdxFolder}. */
export interface IdxFolderOptions {
  /** Name of the data set in logs and reports. Default: the folder's name. */
  name?: string;
  /** Class names, one per label. */
  classNames?: readonly string[];
}

const IDX_FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
} as const;

/**
 * Finds the four files of an MNIST-layout IDX folder (`train-images-idx3-ubyte`,
 * `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each optionally
 * `.gz`), or throws an {@link InvalidArgumentError} naming the folder and the missing file.
 *
 * @example
 * ```ts
 * idxFolderFiles('/usr/share/datasets/fashion-mnist').testLabels; // '.../t10k-labels-idx1-ubyte.gz'
 * ```
 */
export function idxFolderFiles(dir: string): Record<keyof typeof IDX_FILES, string> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new InvalidArgumentError('data', 'an existing folder of IDX files (idx:DIR)', dir);
  }
  const out = {} as Record<keyof typeof IDX_FILES, string>;
  for (const [key, base] of Object.entries(IDX_FILES) as [keyof typeof IDX_FILES, string][]) {
    const found = [base, `${base}.gz`].map((f) => path.join(dir, f)).find((f) => fs.existsSync(f));
    if (!found) throw new InvalidArgumentError(`IDX folder ${dir}`, `a file ${base} or ${base}.gz`, fs.readdirSync(dir).sort().join(', ') || '(empty folder)');
    out[key] = found;
  }
  return out;
}

/**
 * Reads an MNIST-layout IDX folder (see {@link idxFolderFiles}) as its official training and test
 * sets, pixels float32 in [0, 1]. Errors name the offending file.
 *
 * @example
 * ```ts
 * const {train, test} = loadIdxFolder('/usr/share/datasets/fashion-mnist'); // 60000 + 10000 images 28x28
 * ```
 */
export function loadIdxFolder(dir: string, options: IdxFolderOptions = {}): TrainTestData {
  const files = idxFolderFiles(dir);
  const name = options.name ?? path.basename(path.resolve(dir));
  const part = (images: string, labels: string, which: string): ImageDataset =>
    idxDataset(readIdxFile(images), readIdxFile(labels), {name: `${name}/${which}`, classNames: options.classNames, imagesSource: images, labelsSource: labels});
  const train = part(files.trainImages, files.trainLabels, 'train');
  const test = part(files.testImages, files.testLabels, 'test');
  if (train.height !== test.height || train.width !== test.width || train.channels !== test.channels) {
    throw new ShapeError(files.testImages, `images of ${train.height}x${train.width}x${train.channels} as in ${files.trainImages}`, `${test.height}x${test.width}x${test.channels}`);
  }
  const numClasses = Math.max(train.numClasses, test.numClasses);
  return {train: {...train, numClasses}, test: {...test, numClasses}};
}
