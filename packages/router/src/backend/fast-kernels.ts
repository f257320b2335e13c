/**
 * Faster wasm kernels for the kinds that dominate MoE training on tfjs-backend-wasm 4.22:
 *
 * - `BatchMatMul`: the stock kernel reaches XNNPACK only when both operands are untransposed and
 *   unbatched; every transposed product (all of backprop's `dX = dY W^T` and `dW = X^T dY`) and
 *   every batched product (experts, attention) runs a scalar loop, 10-20x slower. The fast kernel
 *   runs every float32 product through the project's own WebAssembly SIMD kernels (`gemm.wat`:
 *   `A B`, `A^T B` and `A B^T` read in place on the tfjs heap, one call per batch entry). Where
 *   that module cannot be instantiated (a wasm build with shared memory, or {@link setWasmGemm}
 *   false), it falls back to XNNPACK: operands transposed explicitly (the wasm `Transpose` kernel),
 *   then untransposed 2-D products through tfjs's XNNPACK entry, one per batch entry, on views
 *   into the operands' memory; `a b^T` with few rows as the transposed product `(b a^T)^T`.
 *   Why not XNNPACK everywhere: it packs its right operand whenever that is a new tensor (every
 *   training step's weights, every expert, every gradient), about 3 ns per element on the 2-core
 *   machine, as long as the product itself for an expert's 64 rows; the own kernels pack nothing
 *   and run at XNNPACK's rate or above (bench/RESULTS-moe.md, 1 Dec).
 * - `GatherV2`: the stock kernel copies element by element after reading the indices back; the fast
 *   kernel copies whole rows (`copyWithin` on the wasm heap).
 * - `Slice`, `Unpack` (`tf.unstack`), `SplitV` (`tf.split`): the stock `Slice` first copies its
 *   whole input out of the wasm heap, and `Unpack` / `SplitV` run it once per output (an unstack
 *   of E experts' weights copies them E times: 3.9 s for `[32, 192, 768]` x 6 on the 2-core
 *   machine); the fast kernels copy only the requested block, one `copyWithin` per contiguous run.
 * - `Identity`: the stock kernel copies; the fast one shares the data (reference count).
 * - `Sum` over a block of axes that is not innermost (bias gradients): the stock kernel transposes
 *   first; the fast one adds rows in place.
 *
 * Nothing here runs on import: {@link registerFastKernels} installs the kernels (once), and
 * {@link unregisterFastKernels} restores the stock ones. Results equal the stock kernels' up to
 * float32 summation order.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError} from '../core/errors';
import {GEMM_WASM_BASE64} from './gemm-module';
import {decodeBase64} from '../core/base64';

/** The wasm backend's bookkeeping of one tensor's data, as tfjs-backend-wasm 4.22 keeps it. */
interface WasmData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: tf.DataType;
  refCount: number;
}

/** The parts of tfjs-backend-wasm's `BackendWasm` that the fast kernels use. */
interface WasmBackendLike {
  wasm: {
    cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void;
    HEAPU8: Uint8Array;
    /** The emscripten module's exports; `memory` is the heap's `WebAssembly.Memory`. */
    asm?: {memory?: unknown};
    tfjs: {disposeData(id: number): void};
  };
  dataIdMap: {get(dataId: object): WasmData; delete(dataId: object): boolean};
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number): tf.TensorInfo;
  disposeData(dataId: object): boolean;
  incRef(dataId: object): void;
}

type KernelArgs = Parameters<tf.KernelFunc>[0];
type StockKernels = {
  batchMatMul: tf.KernelConfig; gatherV2: tf.KernelConfig; transpose: tf.KernelConfig;
  slice: tf.KernelConfig; unpack: tf.KernelConfig; splitV: tf.KernelConfig;
  identity: tf.KernelConfig; sum: tf.KernelConfig;
};

/** The kernels replaced by {@link registerFastKernels}. */
const REPLACED = ['BatchMatMul', 'GatherV2', 'Slice', 'Unpack', 'SplitV', 'Identity', 'Sum'] as const;

