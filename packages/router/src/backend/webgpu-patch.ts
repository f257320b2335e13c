/**
 * A workaround for tfjs-backend-webgpu 4.22, shared by the Node backend helper and the browser
 * example. Its general (non-shared-memory) Transpose shader passes an `i32` element of an int32
 * input to the output setter, which takes `f32`; current Dawn/Tint rejects that shader ("type
 * mismatch for argument 2 in call to 'setOutputAtIndex'"), so transposing an int32 tensor of
 * rank >= 3 (the MoE layer's expert indices, also inside reductions) fails and its consumers read
 * garbage. The patch converts the element with `f32(...)` in that one shader (exact for
 * |v| < 2^24, which covers indices); the setter converts back to i32.
 */

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
