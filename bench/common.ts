/**
 * Shared benchmark utilities: backend selection (asserted), timing, and the backend's measured
 * matMul peak, so that every benchmark can print its throughput as a fraction of that peak.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as os from 'os';

/** Switches to `backend` and throws unless it is really active. */
export async function selectBackend(backend: string): Promise<void> {
  const ok = await tf.setBackend(backend);
  await tf.ready();
  if (!ok || tf.getBackend() !== backend) {
    throw new Error(`backend ${backend} is not active (tf.getBackend() = ${tf.getBackend()})`);
  }
}

/** Backends named on the command line as `--backends=cpu,wasm` (default: wasm and cpu). */
export function backendsFromArgs(defaults: string[] = ['wasm', 'cpu']): string[] {
  const arg = process.argv.find((a) => a.startsWith('--backends='));
  return arg ? arg.slice('--backends='.length).split(',') : defaults;
}

/** True when `--quick` was passed: smaller sizes and fewer repetitions. */
export const QUICK = process.argv.includes('--quick');

/** Forces completion of pending work on `t` (reads one value back). */
export async function sync(t: tf.Tensor | tf.Tensor[]): Promise<void> {
  const ts = Array.isArray(t) ? t : [t];
  for (const x of ts) await x.data();
}

/**
 * Median wall time in milliseconds of `fn` over `reps` runs after `warmup` runs. `fn` returns
 * the tensors it made; they are read back (so asynchronous backends finish) and disposed.
 */
export async function timeMs(fn: () => tf.Tensor | tf.Tensor[] | void, reps = 5, warmup = 1): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < warmup + reps; i++) {
    const t0 = performance.now();
    const out = fn();
    if (out) {
      await sync(out);
      tf.dispose(out);
    }
    const dt = performance.now() - t0;
    if (i >= warmup) times.push(dt);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/**
 * The backend's measured matMul peak in GFLOP/s: the best of square float32 matMuls of a few
 * sizes (2 n^3 FLOPs each). Used as the denominator of "fraction of peak" columns.
 */
export async function measureMatMulPeak(sizes: number[] = QUICK ? [256, 512] : [256, 512, 1024]): Promise<number> {
  let best = 0;
  for (const n of sizes) {
    const a = tf.randomNormal([n, n]);
    const b = tf.randomNormal([n, n]);
    const ms = await timeMs(() => tf.matMul(a, b), QUICK ? 2 : 4, 1);
    best = Math.max(best, (2 * n ** 3) / (ms * 1e6));
    tf.dispose([a, b]);
  }
  return best;
}

/** One line that names the machine, for benchmark headers. */
export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus.length} x ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, tfjs ${tf.version.tfjs}`;
}
