/**
 * Backend selection for Node: tfjs-node (GPU build first) when it is installed, then wasm, then
 * cpu, or exactly the backend the caller names. WebGPU in Node is opt-in through the `webgpu`
 * npm package (Dawn's `dawn.node`); on a machine without a GPU it runs on Dawn's OpenGL backend
 * over Mesa's software rasterizer with `EGL_PLATFORM=surfaceless` and a `compatibility`-level
 * adapter.
 *
 * `tf.setBackend()` returns `false` on failure and quietly keeps the previous backend, so every
 * path here checks `tf.getBackend()` afterwards and throws {@link BackendUnavailableError} when a
 * named backend is not really active.
 */
import * as tf from '@tensorflow/tfjs';
import * as tfWasm from '@tensorflow/tfjs-backend-wasm';
import {activateBackend, fastKernelsRegistered, InvalidArgumentError, TfjsMoeError, useProjectKernels} from '@tfjs-moe/router';
import {errorText, isModuleNotFound, setupWebGPU, type WebGPUAdapterDescription, type WebGPUNodeOptions} from './backend-webgpu';

export {releaseWebGPU} from './backend-webgpu';
export type {DawnBackend, WebGPUAdapterDescription, WebGPUNodeOptions} from './backend-webgpu';

/** The backends {@link setupBackend} accepts. `'tensorflow'` is tfjs-node's backend. */
export const BACKEND_NAMES = ['auto', 'tensorflow', 'wasm', 'cpu', 'webgpu', 'webgl'] as const;

/** A backend request: a concrete backend, or `'auto'` (tfjs-node, then wasm, then cpu). */
export type BackendRequest = (typeof BACKEND_NAMES)[number];

/** The tfjs-node packages tried for `'tensorflow'`, in order: the CUDA build first. */
export const TFJS_NODE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

/** Options of {@link setupBackend}. */
export interface SetupBackendOptions {
  /** WebGPU-in-Node settings, used when the request is `'webgpu'`. */
  webgpu?: WebGPUNodeOptions;
  /**
   * Number of wasm threads (`setThreadsCount`); only takes effect if the wasm backend has not
   * been initialized yet in this process. Default: the wasm backend's own choice.
   */
  wasmThreads?: number;
  /**
   * Installs the fast wasm kernels (`registerFastKernels` from `@tfjs-moe/router`: transposed and
   * batched matMuls through XNNPACK, row-copy gathers) when the wasm backend is chosen. Default
   * true; false restores tfjs-backend-wasm's stock kernels.
   */
  fastKernels?: boolean;
  /**
   * Loads an optional package by name (default: Node's `require`). Tests inject a loader to
   * simulate installed or missing packages.
   */
  load?: (id: string) => unknown;
  /** Receives one line per fallback step of `'auto'` (default: silent). */
  log?: (message: string) => void;
}

/** One backend that {@link setupBackend} tried, and why it was not used (if it was not). */
export interface BackendAttempt {
  /** The tfjs backend name that was tried. */
  backend: string;
  /** The npm package that provides it, if one had to be loaded. */
  package?: string;
  /** Why it could not be used; absent for the attempt that succeeded. */
  error?: string;
}

/** What {@link setupBackend} set up. */
export interface BackendSetup {
  /** The active backend, read back from `tf.getBackend()`. */
  backend: string;
  /** What the caller asked for. */
  requested: BackendRequest;
  /** The npm package that provides the backend (`'@tensorflow/tfjs'` for the built-in cpu). */
  package: string;
  /** Every backend tried, in order, with the reason each failed one was skipped. */
  attempts: BackendAttempt[];
  /** For `'webgpu'`: the adapter that is in use. */
  adapter?: WebGPUAdapterDescription;
  /** Whether the fast wasm kernels are installed (see {@link SetupBackendOptions.fastKernels}). */
  fastKernels: boolean;
}

