/**
 * Single-file checkpoint readers: flax msgpack (`flax.serialization.to_bytes`, including arrays
 * stored as chunks) and `.npz` (a zip of `.npy` files named by `/`-joined key paths, as vit_jax's
 * released ViT checkpoints). Format: shared/docs/vmoe-checkpoints.md, sections 1.10-1.11.
 */
import {inflateSync} from 'fflate';
import {CheckpointArray, CheckpointArrays, CheckpointDType, itemSize, sizeOf} from './arrays';
import {ByteSource, CheckpointError} from './byte-source';
import {decodeDocument, isExt, isMap, MsgValue} from './msgpack';
import {decodeNdarray} from './partitioned';

const CHUNKED = '__msgpack_chunked_array__';

/**
 * Reads a flax msgpack file: every ndarray (ext 1) or numpy scalar (ext 3) leaf of the tree,
 * chunked arrays reassembled. Plain msgpack values (Python ints, strings) are skipped.
 * Throws {@link CheckpointError} naming the file for a truncated or malformed file.
 *
 * @example
 * ```ts
 * const arrays = await readFlaxMsgpack(await fileSource('params.msgpack'));
 * arrays.get('Encoder/encoder_norm/scale')?.shape; // [768]
 * ```
 */
export async function readFlaxMsgpack(source: ByteSource): Promise<CheckpointArrays> {
  const file = source.name;
  const top = await decodeDocument(source, 0, undefined, {inlineLimit: 0});
  if (!isMap(top)) throw new CheckpointError(file, 'not a flax msgpack checkpoint (the top level is not a map)');
  const arrays: CheckpointArrays = new Map();
  const walk = async (node: MsgValue, path: string[]): Promise<void> => {
    const p = path.join('/');
    if (isMap(node)) {
      if (node.get(CHUNKED) === true) {
        arrays.set(p, await readChunked(node, file, p));
        return;
      }
      for (const [k, v] of node) await walk(v, [...path, String(k)]);
      return;
    }
    if (isExt(node)) arrays.set(p, await decodeNdarray(node, file, p));
  };
  await walk(top, []);
  return arrays;
}

async function readChunked(node: Map<string | number, MsgValue>, file: string, p: string): Promise<CheckpointArray> {
  const shapeMap = node.get('shape') ?? null;
  const chunkMap = node.get('chunks') ?? null;
  if (!isMap(shapeMap) || !isMap(chunkMap)) throw new CheckpointError(file, 'malformed chunked array', p);
  const shape = [...shapeMap.values()].map((d) => {
    if (typeof d !== 'number') throw new CheckpointError(file, 'malformed chunked array shape', p);
    return d;
  });
  const parts: CheckpointArray[] = [];
  for (let i = 0; i < chunkMap.size; i++) {
    const c = chunkMap.get(String(i));
    if (c === undefined) throw new CheckpointError(file, `chunked array misses chunk ${i}`, p);
    parts.push(await decodeNdarray(c, file, p));
  }
  const dtype = parts[0]?.dtype ?? 'float32';
  const bytes = new Uint8Array(sizeOf(shape) * itemSize(dtype, file, p));
  let off = 0;
  for (const part of parts) {
    if (part.dtype !== dtype || off + part.bytes.length > bytes.length) throw new CheckpointError(file, 'chunked array chunks disagree with its shape', p);
    bytes.set(part.bytes, off);
    off += part.bytes.length;
  }
  if (off !== bytes.length) throw new CheckpointError(file, `chunked array holds ${off} of ${bytes.length} bytes`, p);
  return {path: p, shape, dtype, bytes};
}

// ------------------------------------------------------------------------------------------------
// .npz

const NPY_DTYPES: Record<string, CheckpointDType> = {
  '<f4': 'float32', '<f2': 'float16', '<f8': 'float64', '<i4': 'int32', '<u4': 'uint32', '<i8': 'int64',
  '|i1': 'int8', '|u1': 'uint8', '|b1': 'bool', '|V2': 'bfloat16', '<V2': 'bfloat16', 'bfloat16': 'bfloat16',
};

/**
 * Parses one `.npy` file (versions 1-3, C order). 2-byte void (`|V2`) is read as bfloat16, as
 * vmoe's `initialize_from_vit` does.
 *
 * @example
 * ```ts
 * parseNpy(bytes, 'params.npz', 'head/kernel').shape; // [768, 1000]
 * ```
 */
