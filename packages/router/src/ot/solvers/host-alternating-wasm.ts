/**
 * The host alternating solver's group loop in WebAssembly (`assembly/alternating.ts`, compiled
 * into alternating-module.ts): one call solves every group of a problem with the same starts,
 * steps, float32 rounding and summation order as host-alternating.ts, so its results are the
 * JavaScript's bit for bit; a group it leaves (a value that is not finite) the JavaScript solves.
 * At routing sizes (17 tokens x 4 experts, 128 groups) it is about 2-3x faster than the
 * JavaScript loop, which spends its time in `Math.fround` conversions and bounds checks.
 */
import {decodeBase64} from '../../core/base64';
import {InvalidArgumentError} from '../../core/errors';
import {ALTERNATING_WASM_BASE64} from './alternating-module';

/** The module's exports (see assembly/alternating.ts). */
interface AlternatingExports {
  memory: WebAssembly.Memory;
  prepare(
    groups: number, mi: number, ni: number, k: number, gamma: number, f32Sums: number, maxIterations: number, checkEvery: number,
    tolerance: number, polishRate: number, b1: number, b1c: number, b2: number, b2c: number, eps: number,
  ): number;
  offset(which: number): number;
  solveGroups(fromBeta0: number): number;
}

let wasmSolverEnabled = true;
/** The instance, null where WebAssembly is missing or the module failed to compile. */
let instance: AlternatingExports | null | undefined;

/**
 * Turns the WebAssembly group loop of the host alternating solver on (the default) or off (the
 * JavaScript loop runs; the results are the same bit for bit). For tests and benchmarks that
 * compare both.
 *
 * @returns the previous setting.
 * @throws {InvalidArgumentError} when `enabled` is not a boolean.
 *
 * @example
 * ```ts
 * const before = setWasmSolver(false);
 * try { out = alternating().solve(problem); } finally { setWasmSolver(before); }
 * ```
 */
export function setWasmSolver(enabled: boolean): boolean {
  if (typeof enabled !== 'boolean') throw new InvalidArgumentError('enabled', 'a boolean', enabled, 'setWasmSolver');
  const before = wasmSolverEnabled;
  wasmSolverEnabled = enabled;
  return before;
}

/** Whether solves use the WebAssembly group loop now (switched on, and the module instantiated). */
export function wasmSolverActive(): boolean {
  return alternatingModule() !== null;
}

/** The instance when switched on and available, else null. */
export function alternatingModule(): AlternatingExports | null {
  if (!wasmSolverEnabled) return null;
  if (instance === undefined) {
    try {
      const module = new WebAssembly.Module(decodeBase64(ALTERNATING_WASM_BASE64) as BufferSource);
      // The polish schedule's cosine and powers are JavaScript's own, so that they round alike.
      const env = {cos: Math.cos, pow: (x: number, y: number) => x ** y};
      instance = new WebAssembly.Instance(module, {env}).exports as unknown as AlternatingExports;
    } catch {
      instance = null;
    }
  }
  return instance;
}

/** Buffers of one solve in the module's memory (views made after it last grew). */
export interface WasmSolveBuffers {
  costT: Float32Array;
  costRows: Float32Array;
  a: Float32Array;
  b: Float32Array;
  /** The starting row potentials (`[groups, mi]`); with `run(true)` written by the module: the rows' best response to `beta0`. */
  alpha0: Float32Array;
  /** Warm column potentials (`[groups, ni]`), read by `run(true)`. */
  beta0: Float32Array;
  /** Per group: 0 two starts (alpha0, then the cheapest column), 1 one start from alpha0, 2 one from the cheapest column. */
  mode: Int32Array;
  alpha: Float32Array;
  planT: Float32Array;
  tau: Float32Array;
  value: Float64Array;
  /** Per group: bit 0 the JavaScript solves it, bit 1 the chosen start settled. */
  status: Int32Array;
}

/** The settings {@link prepareWasmSolve} passes on. */
export interface WasmSolveSettings {
  groups: number;
  mi: number;
  ni: number;
  k: number;
  gamma: number;
  f32Sums: boolean;
  maxIterations: number;
  checkEvery: number;
  tolerance: number;
  polishRate: number;
  adam: {b1: number; b1c: number; b2: number; b2c: number; eps: number};
}

/**
 * Lays out a solve in the module's memory and returns views of its buffers and `run` (which
 * solves every group and returns how many it left to the JavaScript: status bit 0), or null
 * when the module is off or missing or its memory cannot grow.
 */
export function prepareWasmSolve(s: WasmSolveSettings): {run: (fromBeta0?: boolean) => number; buffers: WasmSolveBuffers} | null {
  const m = alternatingModule();
  if (m === null) return null;
  const {groups, mi, ni, adam} = s;
  const ok = m.prepare(
    groups, mi, ni, s.k, s.gamma, s.f32Sums ? 1 : 0, s.maxIterations, s.checkEvery, s.tolerance, s.polishRate,
    adam.b1, adam.b1c, adam.b2, adam.b2c, adam.eps);
  if (!ok) return null;
  const buf = m.memory.buffer;
  const f32 = (w: number, n: number) => new Float32Array(buf, m.offset(w), n);
  const buffers: WasmSolveBuffers = {
    costT: f32(0, groups * ni * mi),
    costRows: f32(1, groups * mi * ni),
    a: f32(2, groups * mi),
    b: f32(3, groups * ni),
    alpha0: f32(4, groups * mi),
    beta0: f32(11, groups * ni),
    mode: new Int32Array(buf, m.offset(5), groups),
    alpha: f32(6, groups * mi),
    planT: f32(7, groups * ni * mi),
    tau: f32(8, groups * ni),
    value: new Float64Array(buf, m.offset(9), groups),
    status: new Int32Array(buf, m.offset(10), groups),
  };
  return {run: (fromBeta0 = false) => m.solveGroups(fromBeta0 ? 1 : 0), buffers};
}
