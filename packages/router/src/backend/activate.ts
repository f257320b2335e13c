/**
 * Switching the tfjs backend, browser-safe (only `@tensorflow/tfjs`), shared by the Node backend
 * helper of `@tfjs-moe/training` (`setupBackend`) and the browser example:
 * `tf.setBackend()` returns false on failure and quietly keeps the previous backend, so the
 * switch is read back with `tf.getBackend()`; and the project's kernels for the backend chosen
 * (the fast wasm kernels) are installed or removed in one place.
 */
import * as tf from '@tensorflow/tfjs';
import {registerFastKernels, unregisterFastKernels} from './fast-kernels';

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0];
}

/**
 * Makes `name` the active backend and verifies it: `tf.setBackend(name)`, `tf.ready()`, then
 * `tf.getBackend() === name`. Never throws for an unavailable backend.
 *
 * @param name a tfjs backend name (`'wasm'`, `'cpu'`, `'webgl'`, `'webgpu'`, `'tensorflow'`).
 * @returns undefined when `name` is active, else one line saying why not.
 *
 * @example
 * ```ts
 * const why = await activateBackend('wasm');
 * if (why) throw new Error(`wasm could not be started: ${why}`);
 * ```
 */
export async function activateBackend(name: string): Promise<string | undefined> {
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

/**
 * Installs the project's kernels for the active backend: the fast wasm kernels
 * (`registerFastKernels`) on wasm unless `fastKernels` is false, which restores the stock ones.
 * Call it after every backend switch.
 *
 * @example
 * ```ts
 * if (!(await activateBackend('wasm'))) useProjectKernels();
 * ```
 */
export function useProjectKernels(fastKernels = true): void {
  if (!fastKernels) unregisterFastKernels();
  else if (tf.getBackend() === 'wasm') registerFastKernels();
}
