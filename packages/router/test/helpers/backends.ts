/**
 * Test helpers shared by every package: run a suite on each supported backend (asserting that
 * the backend really is active), check for tensor leaks, and compare arrays with a tolerance.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

/** The backends that every backend-specific suite runs on (CI has no GPU and no tfjs-node). */
export const BACKENDS = ['cpu', 'wasm'] as const;
export type TestBackend = (typeof BACKENDS)[number];

/** Switches to `backend` and asserts that it is active (tf.setBackend fails quietly). */
export async function useBackend(backend: string): Promise<void> {
  const ok = await tf.setBackend(backend);
  await tf.ready();
  if (!ok || tf.getBackend() !== backend) {
    throw new Error(`Could not switch to backend ${backend}: tf.getBackend() is ${tf.getBackend()}`);
  }
  expect(tf.getBackend()).toBe(backend);
}

/** `describe` the same suite once per backend in {@link BACKENDS}; `beforeAll` switches backend. */
export function describeBackends(name: string, body: (backend: TestBackend) => void): void {
  describe.each(BACKENDS.map((b) => [b]))(`${name} [%s]`, (backend: TestBackend) => {
    beforeAll(async () => {
      await useBackend(backend);
    });
    beforeEach(() => {
      expect(tf.getBackend()).toBe(backend);
    });
    body(backend);
  });
}

/** Runs `fn` `reps` times and asserts that `tf.memory().numTensors` does not grow after the first. */
export async function expectNoLeaks(fn: () => unknown | Promise<unknown>, reps = 20): Promise<void> {
  await fn();
  const before = tf.memory().numTensors;
  for (let i = 0; i < reps; i++) await fn();
  expect(tf.memory().numTensors).toBe(before);
}

/** Element-wise |actual - expected| <= atol + rtol * |expected|, with a helpful failure message. */
export function expectAllClose(
  actual: ArrayLike<number> | number[][] | number[][][],
  expected: ArrayLike<number> | number[][] | number[][][],
  atol = 1e-5,
  rtol = 1e-5,
): void {
  const a = (actual as unknown[]).flat?.(Infinity) as number[] ?? Array.from(actual as ArrayLike<number>);
  const e = (expected as unknown[]).flat?.(Infinity) as number[] ?? Array.from(expected as ArrayLike<number>);
  const av = Array.isArray(actual) ? a : Array.from(actual as ArrayLike<number>);
  const ev = Array.isArray(expected) ? e : Array.from(expected as ArrayLike<number>);
  expect(av.length).toBe(ev.length);
  let worst = -1;
  let worstErr = 0;
  for (let i = 0; i < av.length; i++) {
    const err = Math.abs(av[i] - ev[i]) - (atol + rtol * Math.abs(ev[i]));
    if (!(err <= 0) && (worst < 0 || err > worstErr || Number.isNaN(err))) {
      worst = i;
      worstErr = err;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `arrays differ at index ${worst}: actual ${av[worst]}, expected ${ev[worst]} (atol ${atol}, rtol ${rtol})`,
    );
  }
}

/** `<float32>shape` of seeded standard-normal values times `scale` (the same tensor for the same seed). */
export function seeded(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.randomNormal(shape, 0, 1, 'float32', seed), scale));
}