export function parseNpy(bytes: Uint8Array, file: string, path: string): CheckpointArray {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((m, i) => bytes[i] !== m)) throw new CheckpointError(file, 'not a .npy member', path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (start + headerLen > bytes.length) throw new CheckpointError(file, 'truncated .npy header', path);
  const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr == null || fortran == null || shapeText == null) throw new CheckpointError(file, `unreadable .npy header ${header.trim()}`, path);
  if (fortran === 'True') throw new CheckpointError(file, 'Fortran-order .npy arrays are not supported', path);
  const dtype = NPY_DTYPES[descr];
  if (!dtype) throw new CheckpointError(file, `unsupported .npy dtype ${descr}`, path);
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
  const n = sizeOf(shape) * itemSize(dtype, file, path);
  const dataStart = start + headerLen;
  if (dataStart + n > bytes.length) throw new CheckpointError(file, `truncated .npy data: ${bytes.length - dataStart} of ${n} bytes`, path);
  return {path, shape, dtype, bytes: bytes.slice(dataStart, dataStart + n)};
}

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  offset: number;
}

async function zipEntries(source: ByteSource): Promise<ZipEntry[]> {
  const file = source.name;
  const total = await source.size();
  const tailLen = Math.min(total, 65557);
  const tail = await source.read(total - tailLen, tailLen);
  const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new CheckpointError(file, 'not a zip/npz file or truncated (no end-of-central-directory record)');
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  if (cdOffset === 0xffffffff || count === 0xffff || cdSize === 0xffffffff) {
    const locAt = total - tailLen + eocd - 20;
    const loc = await source.read(locAt, 20);
    const lv = new DataView(loc.buffer, loc.byteOffset, 20);
    if (lv.getUint32(0, true) !== 0x07064b50) throw new CheckpointError(file, 'zip64 locator missing');
    const recAt = Number(lv.getBigUint64(8, true));
    const rec = await source.read(recAt, 56);
    const rv = new DataView(rec.buffer, rec.byteOffset, 56);
    if (rv.getUint32(0, true) !== 0x06064b50) throw new CheckpointError(file, 'zip64 end-of-central-directory record missing');
    count = Number(rv.getBigUint64(32, true));
    cdSize = Number(rv.getBigUint64(40, true));
    cdOffset = Number(rv.getBigUint64(48, true));
  }
  const cd = await source.read(cdOffset, cdSize);
  const v = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
  const entries: ZipEntry[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (v.getUint32(at, true) !== 0x02014b50) throw new CheckpointError(file, 'corrupt zip central directory');
    const method = v.getUint16(at + 10, true);
    let compressedSize = v.getUint32(at + 20, true);
    let size = v.getUint32(at + 24, true);
    const nameLen = v.getUint16(at + 28, true);
    const extraLen = v.getUint16(at + 30, true);
    const commentLen = v.getUint16(at + 32, true);
    let offset = v.getUint32(at + 42, true);
    const name = new TextDecoder().decode(cd.subarray(at + 46, at + 46 + nameLen));
    let e = at + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = v.getUint16(e, true);
      const len = v.getUint16(e + 2, true);
      if (id === 0x0001) {
        let q = e + 4;
        if (size === 0xffffffff) { size = Number(v.getBigUint64(q, true)); q += 8; }
        if (compressedSize === 0xffffffff) { compressedSize = Number(v.getBigUint64(q, true)); q += 8; }
        if (offset === 0xffffffff) { offset = Number(v.getBigUint64(q, true)); }
      }
      e += 4 + len;
    }
    entries.push({name, method, compressedSize, size, offset});
    at = extraEnd + commentLen;
  }
  return entries;
}

/**
 * Reads an `.npz` file member by member (each `.npy` read and, when deflated, inflated on its
 * own): key = member name without `.npy`. Throws {@link CheckpointError} naming the file for a
 * truncated zip, an unsupported compression or a bad `.npy`.
 *
 * @example
 * ```ts
 * const arrays = await readNpz(await fileSource('ViT-B_16.npz'));
 * arrays.get('Transformer/encoder_norm/scale')?.shape; // [768]
 * ```
 */
export async function readNpz(source: ByteSource): Promise<CheckpointArrays> {
  const file = source.name;
  const arrays: CheckpointArrays = new Map();
  for (const entry of await zipEntries(source)) {
    if (!entry.name.endsWith('.npy')) continue;
    const path = entry.name.slice(0, -4);
    const local = await source.read(entry.offset, 30);
    const lv = new DataView(local.buffer, local.byteOffset, 30);
    if (lv.getUint32(0, true) !== 0x04034b50) throw new CheckpointError(file, 'corrupt zip local header', path);
    const dataAt = entry.offset + 30 + lv.getUint16(26, true) + lv.getUint16(28, true);
    const raw = await source.read(dataAt, entry.compressedSize);
    let bytes: Uint8Array;
    if (entry.method === 0) bytes = raw;
    else if (entry.method === 8) bytes = inflateSync(raw, {out: new Uint8Array(entry.size)});
    else throw new CheckpointError(file, `unsupported zip compression method ${entry.method}`, path);
    arrays.set(path, parseNpy(bytes, file, path));
  }
  return arrays;
}