const BACKEND = 'wasm';
/**
 * Smallest per-entry product (m k n multiply-adds) of a batched matMul that goes through XNNPACK
 * one entry at a time; below it the stock scalar loop is faster (measured: 17x16x17 equal, 64^3
 * 6x faster through XNNPACK).
 */
const MIN_BATCHED_PRODUCT = 16384;
let stock: StockKernels | undefined;
const matMulFns = new WeakMap<object, (...args: unknown[]) => void>();

function size(shape: readonly number[]): number {
  return shape.reduce((p, s) => p * s, 1);
}

/** The wasm `BatchMatMul` entry (the same one the stock kernel wraps), bound to `backend`. */
function wasmMatMul(backend: WasmBackendLike): (...args: unknown[]) => void {
  let fn = matMulFns.get(backend);
  if (fn === undefined) {
    fn = backend.wasm.cwrap('BatchMatMul', null,
      ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
    matMulFns.set(backend, fn);
  }
  return fn;
}

/** Registers a float32 tensor of `shape` that aliases existing wasm memory at byte `offset`. */
function view(backend: WasmBackendLike, shape: number[], offset: number): tf.TensorInfo {
  return backend.makeOutput(shape, 'float32', offset);
}

/** Forgets an alias made by {@link view} without freeing the memory it points into. */
function releaseView(backend: WasmBackendLike, info: tf.TensorInfo): void {
  const data = backend.dataIdMap.get(info.dataId);
  backend.wasm.tfjs.disposeData(data.id);
  backend.dataIdMap.delete(info.dataId);
}

const shapeBytes = (shape: number[]) => new Uint8Array(new Int32Array(shape).buffer);

/**
 * `out[rows, n] = a[rows, k] b[k, n]` through XNNPACK: `a`, `b` and `out` are byte offsets of
 * row-major float32 blocks on the wasm heap.
 */
function product2D(backend: WasmBackendLike, a: number, b: number, out: number, rows: number, k: number, n: number): void {
  const av = view(backend, [1, rows, k], a);
  const bv = view(backend, [1, k, n], b);
  const ov = view(backend, [1, rows, n], out);
  const id = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId).id;
  wasmMatMul(backend)(id(av), shapeBytes([1, rows, k]), 3, id(bv), shapeBytes([1, k, n]), 3, false, false, id(ov));
  releaseView(backend, av);
  releaseView(backend, bv);
  releaseView(backend, ov);
}

/** `x` with its last two axes swapped, as `[batch, cols, rows]` (a new tensor the caller disposes). */
function swapLast2(backend: WasmBackendLike, x: tf.TensorInfo, batch: number): tf.TensorInfo {
  const r = x.shape.length;
  const rows = x.shape[r - 2];
  const cols = x.shape[r - 1];
  const x3: tf.TensorInfo = {dataId: x.dataId, shape: [batch, rows, cols], dtype: x.dtype};
  return stock!.transpose.kernelFunc({inputs: {x: x3}, backend: backend as never, attrs: {perm: [0, 2, 1]}}) as tf.TensorInfo;
}

/** The exports of `gemm.wat` (pointers and strides in bytes; see the file's header). */
interface GemmExports {
  gemm_nn(m: number, n: number, k: number, a: number, ars: number, acs: number, b: number, ldb: number, c: number, ldc: number): void;
  gemm_tn(m: number, n: number, k: number, a: number, lda: number, b: number, ldb: number, c: number, ldc: number): void;
  gemm_nt(m: number, n: number, k: number, a: number, lda: number, b: number, ldb: number, c: number, ldc: number): void;
}

let gemmEnabled = true;
let gemmModule: WebAssembly.Module | null | undefined;
/** Per backend instance: its gemm instance on the backend's memory, or null where none can be made. */
const gemmInstances = new WeakMap<object, GemmExports | null>();

/**
 * The own matMul kernels bound to `backend`'s heap: instantiated once per backend, importing the
 * backend's `WebAssembly.Memory` (so they see it grow). Null when switched off, or when the
 * memory is shared (tfjs's threaded wasm build) or the engine lacks WebAssembly SIMD.
 */
