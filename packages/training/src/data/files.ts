/**
 * The user's own data: a folder of PNG images (one sub-folder per class), or an array file
 * (`.npy` images with `.npy` labels, or one `.json` file).
 */
import * as fs from 'fs';
import * as path from 'path';
import {PNG} from 'pngjs';
import {InvalidArgumentError, NonFiniteError, ShapeError} from '@tfjs-moe/router';
import {validateDataset, type ImageDataset} from './dataset';

/** Options of {@link loadImageFolder}. */
export interface ImageFolderOptions {
  /** Required image size `[height, width]`; default: the size of the first image read. */
  size?: [number, number];
  /** 1 (grayscale, by luminance) or 3 (RGB). Default 1. */
  channels?: 1 | 3;
}

/**
 * Reads a folder laid out as `dir/<class name>/*.png`. Classes are the sub-folder names in
 * sorted order (label = position); files are read in sorted order. Every image must have the
 * same size; pixels become float32 in [0, 1] (alpha is ignored).
 *
 * Errors: a missing folder, a folder without class sub-folders or PNG files, an undecodable
 * PNG, and an image of the wrong size each throw a typed error naming the path.
 *
 * @example
 * ```ts
 * const ds = loadImageFolder('my-digits', {size: [28, 28]}); // my-digits/0/a.png, my-digits/1/b.png, ...
 * ```
 */
export function loadImageFolder(dir: string, options: ImageFolderOptions = {}): ImageDataset {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new InvalidArgumentError('data', 'an existing folder of class sub-folders with PNG images', dir);
  }
  const channels = options.channels ?? 1;
  if (channels !== 1 && channels !== 3) throw new InvalidArgumentError('channels', '1 or 3', channels, 'loadImageFolder');
  const classNames = fs
    .readdirSync(dir, {withFileTypes: true})
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  if (classNames.length === 0) {
    throw new InvalidArgumentError('data', 'a folder with one sub-folder of PNG images per class', dir);
  }
  let size = options.size;
  const pixels: Float32Array[] = [];
  const labels: number[] = [];
  classNames.forEach((cls, label) => {
    const files = fs.readdirSync(path.join(dir, cls)).filter((f) => f.toLowerCase().endsWith('.png')).sort();
    for (const f of files) {
      const file = path.join(dir, cls, f);
      let png: PNG;
      try {
        png = PNG.sync.read(fs.readFileSync(file));
      } catch (e) {
        throw new InvalidArgumentError(`image ${file}`, 'a valid PNG file', (e as Error).message);
      }
      if (!size) size = [png.height, png.width];
      if (png.height !== size[0] || png.width !== size[1]) {
        throw new ShapeError(`image ${file}`, `${size[0]}x${size[1]} pixels (height x width)`, `${png.height}x${png.width}`);
      }
      const out = new Float32Array(png.height * png.width * channels);
      for (let p = 0; p < png.height * png.width; p++) {
        const r = png.data[4 * p];
        const g = png.data[4 * p + 1];
        const b = png.data[4 * p + 2];
        if (channels === 1) out[p] = (0.299 * r + 0.587 * g + 0.114 * b) / 255;
        else {
          out[3 * p] = r / 255;
          out[3 * p + 1] = g / 255;
          out[3 * p + 2] = b / 255;
        }
      }
      pixels.push(out);
      labels.push(label);
    }
  });
  if (pixels.length === 0 || !size) {
    throw new InvalidArgumentError('data', 'a folder whose class sub-folders hold PNG images', dir);
  }
  const per = size[0] * size[1] * channels;
  const images = new Float32Array(pixels.length * per);
  pixels.forEach((p, i) => images.set(p, i * per));
  return validateDataset({
    name: path.basename(path.resolve(dir)),
    images,
    labels: Int32Array.from(labels),
    height: size[0],
    width: size[1],
    channels,
    numClasses: classNames.length,
    classNames,
  });
}

/** A parsed `.npy` array: its shape and its values as float64. */
export interface NpyArray {
  /** The array's shape (C order). */
  shape: number[];
  /** The values, converted to float64. */
  data: Float64Array;
}

const NPY_TYPES: Record<string, [number, (v: DataView, o: number, le: boolean) => number]> = {
  f4: [4, (v, o, le) => v.getFloat32(o, le)],
  f8: [8, (v, o, le) => v.getFloat64(o, le)],
  u1: [1, (v, o) => v.getUint8(o)],
  i1: [1, (v, o) => v.getInt8(o)],
  u2: [2, (v, o, le) => v.getUint16(o, le)],
  i2: [2, (v, o, le) => v.getInt16(o, le)],
  i4: [4, (v, o, le) => v.getInt32(o, le)],
  u4: [4, (v, o, le) => v.getUint32(o, le)],
  i8: [8, (v, o, le) => Number(v.getBigInt64(o, le))],
  u8: [8, (v, o, le) => Number(v.getBigUint64(o, le))],
  b1: [1, (v, o) => v.getUint8(o)],
};

/**
 * Parses a NumPy `.npy` file (format versions 1-3; C order; bool, int, uint and float dtypes of
 * either byte order).
 *
 * @example
 * ```ts
 * const {shape, data} = parseNpy(fs.readFileSync('images.npy'));
 * ```
 */
