/**
 * Timing and the matMul peak, shared by the Node benchmarks (`bench/`), the training comparison
 * and the browser benchmark, so that every "% of matMul peak" in the project has one denominator.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Runs `fn` `warmup + reps` times and returns, for each clock, the elapsed readings of the `reps`
 * timed runs. The tensors `fn` returns are read back (so asynchronous backends finish) and disposed
 * inside each timed run. A clock is any function that returns a reading in milliseconds: wall time
 * (`() => performance.now()`, the default) or, in Node, the process's CPU time; this module reads
 * no clock of its own beyond `performance.now()`, so it stays browser-safe.
 *
 * @param fn the work to time; returns the tensors it made (or nothing).
 * @param reps timed runs. Default 5.
 * @param warmup untimed runs first. Default 1.
 * @param clocks the clocks to read before and after each run. Default `[() => performance.now()]`.
 * @returns `[clock][run]`: milliseconds per timed run, in run order.
 *
 * @example
 * ```ts
 * const cpuMs = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1000; };
 * const [wall, cpu] = await timedRuns(() => tf.matMul(a, b), 5, 1, [() => performance.now(), cpuMs]);
 * ```
 */
export async function timedRuns(
  fn: () => tf.Tensor | tf.Tensor[] | void,
  reps = 5,
  warmup = 1,
  clocks: ReadonlyArray<() => number> = [() => performance.now()],
): Promise<number[][]> {
  const elapsed = clocks.map((): number[] => []);
  for (let i = 0; i < warmup + reps; i++) {
    const start = clocks.map((clock) => clock());
    const out = fn();
    if (out) {
      const list = Array.isArray(out) ? out : [out];
      for (const x of list) await x.data();
      tf.dispose(list);
    }
    if (i >= warmup) clocks.forEach((clock, c) => elapsed[c].push(clock() - start[c]));
  }
  return elapsed;
}

/**
 * Median wall time in milliseconds of `fn` over `reps` runs after `warmup` runs
 * ({@link timedRuns} with the wall clock). The tensors `fn` returns are read back (so asynchronous
 * backends finish) and disposed.
 *
 * @param fn the work to time; returns the tensors it made (or nothing).
 * @param reps timed runs. Default 5.
 * @param warmup untimed runs first. Default 1.
 * @returns milliseconds (median; the upper one of an even count).
 *
 * @example
 * ```ts
 * const ms = await medianTimeMs(() => tf.matMul(a, b), 5, 1);
 * ```
 */
export async function medianTimeMs(fn: () => tf.Tensor | tf.Tensor[] | void, reps = 5, warmup = 1): Promise<number> {
  const [times] = await timedRuns(fn, reps, warmup);
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/**
 * The active backend's matMul peak in GFLOP/s: the best over `sizes` of square float32 products
 * `[n, n] x [n, n]` (2 n^3 FLOPs each), each timed `reps` times after one warm-up. The
 * denominator of every "% of matMul peak" figure.
 *
 * A peak is what the backend can do, so the fastest run counts (not the median): on a shared
 * machine another process takes the core during some runs, and a median of a few ~10 ms runs
 * then under-states the peak several-fold (seen at load 8-13 on 2 cores: a median of 4.4 against a
 * best of 35 GFLOP/s in one process), which over-states every "% of peak" (a dense ViT at "128%").
 * The sizes start at 128 because XNNPACK (wasm) and the cpu backend's blocked loop are as fast or
 * faster there than at 512.
 *
 * @param sizes matrix sizes n. Default [128, 256, 512].
 * @param reps timed runs per size. Default 5.
 * @returns GFLOP/s.
 *
 * @example
 * ```ts
 * await tf.setBackend('wasm');
 * const peak = await matMulPeakGflops(); // e.g. 30.2
 * ```
 */
export async function matMulPeakGflops(sizes: number[] = [128, 256, 512], reps = 5): Promise<number> {
  let best = 0;
  for (const n of sizes) {
    const a = tf.randomNormal([n, n]);
    const b = tf.randomNormal([n, n]);
    const product = tf.matMul(a, b); // warm-up (XNNPACK operator set-up)
    await product.data();
    product.dispose();
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      const c = tf.matMul(a, b);
      await c.data();
      const ms = performance.now() - t0;
      c.dispose();
      best = Math.max(best, (2 * n ** 3) / (ms * 1e6));
    }
    tf.dispose([a, b]);
  }
  return best;
}