function gemmFor(backend: WasmBackendLike): GemmExports | null {
  if (!gemmEnabled) return null;
  let g = gemmInstances.get(backend);
  if (g === undefined) {
    g = null;
    const memory = backend.wasm.asm?.memory;
    const shared = typeof SharedArrayBuffer !== 'undefined' && memory instanceof WebAssembly.Memory && memory.buffer instanceof SharedArrayBuffer;
    if (memory instanceof WebAssembly.Memory && !shared) {
      try {
        if (gemmModule === undefined) gemmModule = new WebAssembly.Module(decodeBase64(GEMM_WASM_BASE64) as BufferSource);
        if (gemmModule !== null) g = new WebAssembly.Instance(gemmModule, {env: {memory}}).exports as unknown as GemmExports;
      } catch {
        gemmModule ??= null; // no SIMD: compiling failed (an instantiation failure leaves the module usable)
        g = null;
      }
    }
    gemmInstances.set(backend, g);
  }
  return g;
}

/**
 * Whether the fast `BatchMatMul` uses the project's own WebAssembly SIMD kernels (`gemm.wat`,
 * default true) or XNNPACK. Both give the same products up to float32 summation order; the switch
 * exists for measuring one against the other (`bench/moe-layer.ts --xnnpack`) and for engines
 * where one is faster.
 *
 * @param enabled true: own kernels where they can be instantiated; false: XNNPACK
 * @returns the previous setting
 * @throws {InvalidArgumentError} for a non-boolean `enabled`
 *
 * @example
 * ```ts
 * registerFastKernels();
 * const before = setWasmGemm(false);  // XNNPACK for the next products
 * // ... measure ...
 * setWasmGemm(before);
 * ```
 */
export function setWasmGemm(enabled: boolean): boolean {
  if (typeof enabled !== 'boolean') throw new InvalidArgumentError('enabled', 'a boolean', enabled, 'setWasmGemm');
  const previous = gemmEnabled;
  gemmEnabled = enabled;
  return previous;
}

/**
 * Whether products on the current backend run through the own kernels: the fast kernels are
 * registered, the backend is wasm, {@link setWasmGemm} is on, and the module could be
 * instantiated on the backend's memory.
 */
export function wasmGemmActive(): boolean {
  if (stock === undefined || tf.getBackend() !== BACKEND) return false;
  return gemmFor(tf.backend() as unknown as WasmBackendLike) !== null;
}

/**
 * `a b` through the own kernels for equal batches or one unbatched side (the caller checked the
 * shapes): one kernel call per batch entry, or one call for a batched untransposed `a` against a
 * shared `b` (its batch folds into the rows). `a^T b^T` transposes `a` first.
 */
function gemmProduct(
  backend: WasmBackendLike, g: GemmExports, a: tf.TensorInfo, b: tf.TensorInfo, transposeA: boolean, transposeB: boolean,
  aBatch: number, bBatch: number, batch: number, m: number, k: number, n: number, outBatchShape: number[],
): tf.TensorInfo {
  let aInfo = a;
  let tA = transposeA;
  if (transposeA && transposeB) {
    aInfo = swapLast2(backend, a, aBatch); // [aBatch, m, k]
    tA = false;
  }
  const out = backend.makeOutput([batch, m, n], 'float32');
  const aOff = backend.dataIdMap.get(aInfo.dataId).memoryOffset;
  const bOff = backend.dataIdMap.get(b.dataId).memoryOffset;
  const oOff = backend.dataIdMap.get(out.dataId).memoryOffset;
  const aStride = aBatch === 1 ? 0 : m * k * 4;
  const bStride = bBatch === 1 ? 0 : k * n * 4;
  const run = (rows: number, ai: number, bi: number, oi: number) => {
    if (tA) g.gemm_tn(rows, n, k, ai, m * 4, bi, n * 4, oi, n * 4);
    else if (transposeB) g.gemm_nt(rows, n, k, ai, k * 4, bi, k * 4, oi, n * 4);
    else g.gemm_nn(rows, n, k, ai, k * 4, 4, bi, n * 4, oi, n * 4);
  };
  if (bBatch === 1 && aBatch === batch && !tA) {
    run(batch * m, aOff, bOff, oOff);
  } else {
    for (let i = 0; i < batch; i++) run(m, aOff + i * aStride, bOff + i * bStride, oOff + i * m * n * 4);
  }
  if (aInfo !== a) backend.disposeData(aInfo.dataId);
  return {dataId: out.dataId, shape: [...outBatchShape, m, n], dtype: 'float32'};
}