/**
 * A backend that was asked for by name could not be started. `backend` names it, `reason` says
 * why, `attempts` lists everything that was tried.
 *
 * @example
 * ```ts
 * try {
 *   await setupBackend('tensorflow');
 * } catch (e) {
 *   if (e instanceof BackendUnavailableError) console.error(e.message);
 *   // Backend 'tensorflow' is not available: none of @tensorflow/tfjs-node-gpu, @tensorflow/tfjs-node is installed ...
 * }
 * ```
 */
export class BackendUnavailableError extends TfjsMoeError {
  readonly backend: string;
  readonly reason: string;
  readonly attempts: BackendAttempt[];
  constructor(backend: string, reason: string, attempts: BackendAttempt[] = []) {
    super(`Backend '${backend}' is not available: ${reason}`);
    this.backend = backend;
    this.reason = reason;
    this.attempts = attempts;
  }
}

function defaultLoad(id: string): unknown {
  return require(id);
}

async function setupTensorflow(load: (id: string) => unknown, attempts: BackendAttempt[]): Promise<string | undefined> {
  const missing: string[] = [];
  for (const pkg of TFJS_NODE_PACKAGES) {
    try {
      load(pkg);
    } catch (e) {
      if (isModuleNotFound(e, pkg)) {
        missing.push(pkg);
        attempts.push({backend: 'tensorflow', package: pkg, error: `${pkg} is not installed`});
      } else {
        attempts.push({backend: 'tensorflow', package: pkg, error: `${pkg} failed to load: ${errorText(e)}`});
      }
      continue;
    }
    const err = await activateBackend('tensorflow');
    if (err === undefined) {
      attempts.push({backend: 'tensorflow', package: pkg});
      return pkg;
    }
    attempts.push({
      backend: 'tensorflow',
      package: pkg,
      error: `${err} (does ${pkg} use a different copy of @tensorflow/tfjs than ${tf.version.tfjs}?)`,
    });
  }
  return undefined;
}

/**
 * Makes `name` the active tfjs backend in Node and verifies it with `tf.getBackend()`.
 *
 * - `'auto'`: tfjs-node (`@tensorflow/tfjs-node-gpu`, then `@tensorflow/tfjs-node`; optional
 *   dependencies loaded with a guarded `require`), then `wasm`, then `cpu`. Each skipped step is
 *   recorded in `attempts` (and passed to `options.log`).
 * - A named backend (`'tensorflow'`, `'wasm'`, `'cpu'`, `'webgpu'`, `'webgl'`) is either active
 *   afterwards or {@link BackendUnavailableError} is thrown: it never silently stays on cpu.
 * - `'webgpu'` loads Dawn from the `webgpu` package and `@tensorflow/tfjs-backend-webgpu`, and
 *   keeps the device alive until {@link releaseWebGPU} (call it before exiting, or Node waits).
 * - `'webgl'` needs a browser; in Node it throws.
 *
 * @param name The backend to use. Default `'auto'`.
 * @param options See {@link SetupBackendOptions}.
 * @returns The active backend, the package that provides it and every attempt made.
 * @throws InvalidArgumentError if `name` is not one of {@link BACKEND_NAMES}.
 * @throws BackendUnavailableError if a named backend cannot be made active.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import {setupBackend} from '@tfjs-moe/training';
 *
 * const {backend, attempts} = await setupBackend('auto');
 * console.log(backend);  // 'tensorflow' with tfjs-node installed, else 'wasm'
 * const y = tf.matMul(tf.ones([2, 3]), tf.ones([3, 4]));  // <float32>[2, 4] on that backend
 *
 * // WebGPU through Dawn, also on a machine without a GPU (OpenGL on Mesa llvmpipe):
 * const gpu = await setupBackend('webgpu');
 * console.log(gpu.adapter);  // {vendor: 'mesa', featureLevel: 'compatibility', dawnBackend: 'opengl', ...}
 * releaseWebGPU();
 * ```
 */
