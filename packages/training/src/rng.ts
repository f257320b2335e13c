/**
 * Deterministic random numbers for training: a small PRNG (mulberry32), seed derivation and
 * seeded permutations. Randomness in tfjs ops comes only through explicit seeds (seeded
 * initializers, the routers' noise seeds); the training loop derives one seed per step from
 * `(runSeed, step)`, which is why a resumed run needs no hidden RNG state to continue exactly.
 */

/**
 * mulberry32: a 32-bit PRNG with a 32-bit state. Fast, deterministic across platforms, and good
 * enough for shuffling and seeding (not for cryptography).
 *
 * @example
 * ```ts
 * const rng = new Mulberry32(42);
 * rng.next(); // a float in [0, 1)
 * ```
 */
export class Mulberry32 {
  private state: number;

  /** @param seed any integer; only its low 32 bits matter. */
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** The next float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  nextInt(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** The current 32-bit state (to save and restore the generator). */
  getState(): number {
    return this.state;
  }

  /** Restores a state from {@link getState}. */
  setState(state: number): void {
    this.state = state >>> 0;
  }
}

/**
 * Derives an independent 32-bit seed from a base seed and a list of integers (e.g. the epoch or
 * the step), by hashing them together (a 32-bit FNV-1a over the words followed by a murmur3
 * finalizer), so that neighbouring inputs give unrelated seeds.
 *
 * @example
 * ```ts
 * const stepSeed = deriveSeed(runSeed, 'step', step);
 * ```
 */
export function deriveSeed(seed: number, ...parts: Array<number | string>): number {
  let h = 0x811c9dc5;
  const mix = (word: number): void => {
    h ^= word >>> 0;
    h = Math.imul(h, 0x01000193) >>> 0;
  };
  mix(seed >>> 0);
  for (const p of parts) {
    if (typeof p === 'number') {
      mix(p >>> 0);
      mix(Math.floor(p / 4294967296) >>> 0);
    } else {
      for (let i = 0; i < p.length; i++) mix(p.charCodeAt(i));
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A uniformly random permutation of `0..n-1` (Fisher-Yates driven by {@link Mulberry32}).
 *
 * @example
 * ```ts
 * seededPermutation(5, 1); // e.g. Int32Array [3, 0, 4, 1, 2], the same for every call with seed 1
 * ```
 */
export function seededPermutation(n: number, seed: number): Int32Array {
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const rng = new Mulberry32(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}