/**
 * `a b^T` (optionally `a^T b^T`) for equal batches as the transposed product `(b a^T)^T`: the
 * XNNPACK entry packs its right operand with a transposition on every call, so for few rows `m`
 * (an expert's slots against its `[n, k]` weights in the backward's `dY W^T`) packing `a^T`
 * (m k elements) and transposing the `[n, m]` result back (m n) moves less memory than
 * transposing `b` and packing it (2 k n).
 */
function transposedProduct(
  backend: WasmBackendLike, a: tf.TensorInfo, b: tf.TensorInfo, transposeA: boolean,
  batch: number, m: number, k: number, n: number, outBatchShape: number[],
): tf.TensorInfo {
  const at = transposeA ? a : swapLast2(backend, a, batch); // [batch, k, m]
  const outT = backend.makeOutput([batch, n, m], 'float32');
  const atOff = backend.dataIdMap.get(at.dataId).memoryOffset;
  const bOff = backend.dataIdMap.get(b.dataId).memoryOffset;
  const oOff = backend.dataIdMap.get(outT.dataId).memoryOffset;
  for (let i = 0; i < batch; i++) product2D(backend, bOff + i * n * k * 4, atOff + i * k * m * 4, oOff + i * n * m * 4, n, k, m);
  if (!transposeA) backend.disposeData(at.dataId);
  const out = swapLast2(backend, outT, batch); // [batch, m, n]
  backend.disposeData(outT.dataId);
  return {dataId: out.dataId, shape: [...outBatchShape, m, n], dtype: 'float32'};
}

function fastBatchMatMul(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as unknown as WasmBackendLike;
  const {a, b} = args.inputs as {a: tf.TensorInfo; b: tf.TensorInfo};
  const {transposeA, transposeB} = args.attrs as {transposeA: boolean; transposeB: boolean};
  const ar = a.shape.length;
  const br = b.shape.length;
  const fallback = () => stock!.batchMatMul.kernelFunc(args) as tf.TensorInfo;
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || ar < 2 || br < 2) return fallback();
  const m = transposeA ? a.shape[ar - 1] : a.shape[ar - 2];
  const k = transposeA ? a.shape[ar - 2] : a.shape[ar - 1];
  const kb = transposeB ? b.shape[br - 1] : b.shape[br - 2];
  const n = transposeB ? b.shape[br - 2] : b.shape[br - 1];
  if (k !== kb || m === 0 || n === 0 || k === 0) return fallback(); // the stock kernel throws or handles empties
  const aBatchShape = a.shape.slice(0, -2);
  const bBatchShape = b.shape.slice(0, -2);
  let outBatchShape: number[];
  try {
    outBatchShape = tf.broadcast_util.assertAndGetBroadcastShape(aBatchShape, bBatchShape);
  } catch {
    return fallback();
  }
  const batch = size(outBatchShape);
  const aBatch = size(aBatchShape);
  const bBatch = size(bBatchShape);
  // Only "equal batches" or "one side unbatched"; general broadcasts such as [2,1] x [1,3] go stock.
  if ((aBatch !== batch && aBatch !== 1) || (bBatch !== batch && bBatch !== 1)) return fallback();
  const g = gemmFor(backend);
  if (g !== null) return gemmProduct(backend, g, a, b, transposeA, transposeB, aBatch, bBatch, batch, m, k, n, outBatchShape);
  if (batch === 1 && !transposeA && !transposeB) return fallback(); // already XNNPACK
  // Many tiny products (attention heads): one XNNPACK call each costs more than the scalar loop.
  if (bBatch > 1 && m * k * n < MIN_BATCHED_PRODUCT) return fallback();
  if (transposeB && aBatch === bBatch && m * (2 * k + n) < 2 * k * n) return transposedProduct(backend, a, b, transposeA, batch, m, k, n, outBatchShape);
  const temps: tf.TensorInfo[] = [];
  // Untransposed operands: A as [aBatch, m, k], B as [bBatch, k, n]. (A transpose with a size-1
  // axis is a relabelling the Transpose kernel handles as a copy.)
  const a3 = transposeA ? swapLast2(backend, a, aBatch) : a;
  if (transposeA) temps.push(a3);
  const b3 = transposeB ? swapLast2(backend, b, bBatch) : b;
  if (transposeB) temps.push(b3);
  const out = backend.makeOutput([batch, m, n], 'float32');
  const aOff = backend.dataIdMap.get(a3.dataId).memoryOffset;
  const bOff = backend.dataIdMap.get(b3.dataId).memoryOffset;
  const oOff = backend.dataIdMap.get(out.dataId).memoryOffset;
  if (bBatch === 1) {
    // A shared right operand: the batch of A folds into the rows of one product.
    if (aBatch === batch) {
      product2D(backend, aOff, bOff, oOff, batch * m, k, n);
    } else {
      for (let i = 0; i < batch; i++) product2D(backend, aOff, bOff, oOff + i * m * n * 4, m, k, n);
    }
  } else {
    for (let i = 0; i < batch; i++) {
      const ai = aBatch === 1 ? aOff : aOff + i * m * k * 4;
      product2D(backend, ai, bOff + i * k * n * 4, oOff + i * m * n * 4, m, k, n);
    }
  }
  for (const t of temps) backend.disposeData(t.dataId);
  return {dataId: out.dataId, shape: [...outBatchShape, m, n], dtype: 'float32'};
}

