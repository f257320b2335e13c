/**
 * Arrays read from checkpoints: raw little-endian bytes with numpy's dtype name and a shape, and
 * their exact conversion to float32 (bfloat16 and float16 upcast exactly).
 */
import {CheckpointError} from './byte-source';

/** numpy dtype names that the readers accept. */
export type CheckpointDType = 'float32' | 'bfloat16' | 'float16' | 'float64' | 'int32' | 'uint32' | 'int64' | 'int8' | 'uint8' | 'bool';

const ITEM_SIZE: Record<CheckpointDType, number> = {
  float32: 4, bfloat16: 2, float16: 2, float64: 8, int32: 4, uint32: 4, int64: 8, int8: 1, uint8: 1, bool: 1,
};

/** One array of a checkpoint: `path` is the `/`-joined key path; `bytes` are C-order little-endian. */
export interface CheckpointArray {
  path: string;
  shape: number[];
  dtype: CheckpointDType;
  bytes: Uint8Array;
}

/** A checkpoint's arrays by `/`-joined path, in the order they were read. */
export type CheckpointArrays = Map<string, CheckpointArray>;

/**
 * Bytes per item of a dtype; throws {@link CheckpointError} for a dtype the readers do not know.
 *
 * @example
 * ```ts
 * itemSize('bfloat16', 'ckpt.index', 'head/kernel'); // 2
 * ```
 */
export function itemSize(dtype: string, file: string, path: string | null): number {
  const s = (ITEM_SIZE as Record<string, number>)[dtype];
  if (s === undefined) {
    throw new CheckpointError(file, `unsupported dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(ITEM_SIZE).join(', ')})`, path);
  }
  return s;
}

/** Product of a shape (1 for a scalar). */
export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function float16ToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * The values of an array as float32: exact for float32, bfloat16 (bits << 16), float16 and
 * integers up to 2^24; float64 is rounded to nearest.
 *
 * @example
 * ```ts
 * toFloat32({path: 'x', shape: [1], dtype: 'bfloat16', bytes: new Uint8Array([0x80, 0x3f])}); // Float32Array [1]
 * ```
 */
export function toFloat32(a: CheckpointArray): Float32Array {
  const n = sizeOf(a.shape);
  const view = new DataView(a.bytes.buffer, a.bytes.byteOffset, a.bytes.byteLength);
  const out = new Float32Array(n);
  switch (a.dtype) {
    case 'float32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      break;
    case 'bfloat16': {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      break;
    }
    case 'float16':
      for (let i = 0; i < n; i++) out[i] = float16ToFloat32(view.getUint16(2 * i, true));
      break;
    case 'float64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      break;
    case 'int32':
      for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, true);
      break;
    case 'uint32':
      for (let i = 0; i < n; i++) out[i] = view.getUint32(4 * i, true);
      break;
    case 'int64':
      for (let i = 0; i < n; i++) out[i] = Number(view.getBigInt64(8 * i, true));
      break;
    case 'int8':
      for (let i = 0; i < n; i++) out[i] = view.getInt8(i);
      break;
    case 'uint8':
    case 'bool':
      for (let i = 0; i < n; i++) out[i] = view.getUint8(i);
      break;
  }
  return out;
}

/**
 * A float32 array as checkpoint bytes (little-endian).
 *
 * @example
 * ```ts
 * fromFloat32('head/bias', [3], new Float32Array([1, 2, 3])).bytes.length; // 12
 * ```
 */
export function fromFloat32(path: string, shape: number[], values: Float32Array): CheckpointArray {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i], true);
  return {path, shape: [...shape], dtype: 'float32', bytes};
}

/**
 * Copies a chunk (the C-order bytes of `array[slice]`) into the full array's bytes.
 *
 * @param out bytes of the whole array, shape `shape`
 * @param chunk bytes of the slice, shape `stop - start` per axis
 * @param starts, stops the slice per axis
 * @param item bytes per item
 */
export function copySlice(out: Uint8Array, shape: readonly number[], chunk: Uint8Array, starts: readonly number[], stops: readonly number[], item: number): void {
  const rank = shape.length;
  if (rank === 0) {
    out.set(chunk.subarray(0, item));
    return;
  }
  const ext = starts.map((s, i) => stops[i] - s);
  const strides = new Array<number>(rank);
  let acc = item;
  for (let i = rank - 1; i >= 0; i--) {
    strides[i] = acc;
    acc *= shape[i];
  }
  const run = ext[rank - 1] * item;
  const rows = sizeOf(ext.slice(0, -1));
  const idx = new Array<number>(rank - 1).fill(0);
  for (let r = 0; r < rows; r++) {
    let off = starts[rank - 1] * item;
    for (let a = 0; a < rank - 1; a++) off += (starts[a] + idx[a]) * strides[a];
    out.set(chunk.subarray(r * run, (r + 1) * run), off);
    for (let a = rank - 2; a >= 0; a--) {
      if (++idx[a] < ext[a]) break;
      idx[a] = 0;
    }
  }
}
