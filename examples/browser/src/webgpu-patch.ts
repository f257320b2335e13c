/**
 * The page installs the router package's tfjs-backend-webgpu 4.22 workarounds
 * (int32 transposes, many-input sums; see `patchWebGPUBackend`) on the WebGPU backend it bundles.
 */
import {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {patchWebGPUBackend} from '@tfjs-moe/router';

/** Installs the patches once (call before the first webgpu op). */
export function patchWebGPU(): void {
  patchWebGPUBackend(WebGPUBackend);
}