function fastGatherV2(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as unknown as WasmBackendLike;
  const {x, indices} = args.inputs as {x: tf.TensorInfo; indices: tf.TensorInfo};
  const {axis, batchDims} = args.attrs as {axis: number; batchDims: number};
  const fallback = () => stock!.gatherV2.kernelFunc(args) as tf.TensorInfo;
  if ((x.dtype !== 'float32' && x.dtype !== 'int32') || indices.dtype !== 'int32' || (batchDims ?? 0) !== 0) return fallback();
  if (size(x.shape) === 0 || size(indices.shape) === 0 || x.shape.length === 0) return fallback();
  const ax = axis < 0 ? axis + x.shape.length : axis;
  if (!(ax >= 0 && ax < x.shape.length)) return fallback();
  const outer = size(x.shape.slice(0, ax));
  const dim = x.shape[ax];
  const inner = size(x.shape.slice(ax + 1));
  const count = size(indices.shape);
  const out = backend.makeOutput([...x.shape.slice(0, ax), ...indices.shape, ...x.shape.slice(ax + 1)], x.dtype);
  // Views after the allocation (which may grow the heap and detach older views).
  const heap = new Int32Array(backend.wasm.HEAPU8.buffer);
  const xAt = backend.dataIdMap.get(x.dataId).memoryOffset / 4;
  const iAt = backend.dataIdMap.get(indices.dataId).memoryOffset / 4;
  const oAt = backend.dataIdMap.get(out.dataId).memoryOffset / 4;
  for (let j = 0; j < count; j++) {
    const index = heap[iAt + j];
    if (!(index >= 0 && index < dim)) {
      backend.disposeData(out.dataId);
      throw new Error(`GatherV2: the index value ${index} is not in [0, ${dim - 1}]`);
    }
  }
  for (let o = 0; o < outer; o++) {
    const src = xAt + o * dim * inner;
    let dst = oAt + o * count * inner;
    for (let j = 0; j < count; j++, dst += inner) {
      const s = src + heap[iAt + j] * inner;
      if (inner >= 8) {
        heap.copyWithin(dst, s, s + inner);
      } else {
        for (let c = 0; c < inner; c++) heap[dst + c] = heap[s + c];
      }
    }
  }
  return out;
}

/** Bytes per element of the dtypes the fast copy kernels handle (0: leave it to the stock kernel). */
function elementBytes(dtype: tf.DataType): number {
  return dtype === 'float32' || dtype === 'int32' ? 4 : dtype === 'bool' ? 1 : 0;
}

