/**
 * Works around a tfjs-backend-webgpu 4.22 bug (same patch as in @tfjs-moe/training's backend
 * helper for Node): its general Transpose shader passes an `i32` element of an int32 input to the
 * `f32` output setter, which Tint rejects, so transposing an int32 tensor of rank >= 3 (the MoE
 * layer's expert indices) fails and its consumers read garbage. The patch converts the element
 * with `f32(...)` in that one shader (exact for |v| < 2^24).
 */
import {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';

let patched = false;

/** Installs the patch once (call before the first webgpu op). */
export function patchWebGPUTranspose(): void {
  if (patched) return;
  const proto = WebGPUBackend.prototype as unknown as {runWebGPUProgram: (...a: unknown[]) => unknown};
  const run = proto.runWebGPUProgram;
  proto.runWebGPUProgram = function (this: unknown, ...args: unknown[]) {
    const program = args[0] as {shaderKey?: string; getUserCode(): string};
    const inputs = args[1] as Array<{dtype: string}>;
    // Only the general TransposeProgram has a shader key `transpose_<perm>` (the shared-memory
    // one is 'transposeShared'); its class name is not used, so the bundle may rename classes.
    if (program?.shaderKey?.startsWith('transpose_') && inputs?.[0]?.dtype === 'int32') {
      const userCode = program.getUserCode.bind(program);
      program.getUserCode = () => userCode()
        .replace('setOutputAtIndex(flatIndex, A[', 'setOutputAtIndex(flatIndex, f32(A[')
        .replace('uniforms.aShape)]);', 'uniforms.aShape)]));');
      program.shaderKey = `${program.shaderKey}_i32`;
    }
    return run.apply(this, args);
  };
  patched = true;
}
