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
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import * as tfWasm from '@tensorflow/tfjs-backend-wasm';
import {fastKernelsRegistered, InvalidArgumentError, patchWebGPUInt32Transpose, registerFastKernels, TfjsMoeError, unregisterFastKernels} from '@tfjs-moe/router';

/** The backends {@link setupBackend} accepts. `'tensorflow'` is tfjs-node's backend. */
export const BACKEND_NAMES = ['auto', 'tensorflow', 'wasm', 'cpu', 'webgpu', 'webgl'] as const;

/** A backend request: a concrete backend, or `'auto'` (tfjs-node, then wasm, then cpu). */
export type BackendRequest = (typeof BACKEND_NAMES)[number];

/** The tfjs-node packages tried for `'tensorflow'`, in order: the CUDA build first. */
export const TFJS_NODE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

/** The Dawn backends that `dawn.node` can be asked for with its `backend=` option. */
export type DawnBackend = 'vulkan' | 'opengl' | 'opengles' | 'd3d11' | 'd3d12' | 'metal' | 'null';

/** Options for WebGPU in Node (the `webgpu` package). */
export interface WebGPUNodeOptions {
  /**
   * Dawn backend to use. Default: the platform's native backend (Vulkan, Metal, D3D12) with a
   * `core` adapter, and if that finds no adapter, `'opengl'` with a `compatibility` adapter and
   * `EGL_PLATFORM=surfaceless`: the path that works on a machine without a GPU (Mesa llvmpipe).
   */
  dawnBackend?: DawnBackend;
  /**
   * Adapter feature level. Default: `'core'` for native backends and `'compatibility'` for
   * OpenGL/OpenGL ES, which Dawn only offers as compatibility-mode adapters.
   */
  featureLevel?: 'core' | 'compatibility';
  /**
   * Extra `dawn.node` options passed to `create([...])`, e.g.
   * `['enable-dawn-features=allow_unsafe_apis']` or `['adapter=llvmpipe']`.
   */
  dawnOptions?: string[];
  /** Power preference passed to `requestAdapter`. Default `'high-performance'`. */
  powerPreference?: 'low-power' | 'high-performance';
}

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

/** The WebGPU adapter in use (from `GPUAdapter.info`). */
export interface WebGPUAdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** The feature level that was requested for the adapter. */
  featureLevel: 'core' | 'compatibility';
  /** The Dawn backend that was asked for (`'default'` for the platform's native choice). */
  dawnBackend: DawnBackend | 'default';
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

/** State of the WebGPU device that {@link setupBackend} created, so that it can be released. */
interface WebGPUState {
  gpu: unknown;
  device: {destroy(): void};
  adapter: WebGPUAdapterDescription;
  definedNavigator: boolean;
}
let webgpuState: WebGPUState | undefined;

function defaultLoad(id: string): unknown {
  return require(id);
}

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0];
}

function isModuleNotFound(e: unknown, id: string): boolean {
  const err = e as {code?: string; message?: string};
  return (err?.code === 'MODULE_NOT_FOUND' || /Cannot find module/.test(err?.message ?? '')) &&
    (err?.message ?? '').includes(id);
}