/**
 * Copies the block `begin`..`begin + size` of `x` into a new tensor of shape `outShape` (same
 * element count as `size`), one `copyWithin` per contiguous run: the trailing axes that the block
 * spans whole, plus the last one it cuts, form one run. Nothing else of `x` is read.
 */
function copyBlock(backend: WasmBackendLike, x: tf.TensorInfo, begin: number[], sz: number[], outShape: number[], bytes: number): tf.TensorInfo {
  const out = backend.makeOutput(outShape, x.dtype);
  const total = size(sz);
  if (total === 0) return out;
  const rank = x.shape.length;
  const strides = new Array<number>(rank);
  for (let i = rank - 1, st = 1; i >= 0; st *= x.shape[i], i--) strides[i] = st;
  // Axes cut..rank-1 are copied as one run: all trailing whole axes and the first cut one.
  let cut = rank - 1;
  while (cut > 0 && sz[cut] === x.shape[cut]) cut--;
  const run = size(sz.slice(cut));
  // After the allocation (which may grow the heap and detach older views).
  const heap = backend.wasm.HEAPU8;
  const xAt = backend.dataIdMap.get(x.dataId).memoryOffset;
  const oAt = backend.dataIdMap.get(out.dataId).memoryOffset;
  const idx = new Array<number>(cut).fill(0);
  for (let dst = 0; dst < total; dst += run) {
    let src = begin[cut] * strides[cut];
    for (let i = 0; i < cut; i++) src += (begin[i] + idx[i]) * strides[i];
    heap.copyWithin(oAt + dst * bytes, xAt + src * bytes, xAt + (src + run) * bytes);
    for (let i = cut - 1; i >= 0; i--) {
      if (++idx[i] < sz[i]) break;
      idx[i] = 0;
    }
  }
  return out;
}

/**
 * `Slice`: the stock kernel first copies the whole input out of the wasm heap (`readSync`), then
 * the slice; this one copies only the slice's contiguous runs.
 */
function fastSlice(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as unknown as WasmBackendLike;
  const {x} = args.inputs as {x: tf.TensorInfo};
  const {begin, size: sz} = args.attrs as unknown as {begin: number | number[]; size: number | number[]};
  const bytes = elementBytes(x.dtype);
  if (bytes === 0 || x.shape.length === 0) return stock!.slice.kernelFunc(args) as tf.TensorInfo;
  const [b, s] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, begin, sz);
  return copyBlock(backend, x, b, s, s, bytes);
}

/** `Unpack` (`tf.unstack`): the stock kernel runs one stock `Slice` (a copy of the whole input) per output. */
function fastUnpack(args: KernelArgs): tf.TensorInfo[] {
  const backend = args.backend as unknown as WasmBackendLike;
  const {value} = args.inputs as {value: tf.TensorInfo};
  const bytes = elementBytes(value.dtype);
  if (bytes === 0) return stock!.unpack.kernelFunc(args) as tf.TensorInfo[];
  const rank = value.shape.length;
  let {axis} = args.attrs as unknown as {axis: number};
  if (axis < 0) axis += rank;
  const outShape = value.shape.filter((_, i) => i !== axis);
  const sz = [...value.shape];
  sz[axis] = 1;
  return Array.from({length: value.shape[axis]}, (_, i) => {
    const begin = new Array<number>(rank).fill(0);
    begin[axis] = i;
    return copyBlock(backend, value, begin, sz, outShape, bytes);
  });
}

/** `SplitV` (`tf.split`): the stock kernel runs one stock `Slice` (a copy of the whole input) per output. */
function fastSplitV(args: KernelArgs): tf.TensorInfo[] {
  const backend = args.backend as unknown as WasmBackendLike;
  const {x} = args.inputs as {x: tf.TensorInfo};
  const bytes = elementBytes(x.dtype);
  if (bytes === 0) return stock!.splitV.kernelFunc(args) as tf.TensorInfo[];
  const {numOrSizeSplits, axis} = args.attrs as unknown as {numOrSizeSplits: number | number[]; axis: number | number[]};
  const ax = tf.util.parseAxisParam(axis, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, numOrSizeSplits, ax);
  const begin = new Array<number>(x.shape.length).fill(0);
  return sizes.map((n) => {
    const sz = [...x.shape];
    sz[ax] = n;
    const out = copyBlock(backend, x, [...begin], sz, sz, bytes);
    begin[ax] += n;
    return out;
  });
}

