/**
 * A procedurally generated, class-dependent image data set for fast tests: each class is a fixed
 * pattern of a few Gaussian blobs; examples are that pattern shifted by a pixel or two, with
 * per-pixel noise. Small models learn it in a few dozen steps.
 */
import {InvalidArgumentError} from '@tfjs-moe/router';
import {Mulberry32, deriveSeed} from '../rng';
import type {ImageDataset} from './dataset';

/** Options of {@link syntheticDataset}. */
export interface SyntheticOptions {
  /** Number of examples (classes take turns: example i has label i mod numClasses). Default 500. */
  examples?: number;
  /** Number of classes. Default 10. */
  numClasses?: number;
  /** Image height. Default 28. */
  height?: number;
  /** Image width. Default 28. */
  width?: number;
  /** Channels (the pattern is repeated with a per-channel gain). Default 1. */
  channels?: number;
  /** Standard deviation of the per-pixel noise. Default 0.1. */
  noise?: number;
  /** Largest random shift in pixels, in each direction. Default 2. */
  maxShift?: number;
  /** Seed: the same options and seed give the same pixels. Default 0. */
  seed?: number;
}

function positiveInt(arg: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(arg, 'a positive integer', v, 'syntheticDataset');
  return v;
}

/**
 * Generates a synthetic labelled image set, `<float32>[examples, height, width, channels]` in
 * [0, 1] with labels `i mod numClasses`.
 *
 * @example
 * ```ts
 * const ds = syntheticDataset({examples: 200, numClasses: 4, height: 8, width: 8, seed: 1});
 * ```
 */
export function syntheticDataset(options: SyntheticOptions = {}): ImageDataset {
  const n = positiveInt('examples', options.examples ?? 500);
  const numClasses = positiveInt('numClasses', options.numClasses ?? 10);
  if (numClasses < 2) throw new InvalidArgumentError('numClasses', 'at least 2 (a classifier needs two classes)', numClasses, 'syntheticDataset');
  const h = positiveInt('height', options.height ?? 28);
  const w = positiveInt('width', options.width ?? 28);
  const ch = positiveInt('channels', options.channels ?? 1);
  const noise = options.noise ?? 0.1;
  const maxShift = options.maxShift ?? 2;
  const seed = options.seed ?? 0;
  // Class templates: three blobs at class-specific positions and widths.
  const templates: Float32Array[] = [];
  for (let c = 0; c < numClasses; c++) {
    const rng = new Mulberry32(deriveSeed(seed, 'template', c));
    const t = new Float32Array(h * w);
    for (let blob = 0; blob < 3; blob++) {
      const cy = (0.2 + 0.6 * rng.next()) * h;
      const cx = (0.2 + 0.6 * rng.next()) * w;
      const s = (0.08 + 0.1 * rng.next()) * Math.min(h, w);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          t[y * w + x] += Math.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s));
        }
      }
    }
    templates.push(t);
  }
  const rng = new Mulberry32(deriveSeed(seed, 'examples'));
  const gauss = (): number => {
    const u = Math.max(rng.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
  };
  const per = h * w * ch;
  const images = new Float32Array(n * per);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % numClasses;
    labels[i] = c;
    const dy = rng.nextInt(2 * maxShift + 1) - maxShift;
    const dx = rng.nextInt(2 * maxShift + 1) - maxShift;
    const t = templates[c];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const sy = y - dy;
        const sx = x - dx;
        const base = sy >= 0 && sy < h && sx >= 0 && sx < w ? t[sy * w + sx] : 0;
        for (let k = 0; k < ch; k++) {
          const v = base * (1 - 0.2 * k) + noise * gauss();
          images[i * per + (y * w + x) * ch + k] = Math.min(1, Math.max(0, v));
        }
      }
    }
  }
  return {name: 'synthetic', images, labels, height: h, width: w, channels: ch, numClasses};
}