/** `tf.setBackend` plus the read-back that it does not do itself. */
async function activate(name: string): Promise<string | undefined> {
  if (tf.findBackendFactory(name) == null && tf.findBackend(name) == null) {
    return `no '${name}' backend is registered with @tensorflow/tfjs ${tf.version.tfjs}`;
  }
  let ok = false;
  try {
    ok = await tf.setBackend(name);
    await tf.ready();
  } catch (e) {
    return `tf.setBackend('${name}') threw: ${errorText(e)}`;
  }
  if (!ok || tf.getBackend() !== name) {
    return `tf.setBackend('${name}') returned ${ok}; tf.getBackend() is '${tf.getBackend()}'`;
  }
  return undefined;
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
    const err = await activate('tensorflow');
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

/** Loads `dawn.node`: through the `webgpu` package, or straight from its platform folder. */
function loadDawn(load: (id: string) => unknown): {create(options: string[]): any; globals: Record<string, unknown>} {
  try {
    const mod = load('webgpu') as {create?: unknown; globals?: unknown};
    if (typeof mod?.create === 'function') return mod as any;
  } catch (e) {
    // `webgpu` is an ES module; where require() cannot load ES modules (jest, Node < 20.19)
    // load its native addon directly, as its index.js does.
    if (isModuleNotFound(e, 'webgpu') && !(e as Error).message.includes('dawn.node')) {
      throw new Error('the optional package `webgpu` is not installed (npm install webgpu@0.6.2)');
    }
  }
  const pkgJson = require.resolve('webgpu/package.json');
  const arch = process.platform === 'darwin' ? 'universal' : process.arch;
  const addon = path.join(path.dirname(pkgJson), 'dist', `${process.platform}-${arch}`, 'dawn.node');
  return load(addon) as any;
}

async function requestAdapter(
  gpu: any,
  featureLevel: 'core' | 'compatibility',
  powerPreference: 'low-power' | 'high-performance',
): Promise<any> {
  return gpu.requestAdapter({featureLevel, powerPreference});
}

async function setupWebGPU(options: SetupBackendOptions, load: (id: string) => unknown): Promise<WebGPUAdapterDescription> {
  if (webgpuState) return webgpuState.adapter;
  const opts = options.webgpu ?? {};
  const dawn = loadDawn(load);
  const extra = opts.dawnOptions ?? [];
  const power = opts.powerPreference ?? 'high-performance';
  const plans: Array<{dawnBackend: DawnBackend | 'default'; featureLevel: 'core' | 'compatibility'}> = [];
  if (opts.dawnBackend) {
    const gl = opts.dawnBackend === 'opengl' || opts.dawnBackend === 'opengles';
    plans.push({dawnBackend: opts.dawnBackend, featureLevel: opts.featureLevel ?? (gl ? 'compatibility' : 'core')});
  } else {
    plans.push({dawnBackend: 'default', featureLevel: opts.featureLevel ?? 'core'});
    plans.push({dawnBackend: 'opengl', featureLevel: opts.featureLevel ?? 'compatibility'});
  }
  const failures: string[] = [];
  for (const plan of plans) {
    if ((plan.dawnBackend === 'opengl' || plan.dawnBackend === 'opengles') && process.env.EGL_PLATFORM === undefined) {
      // Without a display server Mesa's EGL needs the surfaceless platform (llvmpipe).
      process.env.EGL_PLATFORM = 'surfaceless';
    }
    const createOptions = plan.dawnBackend === 'default' ? [...extra] : [`backend=${plan.dawnBackend}`, ...extra];
    let gpu: any;
    let adapter: any;
    try {
      gpu = dawn.create(createOptions);
      adapter = await requestAdapter(gpu, plan.featureLevel, power);
    } catch (e) {
      failures.push(`${plan.dawnBackend}/${plan.featureLevel}: ${errorText(e)}`);
      continue;
    }
    if (!adapter) {
      failures.push(`${plan.dawnBackend}/${plan.featureLevel}: requestAdapter() returned null`);
      continue;
    }
    const limits = adapter.limits;
    const requiredFeatures = adapter.features?.has?.('timestamp-query') ? ['timestamp-query'] : [];
    let device: any;
    try {
      device = await adapter.requestDevice({
        requiredFeatures,
        requiredLimits: {
          maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
          maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
          maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
          maxBufferSize: limits.maxBufferSize,
          maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
          maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
        },
      });
    } catch (e) {
      failures.push(`${plan.dawnBackend}/${plan.featureLevel}: requestDevice() failed: ${errorText(e)}`);
      continue;
    }
    // tfjs-backend-webgpu reads the WebGPU constants (GPUBufferUsage, ...) as globals and checks
    // navigator.gpu; Node 20 has no navigator at all.
    for (const [k, v] of Object.entries(dawn.globals)) {
      if (!(k in globalThis)) (globalThis as any)[k] = v;
    }
    const g = globalThis as any;
    let definedNavigator = false;
    if (g.navigator == null) {
      Object.defineProperty(globalThis, 'navigator', {value: {gpu}, configurable: true, writable: true});
      definedNavigator = true;
    } else if (!g.navigator.gpu) {
      Object.defineProperty(g.navigator, 'gpu', {value: gpu, configurable: true, writable: true});
    }
    const webgpuModule = load('@tensorflow/tfjs-backend-webgpu') as {WebGPUBackend: new (device: unknown, info?: unknown) => tf.KernelBackend};
    const info = adapter.info ?? {};
    if (tf.findBackendFactory('webgpu') != null) tf.removeBackend('webgpu');
    // Priority 0: registering must not make webgpu the default for code that never asked.
    tf.registerBackend('webgpu', () => new webgpuModule.WebGPUBackend(device, info), 0);
    const description: WebGPUAdapterDescription = {
      vendor: String(info.vendor ?? ''),
      architecture: String(info.architecture ?? ''),
      device: String(info.device ?? ''),
      description: String(info.description ?? ''),
      featureLevel: plan.featureLevel,
      dawnBackend: plan.dawnBackend,
    };
    patchWebGPUInt32Transpose(webgpuModule.WebGPUBackend as unknown as {prototype: object});
    webgpuState = {gpu, device, adapter: description, definedNavigator};
    return description;
  }
  throw new Error(`no WebGPU adapter (${failures.join('; ')}). Without a GPU, Dawn needs Mesa's EGL/OpenGL ` +
    `with EGL_PLATFORM=surfaceless set in the environment before the process starts (under jest, ` +
    `process.env changes do not reach native code); currently EGL_PLATFORM=${process.env.EGL_PLATFORM ?? '(unset)'}`);
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
    if (options.fastKernels === false) unregisterFastKernels();
    else if (tf.getBackend() === 'wasm') registerFastKernels();
    return {backend: tf.getBackend(), requested: name, package: pkg, attempts, fastKernels: fastKernelsRegistered(), ...extra};
  };

  switch (name) {
    case 'auto': {
      const pkg = await setupTensorflow(load, attempts);
      if (pkg) return done(pkg);
      log(`tfjs-node is not available (${attempts.map((a) => a.error).join('; ')}); trying wasm`);
      const wasmErr = await activate('wasm');
      if (wasmErr === undefined) {
        attempts.push({backend: 'wasm', package: '@tensorflow/tfjs-backend-wasm'});
        return done('@tensorflow/tfjs-backend-wasm');
      }
      attempts.push({backend: 'wasm', package: '@tensorflow/tfjs-backend-wasm', error: wasmErr});
      log(`wasm is not available (${wasmErr}); using cpu`);
      const cpuErr = await activate('cpu');
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
      const err = await activate(name);
      attempts.push({backend: name, package: pkg, error: err});
      if (err !== undefined) throw new BackendUnavailableError(name, err, attempts);
      return done(pkg);
    }
    case 'webgpu': {
      let adapter: WebGPUAdapterDescription;
      try {
        adapter = await setupWebGPU(options, load);
      } catch (e) {
        attempts.push({backend: 'webgpu', package: 'webgpu', error: errorText(e)});
        throw new BackendUnavailableError('webgpu', errorText(e), attempts);
      }
      const err = await activate('webgpu');
      attempts.push({backend: 'webgpu', package: '@tensorflow/tfjs-backend-webgpu', error: err});
      if (err !== undefined) throw new BackendUnavailableError('webgpu', err, attempts);
      return done('@tensorflow/tfjs-backend-webgpu', {adapter});
    }
    case 'webgl': {
      const err = await activate('webgl');
      attempts.push({backend: 'webgl', package: '@tensorflow/tfjs-backend-webgl', error: err});
      if (err !== undefined) {
        throw new BackendUnavailableError('webgl',
          `${err}. WebGL needs a browser; in Node use 'webgpu' (Dawn) for a GPU`, attempts);
      }
      return done('@tensorflow/tfjs-backend-webgl');
    }
  }
}

/**
 * Releases the WebGPU device that {@link setupBackend}('webgpu') created: removes the tfjs
 * `webgpu` backend (switching to `fallback` first if it is active), destroys the device and drops
 * the `navigator.gpu` reference, so that Node can exit. Does nothing if WebGPU was not set up.
 *
 * @param fallback Backend to switch to if `webgpu` is active. Default `'cpu'`.
 * @example
 * ```ts
 * await setupBackend('webgpu');
 * // ... work ...
 * await releaseWebGPU();
 * ```
 */
export async function releaseWebGPU(fallback: 'cpu' | 'wasm' = 'cpu'): Promise<void> {
  if (!webgpuState) return;
  if (tf.getBackend() === 'webgpu') await activate(fallback);
  if (tf.findBackendFactory('webgpu') != null) tf.removeBackend('webgpu');
  try {
    webgpuState.device.destroy();
  } catch {
    // already destroyed
  }
  const g = globalThis as any;
  if (webgpuState.definedNavigator) delete g.navigator;
  else if (g.navigator?.gpu === webgpuState.gpu) delete g.navigator.gpu;
  webgpuState = undefined;
}