/**
 * `Identity` (`tf.clone`, and the engine's copy of every input a taped op saves for its
 * gradient): the stock kernel copies the data; tensors are immutable (a variable's `assign`
 * swaps its data id), so this one shares the data as `Reshape` does, by reference count.
 * Measured: 3.8% of a V-MoE training step's CPU time in the stock kernel's copies (node --cpu-prof).
 */
function fastIdentity(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as unknown as WasmBackendLike;
  const {x} = args.inputs as {x: tf.TensorInfo};
  if (x.dtype === 'string') return stock!.identity.kernelFunc(args) as tf.TensorInfo;
  backend.incRef(x.dataId);
  return {dataId: x.dataId, shape: [...x.shape], dtype: x.dtype};
}

/**
 * `Sum` of float32 over one block of adjacent axes that is not the innermost (a bias gradient
 * `[rows, h] -> [h]`, `[E, n, h] -> [E, h]`): the stock kernel transposes the reduced axes
 * innermost first (the stock `Transpose`, 5-20x slower per element when rows hold a multiple of
 * 128 floats: 1.6 ms for `[4, 768, 128]` over axis 1) and sums rows; this one adds the rows in
 * place, four columns at a time, each column in row order in float32 (the stock summation order).
 * Other reductions go to the stock kernel.
 */
function fastSum(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as unknown as WasmBackendLike;
  const {x} = args.inputs as {x: tf.TensorInfo};
  const {axis, keepDims} = args.attrs as unknown as {axis: number | number[]; keepDims: boolean};
  const fallback = () => stock!.sum.kernelFunc(args) as tf.TensorInfo;
  const rank = x.shape.length;
  if (x.dtype !== 'float32' || rank < 2 || size(x.shape) === 0) return fallback();
  const axes = [...new Set(tf.util.parseAxisParam(axis, x.shape))].sort((a, b) => a - b);
  const first = axes[0];
  const last = axes[axes.length - 1];
  // A contiguous block of axes that ends before the innermost axis (innermost blocks need no transpose).
  if (axes.length === 0 || last - first + 1 !== axes.length || last === rank - 1) return fallback();
  const outer = size(x.shape.slice(0, first));
  const rows = size(x.shape.slice(first, last + 1));
  const cols = size(x.shape.slice(last + 1));
  const outShape = keepDims ? x.shape.map((s, i) => (i >= first && i <= last ? 1 : s)) : x.shape.filter((_, i) => i < first || i > last);
  const out = backend.makeOutput(outShape, 'float32');
  // Views after the allocation (which may grow the heap and detach older views).
  const heap = new Float32Array(backend.wasm.HEAPU8.buffer);
  const xAt = backend.dataIdMap.get(x.dataId).memoryOffset / 4;
  const oAt = backend.dataIdMap.get(out.dataId).memoryOffset / 4;
  const f = Math.fround;
  for (let o = 0; o < outer; o++) {
    const base = xAt + o * rows * cols;
    const dst = oAt + o * cols;
    let c = 0;
    for (; c + 4 <= cols; c += 4) {
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let r = 0, i = base + c; r < rows; r++, i += cols) {
        s0 = f(s0 + heap[i]);
        s1 = f(s1 + heap[i + 1]);
        s2 = f(s2 + heap[i + 2]);
        s3 = f(s3 + heap[i + 3]);
      }
      heap[dst + c] = s0;
      heap[dst + c + 1] = s1;
      heap[dst + c + 2] = s2;
      heap[dst + c + 3] = s3;
    }
    for (; c < cols; c++) {
      let sc = 0;
      for (let r = 0, i = base + c; r < rows; r++, i += cols) sc = f(sc + heap[i]);
      heap[dst + c] = sc;
    }
  }
  return out;
}

