/**
 * Shared benchmark utilities: backend selection (asserted), timing, and the backend's measured
 * matMul peak, so that every benchmark can print its throughput as a fraction of that peak.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as os from 'os';
import {matMulPeakGflops, medianTimeMs} from '@tfjs-moe/router';

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

/** Median wall time in ms of `fn` (see `medianTimeMs` in `@tfjs-moe/router`). */
export const timeMs = medianTimeMs;

/**
 * The backend's measured matMul peak in GFLOP/s (`matMulPeakGflops` of `@tfjs-moe/router`, the
 * one measurement shared with the browser benchmark): the denominator of "% of peak" columns.
 */
export async function measureMatMulPeak(sizes: number[] = QUICK ? [256, 512] : [256, 512, 1024]): Promise<number> {
  return matMulPeakGflops(sizes, QUICK ? 2 : 4);
}

/** One line that names the machine, for benchmark headers. */
export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus.length} x ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, tfjs ${tf.version.tfjs}`;
}
