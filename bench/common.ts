/**
 * Shared benchmark utilities: backend selection (asserted), timing, and the backend's measured
 * matMul peak, so that every benchmark can print its throughput as a fraction of that peak.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as os from 'os';
import {matMulPeakGflops, medianTimeMs, setWasmGemm, timedRuns, wasmGemmActive} from '@tfjs-moe/router';
import {parseArgs, type ParseArgsConfig} from 'util';

/** Switches to `backend` and throws unless it is really active. */
export async function selectBackend(backend: string): Promise<void> {
  const ok = await tf.setBackend(backend);
  await tf.ready();
  if (!ok || tf.getBackend() !== backend) {
    throw new Error(`backend ${backend} is not active (tf.getBackend() = ${tf.getBackend()})`);
  }
}

/** Flags every benchmark takes: `--quick` and `--backends=cpu,wasm`. */
export const COMMON_FLAGS = {quick: {type: 'boolean'}, backends: {type: 'string'}} as const;

/**
 * Parses the command line (util.parseArgs) with the benchmark's own flags and
 * {@link COMMON_FLAGS}; an unknown flag is an error naming it.
 */
export function benchArgs<T extends NonNullable<ParseArgsConfig['options']>>(options: T) {
  return parseArgs({options: {...COMMON_FLAGS, ...options}, strict: true, allowPositionals: false}).values;
}

// The common flags are read here, before a benchmark declares its own (strict parsing is its job).
const common = parseArgs({options: COMMON_FLAGS, strict: false, allowPositionals: true}).values;

/** Backends named on the command line as `--backends=cpu,wasm` (default: wasm and cpu). */
export function backendsFromArgs(defaults: string[] = ['wasm', 'cpu']): string[] {
  return typeof common.backends === 'string' ? common.backends.split(',') : defaults;
}

/** True when `--quick` was passed: smaller sizes and fewer repetitions. */
export const QUICK = common.quick === true;

/** Forces completion of pending work on `t` (reads one value back). */
export async function sync(t: tf.Tensor | tf.Tensor[]): Promise<void> {
  const ts = Array.isArray(t) ? t : [t];
  for (const x of ts) await x.data();
}

/** Median wall time in ms of `fn` (see `medianTimeMs` in `@tfjs-moe/router`). */
export const timeMs = medianTimeMs;

/** CPU time of this process in ms (process.cpuUsage: user + system), a clock for `timedRuns`. */
const cpuClockMs = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

/**
 * Median wall ms and mean CPU ms of this process (process.cpuUsage, user + system) per run of
 * `fn`, over `reps` runs after `warmup` (`timedRuns` of `@tfjs-moe/router`); returned tensors are
 * read back and disposed. On a shared machine the CPU time moves far less with other processes'
 * load than the wall time.
 */
export async function timeWallCpuMs(fn: () => tf.Tensor | tf.Tensor[] | void, reps = 5, warmup = 1): Promise<{wallMs: number; cpuMs: number}> {
  const [wall, cpu] = await timedRuns(fn, reps, warmup, [() => performance.now(), cpuClockMs]);
  wall.sort((a, b) => a - b);
  return {wallMs: wall[Math.floor(wall.length / 2)], cpuMs: cpu.reduce((s, x) => s + x, 0) / reps};
}

/**
 * The backend's measured matMul peak in GFLOP/s (`matMulPeakGflops` of `@tfjs-moe/router`, the
 * one measurement shared with the browser benchmark): the denominator of "% of peak" columns. On wasm
 * with the fast kernels, the faster of the own SIMD kernels' and XNNPACK's (since 1 Dec 11:40).
 */
export async function measureMatMulPeak(sizes: number[] = QUICK ? [128, 256, 512] : [128, 256, 512, 1024]): Promise<number> {
  const peak = await matMulPeakGflops(sizes, QUICK ? 3 : 5);
  if (!wasmGemmActive()) return peak;
  // With the fast kernels on wasm the peak is the faster of the own SIMD kernels and XNNPACK.
  const previous = setWasmGemm(false);
  try {
    return Math.max(peak, await matMulPeakGflops(sizes, QUICK ? 3 : 5));
  } finally {
    setWasmGemm(previous);
  }
}

/** One line that names the machine, for benchmark headers. */
export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus.length} x ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, tfjs ${tf.version.tfjs}`;
}