/**
 * Installs the fast wasm kernels for `BatchMatMul` (every float32 product, transposed and batched
 * ones included, through the project's WebAssembly SIMD kernels, or XNNPACK where those cannot
 * run: see {@link setWasmGemm}), `GatherV2` (row copies), `Slice` / `Unpack` / `SplitV` (block copies), `Identity`
 * (shared data instead of a copy) and `Sum` over non-innermost axes (no transpose) in place of
 * tfjs-backend-wasm's stock ones. Call it once,
 * before or after `tf.setBackend('wasm')`; later calls do nothing. It affects only the wasm
 * backend, and results equal the stock kernels' up to float32 summation order. `setupBackend`
 * from `@tfjs-moe/training` calls it; library users on wasm call it themselves.
 *
 * Measured on a 2-core machine: transposed and batched products 5-15x faster; the default V-MoE's
 * training step several times faster (see `BENCHMARKS.md`).
 *
 * @returns true when it installed the kernels now, false when they were already installed.
 * @throws Error when `@tensorflow/tfjs-backend-wasm` has not registered its kernels (import it first).
 *
 * @example
 * ```ts
 * import '@tensorflow/tfjs-backend-wasm';
 * import {registerFastKernels} from '@tfjs-moe/router';
 * registerFastKernels();
 * await tf.setBackend('wasm');
 * ```
 */
export function registerFastKernels(): boolean {
  if (stock !== undefined) return false;
  const batchMatMul = tf.getKernel('BatchMatMul', BACKEND);
  const gatherV2 = tf.getKernel('GatherV2', BACKEND);
  const transpose = tf.getKernel('Transpose', BACKEND);
  const slice = tf.getKernel('Slice', BACKEND);
  const unpack = tf.getKernel('Unpack', BACKEND);
  const splitV = tf.getKernel('SplitV', BACKEND);
  const identity = tf.getKernel('Identity', BACKEND);
  const sum = tf.getKernel('Sum', BACKEND);
  if (!batchMatMul || !gatherV2 || !transpose || !slice || !unpack || !splitV || !identity || !sum) {
    throw new Error('registerFastKernels: the wasm kernels are not registered; import @tensorflow/tfjs-backend-wasm first');
  }
  stock = {batchMatMul, gatherV2, transpose, slice, unpack, splitV, identity, sum};
  for (const name of REPLACED) tf.unregisterKernel(name, BACKEND);
  // The stock setup functions stay attached: they bind the stock kernels when wasm initializes
  // after this call (the fast kernels fall back to them and bind their own entry lazily).
  tf.registerKernel({...batchMatMul, kernelFunc: fastBatchMatMul});
  tf.registerKernel({...gatherV2, kernelFunc: fastGatherV2});
  tf.registerKernel({...slice, kernelFunc: fastSlice});
  tf.registerKernel({...unpack, kernelFunc: fastUnpack as unknown as tf.KernelFunc});
  tf.registerKernel({...splitV, kernelFunc: fastSplitV as unknown as tf.KernelFunc});
  tf.registerKernel({...identity, kernelFunc: fastIdentity});
  tf.registerKernel({...sum, kernelFunc: fastSum});
  return true;
}

/**
 * Restores tfjs-backend-wasm's stock `BatchMatMul`, `GatherV2`, `Slice`, `Unpack`, `SplitV`, `Identity` and `Sum` kernels (after
 * {@link registerFastKernels}; otherwise does nothing).
 *
 * @returns true when it restored them now.
 *
 * @example
 * ```ts
 * registerFastKernels();
 * // ... train ...
 * unregisterFastKernels();
 * ```
 */
export function unregisterFastKernels(): boolean {
  if (stock === undefined) return false;
  for (const name of REPLACED) tf.unregisterKernel(name, BACKEND);
  for (const k of [stock.batchMatMul, stock.gatherV2, stock.slice, stock.unpack, stock.splitV, stock.identity, stock.sum]) tf.registerKernel(k);
  stock = undefined;
  return true;
}

/** True while the fast wasm kernels are installed. */
export function fastKernelsRegistered(): boolean {
  return stock !== undefined;
}
