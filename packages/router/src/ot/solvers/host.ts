/**
 * The host path of the OT solvers: on backends whose tensors live in host memory (`cpu`, `wasm`,
 * `tensorflow`, where `dataSync` is a copy), a solver reads the problem once and runs its
 * iterations on `Float64Array`s, one group at a time, instead of as hundreds of tiny kernels
 * (one semi-dual evaluation is ~40 kernels on `[groups, n, m]` tensors of a few hundred entries).
 * It runs the same algorithm as the tensor path, step for step (same starts, same per-group
 * decisions, same best-iterate rule): results agree to float32 rounding (the host computes in
 * float64) and every group is solved from its own values alone.
 *
 * This file holds the switch ({@link setHostSolvers}, {@link useHostPath}) and the problem read
 * back ({@link readHostProblem}); what the host solvers share lives beside it: the k-sparse
 * simplex projection (host-projection.ts), the semi-dual evaluation and the dual's plan
 * (host-evaluate.ts), and the output built from host arrays (host-output.ts). webgl and webgpu
 * (and `hostReads: false`) keep the tensor path.
 */
import * as tf from '@tensorflow/tfjs';
import type {SparseOTProblem} from '../problem';

/** Backends whose synchronous reads are host copies (no device round trip). */
const HOST_BACKENDS: ReadonlySet<string> = new Set(['cpu', 'wasm', 'tensorflow']);

let hostSolversEnabled = true;

/**
 * Turns the host path of the OT solvers on (the default) or off (every solver then runs its
 * tensor path, as on webgl / webgpu). For tests and benchmarks that compare both paths.
 *
 * @returns the previous setting.
 *
 * @example
 * ```ts
 * const before = setHostSolvers(false); // the tensor path, on any backend
 * try { out = alternating().solve(problem); } finally { setHostSolvers(before); }
 * ```
 */
export function setHostSolvers(enabled: boolean): boolean {
  if (typeof enabled !== 'boolean') throw new TypeError(`setHostSolvers: enabled must be a boolean, got ${String(enabled)}`);
  const before = hostSolversEnabled;
  hostSolversEnabled = enabled;
  return before;
}

/**
 * Whether a solve of `problem` runs on the host: host solvers enabled, host reads allowed, and
 * a backend whose reads are host copies (`cpu`, `wasm`, `tensorflow`).
 *
 * @example
 * ```ts
 * if (useHostPath(problem)) return solveAlternatingHost(problem, init, config);
 * ```
 */
export function useHostPath(problem: SparseOTProblem): boolean {
  return hostPathAvailable(problem.hostReads);
}

/**
 * Whether host-path code may run now: host solvers enabled, `hostReads` allowed, and a backend
 * whose reads are host copies (`cpu`, `wasm`, `tensorflow`).
 *
 * @example
 * ```ts
 * if (hostPathAvailable(defaultHostReads())) return rebalanceHost(...);
 * ```
 */
export function hostPathAvailable(hostReads: boolean): boolean {
  return hostSolversEnabled && hostReads && HOST_BACKENDS.has(tf.getBackend());
}

/** A problem's internal arrays on the host (all `[groups, ...]`, internal layout). */
export interface HostProblem {
  groups: number;
  /** Internal rows (the bounded side) and columns. */
  mi: number;
  ni: number;
  k: number;
  gamma: number;
  /** `[groups, ni, mi]`: one internal column per row. */
  costT: Float32Array;
  /** `[groups, mi, ni]`: token-major. */
  costRows: Float32Array;
  /** `[groups, mi]` and `[groups, ni]`. */
  a: Float32Array;
  b: Float32Array;
  /**
   * How the backend's reductions (`Sum`) accumulate: in float32 step by step (wasm) or in float64
   * rounded once at the end (cpu). The host path sums the same way, so that near-ties (two starts
   * of equal value, a token at a column's k-th place) are decided as the tensor path decides them.
   */
  f32Sums: boolean;
}

/** `s + x`, rounded to float32 when the problem's reductions accumulate in float32. */
export function accumulate(hp: HostProblem, s: number, x: number): number {
  return hp.f32Sums ? Math.fround(s + x) : s + x;
}

/**
 * Reads the problem's tensors back (four copies).
 *
 * @example
 * ```ts
 * const hp = readHostProblem(problem);
 * ```
 */
export function readHostProblem(problem: SparseOTProblem): HostProblem {
  const {groups, mi, ni, k, gamma} = problem;
  return {
    groups, mi, ni, k, gamma,
    costT: problem.costT.dataSync() as Float32Array,
    costRows: problem.costRows.dataSync() as Float32Array,
    a: problem.a.dataSync() as Float32Array,
    b: problem.b.dataSync() as Float32Array,
    f32Sums: tf.getBackend() === 'wasm',
  };
}
