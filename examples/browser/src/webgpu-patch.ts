/**
 * The page installs the router package's tfjs-backend-webgpu 4.22 workaround (int32 transposes;
 * see `patchWebGPUInt32Transpose`) on the WebGPU backend it bundles.
 */
import {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {patchWebGPUInt32Transpose} from '@tfjs-moe/router';

/** Installs the patch once (call before the first webgpu op). */
export function patchWebGPUTranspose(): void {
  patchWebGPUInt32Transpose(WebGPUBackend);
}