export async function setupBackend(name: BackendRequest = 'auto', options: SetupBackendOptions = {}): Promise<BackendSetup> {
  if (typeof name !== 'string' || !(BACKEND_NAMES as readonly string[]).includes(name)) {
    throw new InvalidArgumentError(
      'backend', `one of ${BACKEND_NAMES.map((b) => `'${b}'`).join(', ')}`, name, 'setupBackend');
  }
  if (options.wasmThreads !== undefined) {
    if (!Number.isInteger(options.wasmThreads) || options.wasmThreads < 1) {
      throw new InvalidArgumentError('wasmThreads', 'a positive integer', options.wasmThreads, 'setupBackend');
    }
    tfWasm.setThreadsCount(options.wasmThreads);
  }
  const load = options.load ?? defaultLoad;
  const log = options.log ?? (() => undefined);
  const attempts: BackendAttempt[] = [];
  const done = (pkg: string, extra: Partial<BackendSetup> = {}): BackendSetup => {
    useProjectKernels(options.fastKernels !== false);
    return {backend: tf.getBackend(), requested: name, package: pkg, attempts, fastKernels: fastKernelsRegistered(), ...extra};
  };

  switch (name) {
    case 'auto': {
      const pkg = await setupTensorflow(load, attempts);
      if (pkg) return done(pkg);
      log(`tfjs-node is not available (${attempts.map((a) => a.error).join('; ')}); trying wasm`);
      const wasmErr = await activateBackend('wasm');
      if (wasmErr === undefined) {
        attempts.push({backend: 'wasm', package: '@tensorflow/tfjs-backend-wasm'});
        return done('@tensorflow/tfjs-backend-wasm');
      }
      attempts.push({backend: 'wasm', package: '@tensorflow/tfjs-backend-wasm', error: wasmErr});
      log(`wasm is not available (${wasmErr}); using cpu`);
      const cpuErr = await activateBackend('cpu');
      if (cpuErr === undefined) {
        attempts.push({backend: 'cpu'});
        return done('@tensorflow/tfjs');
      }
      attempts.push({backend: 'cpu', error: cpuErr});
      throw new BackendUnavailableError('auto', `no backend could be started (${attempts.map((a) => `${a.backend}: ${a.error}`).join('; ')})`, attempts);
    }
    case 'tensorflow': {
      const pkg = await setupTensorflow(load, attempts);
      if (pkg) return done(pkg);
      const missing = attempts.filter((a) => a.error?.endsWith('is not installed')).length === TFJS_NODE_PACKAGES.length;
      throw new BackendUnavailableError('tensorflow', missing
        ? `none of ${TFJS_NODE_PACKAGES.join(', ')} is installed (npm install @tensorflow/tfjs-node@4.22.0)`
        : attempts.map((a) => a.error).join('; '), attempts);
    }
    case 'wasm':
    case 'cpu': {
      const pkg = name === 'wasm' ? '@tensorflow/tfjs-backend-wasm' : '@tensorflow/tfjs';
      const err = await activateBackend(name);
      attempts.push({backend: name, package: pkg, error: err});
      if (err !== undefined) throw new BackendUnavailableError(name, err, attempts);
      return done(pkg);
    }
    case 'webgpu': {
      let adapter: WebGPUAdapterDescription;
      try {
        adapter = await setupWebGPU(options.webgpu ?? {}, load);
      } catch (e) {
        attempts.push({backend: 'webgpu', package: 'webgpu', error: errorText(e)});
        throw new BackendUnavailableError('webgpu', errorText(e), attempts);
      }
      const err = await activateBackend('webgpu');
      attempts.push({backend: 'webgpu', package: '@tensorflow/tfjs-backend-webgpu', error: err});
      if (err !== undefined) throw new BackendUnavailableError('webgpu', err, attempts);
      return done('@tensorflow/tfjs-backend-webgpu', {adapter});
    }
    case 'webgl': {
      const err = await activateBackend('webgl');
      attempts.push({backend: 'webgl', package: '@tensorflow/tfjs-backend-webgl', error: err});
      if (err !== undefined) {
        throw new BackendUnavailableError('webgl',
          `${err}. WebGL needs a browser; in Node use 'webgpu' (Dawn) for a GPU`, attempts);
      }
      return done('@tensorflow/tfjs-backend-webgl');
    }
  }
}
