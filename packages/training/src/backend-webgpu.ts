/**
 * WebGPU in Node, the Node-only half of the backend helper: Dawn (`dawn.node` from the `webgpu`
 * npm package) as tfjs's `webgpu` backend, on a machine without a GPU over Mesa's software
 * rasterizer (`EGL_PLATFORM=surfaceless`, a `compatibility`-level adapter), with the project's
 * WebGPU workaround (`patchWebGPUBackend`) installed; and its release, so Node can exit.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {activateBackend, patchWebGPUBackend} from '@tfjs-moe/router';

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

/** The first line of an error's message. */
export function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0];
}

/** Whether `e` is Node's "module not found" for `id` (not an error inside the module). */
export function isModuleNotFound(e: unknown, id: string): boolean {
  const err = e as {code?: string; message?: string};
  return (err?.code === 'MODULE_NOT_FOUND' || /Cannot find module/.test(err?.message ?? '')) &&
    (err?.message ?? '').includes(id);
}

/** State of the WebGPU device that {@link setupBackend} created, so that it can be released. */
interface WebGPUState {
  gpu: unknown;
  device: {destroy(): void};
  adapter: WebGPUAdapterDescription;
  definedNavigator: boolean;
}
let webgpuState: WebGPUState | undefined;

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

/**
 * Creates a Dawn WebGPU device (native backend first, then OpenGL on Mesa without a GPU),
 * registers tfjs's `webgpu` backend on it (priority 0: never the default unasked) with the
 * int32-transpose workaround installed, and keeps the device until {@link releaseWebGPU}. Once
 * set up, later calls return the same adapter.
 *
 * @param opts see {@link WebGPUNodeOptions} @param load loads an optional package by name
 * @throws Error naming every plan tried when no adapter or device could be created
 *
 * @example
 * ```ts
 * const adapter = await setupWebGPU({}, require); // then activateBackend('webgpu')
 * ```
 */
export async function setupWebGPU(opts: WebGPUNodeOptions, load: (id: string) => unknown): Promise<WebGPUAdapterDescription> {
  if (webgpuState) return webgpuState.adapter;
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
    patchWebGPUBackend(webgpuModule.WebGPUBackend as unknown as {prototype: object});
    webgpuState = {gpu, device, adapter: description, definedNavigator};
    return description;
  }
  throw new Error(`no WebGPU adapter (${failures.join('; ')}). Without a GPU, Dawn needs Mesa's EGL/OpenGL ` +
    `with EGL_PLATFORM=surfaceless set in the environment before the process starts (under jest, ` +
    `process.env changes do not reach native code); currently EGL_PLATFORM=${process.env.EGL_PLATFORM ?? '(unset)'}`);
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
  if (tf.getBackend() === 'webgpu') await activateBackend(fallback);
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
