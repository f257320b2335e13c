/**
 * Workarounds for tfjs-backend-webgpu 4.22, shared by the Node backend helper and the browser
 * example ({@link patchWebGPUBackend} installs them all). The first: its general (non-shared-memory) Transpose shader passes an `i32` element of an int32
 * input to the output setter, which takes `f32`; current Dawn/Tint rejects that shader ("type
 * mismatch for argument 2 in call to 'setOutputAtIndex'"), so transposing an int32 tensor of
 * rank >= 3 (the MoE layer's expert indices, also inside reductions) fails and its consumers read
 * garbage. The patch converts the element with `f32(...)` in that one shader (exact for
 * |v| < 2^24, which covers indices); the setter converts back to i32.
 */

import * as tf from '@tensorflow/tfjs';

const PATCHED = Symbol.for('tfjs-moe.webgpuInt32TransposePatched');

/**
 * Installs the patch on a WebGPU backend class, once (later calls do nothing). Takes the class so
 * that this module imports no backend: pass `WebGPUBackend` from `@tensorflow/tfjs-backend-webgpu`
 * before the first webgpu op.
 *
 * @param backendClass the `WebGPUBackend` class (its prototype's `runWebGPUProgram` is wrapped).
 *
 * @example
 * ```ts
 * import {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
 * patchWebGPUInt32Transpose(WebGPUBackend);
 * ```
 */
export function patchWebGPUInt32Transpose(backendClass: {prototype: object}): void {
  const proto = backendClass.prototype as {runWebGPUProgram: (...a: unknown[]) => unknown; [PATCHED]?: boolean};
  if (proto[PATCHED]) return;
  const run = proto.runWebGPUProgram;
  proto.runWebGPUProgram = function (this: unknown, ...args: unknown[]) {
    const program = args[0] as {shaderKey?: string; getUserCode(): string};
    const inputs = args[1] as Array<{dtype: string}>;
    // Only the general TransposeProgram has a shader key `transpose_<perm>` (the shared-memory
    // one is 'transposeShared'); class names are not checked, since bundlers may rename them.
    if (program?.shaderKey?.startsWith('transpose_') && inputs?.[0]?.dtype === 'int32') {
      const userCode = program.getUserCode.bind(program);
      program.getUserCode = () => userCode()
        .replace('setOutputAtIndex(flatIndex, A[', 'setOutputAtIndex(flatIndex, f32(A[')
        .replace('uniforms.aShape)]);', 'uniforms.aShape)]));');
      program.shaderKey = `${program.shaderKey}_i32`;
    }
    return run.apply(this, args);
  };
  proto[PATCHED] = true;
}

const ADDN_PATCHED = Symbol.for('tfjs-moe.webgpuAddNChunked');

/** The storage-buffer limit WebGPU guarantees per shader stage when a device asks for no more. */
const DEFAULT_STORAGE_BUFFERS = 8;

/**
 * A second workaround for tfjs-backend-webgpu 4.22: its `AddN` kernel binds every input as one
 * storage buffer of a single shader, so `tf.addN` of more than
 * `maxStorageBuffersPerShaderStage - 1` tensors (7 on a device created with the default limits,
 * as tfjs and Node's Dawn create them) fails pipeline validation ("The number of storage buffers
 * (34) in the Compute stage exceeds the maximum per-stage limit (8)") and its result reads as
 * NaN. Summing all the weights' non-finite counts, a gradient norm or a model's auxiliary losses
 * are such sums. The patch re-registers `AddN` for `webgpu` so that it adds at most that many
 * inputs per shader, in a tree of partial sums (intermediates released at once). Inputs within
 * the limit take the stock kernel unchanged.
 *
 * Installs once per process (later calls do nothing); call it after `@tensorflow/tfjs-backend-webgpu`
 * is imported (it registers the stock kernel). Does nothing if no `AddN` kernel is registered for
 * `webgpu`.
 *
 * @example
 * ```ts
 * import '@tensorflow/tfjs-backend-webgpu';
 * patchWebGPUAddN();
 * ```
 */
export function patchWebGPUAddN(): void {
  const g = globalThis as {[ADDN_PATCHED]?: boolean};
  if (g[ADDN_PATCHED]) return;
  const stock = tf.getKernel('AddN', 'webgpu');
  if (stock == null) return;
  tf.unregisterKernel('AddN', 'webgpu');
  tf.registerKernel({
    ...stock,
    kernelFunc: (args) => {
      const backend = args.backend as unknown as {
        device?: {limits?: {maxStorageBuffersPerShaderStage?: number}};
        disposeData(dataId: object): unknown;
      };
      const limit = backend.device?.limits?.maxStorageBuffersPerShaderStage ?? DEFAULT_STORAGE_BUFFERS;
      const perShader = Math.max(2, limit - 1); // one binding is the output
      let inputs = args.inputs as unknown as tf.TensorInfo[];
      const partial: tf.TensorInfo[] = [];
      while (inputs.length > perShader) {
        const next: tf.TensorInfo[] = [];
        for (let i = 0; i < inputs.length; i += perShader) {
          const chunk = inputs.slice(i, i + perShader);
          if (chunk.length === 1) {
            next.push(chunk[0]);
          } else {
            const sum = stock.kernelFunc({...args, inputs: chunk as unknown as tf.NamedTensorInfoMap}) as tf.TensorInfo;
            partial.push(sum);
            next.push(sum);
          }
        }
        inputs = next;
      }
      const out = stock.kernelFunc({...args, inputs: inputs as unknown as tf.NamedTensorInfoMap});
      for (const t of partial) backend.disposeData(t.dataId);
      return out;
    },
  });
  g[ADDN_PATCHED] = true;
}

/**
 * Installs every tfjs-backend-webgpu 4.22 workaround of the project on `backendClass`:
 * {@link patchWebGPUInt32Transpose} and {@link patchWebGPUAddN}. Call it once after importing
 * `@tensorflow/tfjs-backend-webgpu`, before the first webgpu op (later calls do nothing).
 *
 * @param backendClass the `WebGPUBackend` class of `@tensorflow/tfjs-backend-webgpu`.
 * @example
 * ```ts
 * import {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
 * patchWebGPUBackend(WebGPUBackend);
 * ```
 */
export function patchWebGPUBackend(backendClass: {prototype: object}): void {
  patchWebGPUInt32Transpose(backendClass);
  patchWebGPUAddN();
}
