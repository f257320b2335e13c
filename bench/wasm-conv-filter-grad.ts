/**
 * Bench-only: a `Conv2DBackpropFilter` kernel for tfjs-backend-wasm 4.22, which has none (so a
 * stock tfjs convnet cannot train on wasm: the first `model.fit` step throws "Kernel
 * 'Conv2DBackpropFilter' not registered for backend 'wasm'"). Not library code: the convnet
 * baseline of `bench/convnet.ts` needs it to run on the same backend as the main job.
 *
 * dW = cols^T dy, with cols `<float32>[M, fh * fw * cin]` the input's patches (im2col, built in
 * JavaScript, zeros where the window reaches into the padding) and dy `<float32>[M, cout]`,
 * M = batch x outHeight x outWidth; the product is the backend's own `BatchMatMul` with
 * `transposeA` (XNNPACK when the project's fast kernels are registered). `[1, fh * fw * cin, cout]`
 * has the memory layout of the filter `[fh, fw, cin, cout]`, so the result is reshaped in place.
 * Checked against the cpu backend's kernel by `bench/convnet.ts --check`.
 */
import * as tf from '@tensorflow/tfjs';
import type {BackendWasm} from '@tensorflow/tfjs-backend-wasm';

type KernelFunc = (args: {inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap}) => tf.TensorInfo | tf.TensorInfo[];

function kernel(name: string): KernelFunc {
  const k = tf.getKernel(name, 'wasm');
  if (!k) throw new Error(`wasm kernel ${name} is not registered`);
  return k.kernelFunc as KernelFunc;
}

function conv2DBackpropFilter(args: {inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap}): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const {x, dy} = args.inputs as {x: tf.TensorInfo; dy: tf.TensorInfo};
  const attrs = args.attrs as unknown as {
    strides: [number, number] | number; pad: 'valid' | 'same' | number; dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: 'floor' | 'round' | 'ceil'; filterShape: [number, number, number, number];
  };
  if (attrs.dataFormat !== 'NHWC') throw new Error('Conv2DBackpropFilter (bench kernel): NHWC only');
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
  const {batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels, strideHeight, strideWidth, filterHeight, filterWidth} = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const M = batchSize * outHeight * outWidth;
  const K = filterHeight * filterWidth * inChannels;
  const cols = backend.makeOutput([1, M, K], 'float32');
  // Views after the allocation (which may grow the wasm memory and detach older views).
  const xv = backend.typedArrayFromHeap(x) as Float32Array;
  const cv = backend.typedArrayFromHeap(cols) as Float32Array;
  let o = 0;
  for (let b = 0; b < batchSize; b++) {
    for (let oy = 0; oy < outHeight; oy++) {
      for (let ox = 0; ox < outWidth; ox++) {
        for (let fy = 0; fy < filterHeight; fy++) {
          const iy = oy * strideHeight - top + fy;
          for (let fx = 0; fx < filterWidth; fx++) {
            const ix = ox * strideWidth - left + fx;
            if (iy < 0 || iy >= inHeight || ix < 0 || ix >= inWidth) {
              cv.fill(0, o, o + inChannels);
            } else {
              const src = ((b * inHeight + iy) * inWidth + ix) * inChannels;
              cv.set(xv.subarray(src, src + inChannels), o);
            }
            o += inChannels;
          }
        }
      }
    }
  }
  const reshape = kernel('Reshape');
  const dy3 = reshape({inputs: {x: dy}, backend, attrs: {shape: [1, M, outChannels]}}) as tf.TensorInfo;
  const product = kernel('BatchMatMul')({inputs: {a: cols, b: dy3}, backend, attrs: {transposeA: true, transposeB: false}}) as tf.TensorInfo;
  const out = reshape({inputs: {x: product}, backend, attrs: {shape: attrs.filterShape}}) as tf.TensorInfo;
  for (const t of [cols, dy3, product]) backend.disposeData(t.dataId);
  return out;
}

/** Registers the bench's `Conv2DBackpropFilter` for wasm (once). */
export function registerWasmConv2DBackpropFilter(): void {
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm')) return;
  tf.registerKernel({kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc});
}