export function parseNpy(buffer: Uint8Array, source = 'npy'): NpyArray {
  const magic = String.fromCharCode(...buffer.subarray(0, 6));
  if (magic !== '\x93NUMPY') throw new InvalidArgumentError(source, 'a .npy file (magic \\x93NUMPY)', magic);
  const major = buffer[6];
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = Buffer.from(buffer.subarray(headerStart, headerStart + headerLen)).toString('latin1');
  const descr = /'descr':\s*'([<>|=])(\w\d)'/.exec(header);
  const order = /'fortran_order':\s*(True|False)/.exec(header);
  const shapeMatch = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !order || !shapeMatch) throw new InvalidArgumentError(source, 'a .npy header with descr, fortran_order and shape', header.trim());
  if (order[1] === 'True') throw new InvalidArgumentError(`${source} fortran_order`, 'False (C order)', 'True');
  const type = NPY_TYPES[descr[2]];
  if (!type) throw new InvalidArgumentError(`${source} dtype`, `one of ${Object.keys(NPY_TYPES).join(', ')}`, descr[2]);
  const shape = shapeMatch[1].split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const [bytes, read] = type;
  const le = descr[1] !== '>';
  const start = headerStart + headerLen;
  if (buffer.byteLength - start < count * bytes) {
    throw new ShapeError(source, `${count * bytes} data bytes for shape [${shape.join(',')}]`, buffer.byteLength - start);
  }
  const data = new Float64Array(count);
  for (let i = 0; i < count; i++) data[i] = read(view, start + i * bytes, le);
  return {shape, data};
}

/** Options of {@link loadArrayFile}. */
export interface ArrayFileOptions {
  /** For `.npy` images: the labels file. Default: `labels.npy` beside the images file. */
  labels?: string;
  /** Divide pixel values by this (e.g. 255 for uint8 images). Default: 255 when the largest value exceeds 1, else 1. */
  scale?: number;
}

/**
 * Reads an array file:
 * - `.npy`: images `[n, h, w]` or `[n, h, w, c]`, labels from a second `.npy` `[n]`;
 * - `.json`: `{"images": [...], "labels": [...], "shape"?: [n, h, w, c]}` where images is nested
 *   `[n][h][w]` / `[n][h][w][c]`, or flat with `shape`.
 *
 * @example
 * ```ts
 * const ds = loadArrayFile('x.npy', {labels: 'y.npy'});
 * ```
 */
export function loadArrayFile(file: string, options: ArrayFileOptions = {}): ImageDataset {
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
    throw new InvalidArgumentError('data', 'an existing .npy or .json array file', file);
  }
  let shape: number[];
  let values: ArrayLike<number>;
  let labelValues: ArrayLike<number>;
  if (file.toLowerCase().endsWith('.npy')) {
    const x = parseNpy(fs.readFileSync(file), file);
    const labelsFile = options.labels ?? path.join(path.dirname(file), 'labels.npy');
    if (!fs.existsSync(labelsFile)) throw new InvalidArgumentError('labels', 'an existing .npy file of labels', labelsFile);
    const y = parseNpy(fs.readFileSync(labelsFile), labelsFile);
    if (y.shape.length !== 1) throw new ShapeError('labels', 'a 1-D array [examples]', y.shape, labelsFile);
    shape = x.shape;
    values = x.data;
    labelValues = y.data;
  } else if (file.toLowerCase().endsWith('.json')) {
    let json: {images?: unknown; labels?: unknown; shape?: number[]};
    try {
      json = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof json;
    } catch (e) {
      throw new InvalidArgumentError(`data ${file}`, 'valid JSON', `unreadable JSON (${(e as Error).message})`);
    }
    if (json === null || typeof json !== 'object') throw new InvalidArgumentError(`data ${file}`, 'a JSON object with "images" and "labels" arrays', json);
    if (!Array.isArray(json.images) || !Array.isArray(json.labels)) {
      throw new InvalidArgumentError('data', 'a JSON object with "images" and "labels" arrays', Object.keys(json ?? {}), file);
    }
    if (json.shape) {
      shape = json.shape;
      values = json.images as number[];
    } else {
      shape = [];
      let probe: unknown = json.images;
      while (Array.isArray(probe)) {
        shape.push(probe.length);
        probe = probe[0];
      }
      values = (json.images as unknown[]).flat(Infinity) as number[];
    }
    labelValues = json.labels as number[];
  } else {
    throw new InvalidArgumentError('data', 'a .npy or .json array file, or a folder of images', file);
  }
  if (shape.length === 3) shape = [...shape, 1];
  if (shape.length !== 4) throw new ShapeError('images', 'of shape [n, h, w] or [n, h, w, c]', shape, file);
  const [n, h, w, c] = shape;
  if (values.length !== n * h * w * c) throw new ShapeError('images', `${n * h * w * c} values for shape [${shape.join(',')}]`, values.length, file);
  if (labelValues.length !== n) throw new ShapeError('labels', `${n} labels (one per image)`, labelValues.length, file);
  // Every pixel a finite number, every label a non-negative integer: NaN, Infinity, 1.5 or "x"
  // would otherwise be trained on, truncated or coerced without a word.
  let max = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new NonFiniteError(`images value ${i} (flat index, example ${Math.floor(i / (h * w * c))})`, 'a finite number', v, `data ${file}`);
    max = Math.max(max, v);
  }
  for (let i = 0; i < labelValues.length; i++) {
    const l = labelValues[i];
    if (typeof l !== 'number' || !Number.isInteger(l) || l < 0) throw new InvalidArgumentError(`labels[${i}]`, 'an integer class index >= 0', l, `data ${file}`);
  }
  const scale = options.scale ?? (max > 1 ? 255 : 1);
  const images = Float32Array.from(values, (v) => v / scale);
  const labels = Int32Array.from(labelValues);
  let numClasses = 0;
  for (let i = 0; i < labels.length; i++) numClasses = Math.max(numClasses, labels[i] + 1);
  return validateDataset({name: path.basename(file), images, labels, height: h, width: w, channels: c, numClasses});
}
