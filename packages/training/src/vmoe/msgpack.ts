/**
 * A streaming msgpack decoder for checkpoint files, written for two needs that general-purpose
 * decoders (`@msgpack/msgpack`, `msgpackr`) do not meet together:
 *
 * - **Order**: maps decode into JS `Map`s in stored order. vmoe numbers checkpoint leaves in the
 *   order its index stores them, and plain JS objects would move integer-like keys (`"0"`, `"10"`,
 *   `"2"`) first in numeric order.
 * - **Size**: files may exceed 2 GiB, so the decoder reads through a {@link BufferedReader} and
 *   returns large `bin` and `ext` payloads as references (offset, length) into the file, read
 *   later only when (and where) they are needed.
 *
 * Supported: nil, booleans, integers (uint64/int64 as numbers when exact, else an error), float32/
 * float64, str, bin, array, map, ext (fixext and ext 8/16/32). The subset is the one written by
 * Python's `msgpack` for flax and vmoe files (shared/docs/vmoe-checkpoints.md, section 1.3).
 */
import {BufferedReader, ByteSource, CheckpointError, memorySource} from './byte-source';

/** A `bin` value: `bytes` holds it when at most the decoder's `inlineLimit`, else read it with {@link readBin}. */
export interface BinRef {
  kind: 'bin';
  source: ByteSource;
  offset: number;
  length: number;
  bytes?: Uint8Array;
}

/** An `ext` value: the payload's type code and place in the file. */
export interface ExtRef {
  kind: 'ext';
  type: number;
  source: ByteSource;
  offset: number;
  length: number;
}

/** A decoded msgpack value. Maps keep their stored order. */
export type MsgValue = null | boolean | number | string | BinRef | ExtRef | MsgValue[] | Map<string | number, MsgValue>;

const utf8 = new TextDecoder('utf-8');

/** Options of {@link decodeValue}. */
export interface DecodeOptions {
  /** Largest bin read into memory while decoding (larger ones stay references). Default 64 KiB. */
  inlineLimit?: number;
  /** Bytes fetched per read by {@link decodeDocument}'s reader. Default 1 MiB. */
  chunk?: number;
}

/**
 * Decodes one msgpack value at the reader's position and advances past it.
 * Throws {@link CheckpointError} (naming the file) on a truncated file or an unsupported type byte.
 *
 * @example
 * ```ts
 * const v = await decodeValue(new BufferedReader(memorySource(new Uint8Array([0x81, 0xa1, 0x61, 0x01]))));
 * (v as Map<string, unknown>).get('a'); // 1
 * ```
 */
export async function decodeValue(r: BufferedReader, options: DecodeOptions = {}): Promise<MsgValue> {
  const inlineLimit = options.inlineLimit ?? 65536;
  const name = r.source.name;
  const u = async (n: number): Promise<number> => {
    const b = await r.take(n);
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + b[i];
    return v;
  };
  const s = async (n: number): Promise<number> => {
    const v = await u(n);
    const bound = 2 ** (8 * n - 1);
    return v >= bound ? v - 2 * bound : v;
  };
  const exactInt = (v: number, at: number): number => {
    if (!Number.isSafeInteger(v)) throw new CheckpointError(name, `integer at byte ${at} does not fit in 2^53`);
    return v;
  };
  const bin = async (len: number): Promise<BinRef> => {
    const offset = r.pos;
    if (len <= inlineLimit) {
      const bytes = (await r.take(len)).slice();
      return {kind: 'bin', source: r.source, offset, length: len, bytes};
    }
    await r.skip(len);
    return {kind: 'bin', source: r.source, offset, length: len};
  };
  const ext = async (len: number): Promise<ExtRef> => {
    const type = await s(1);
    const offset = r.pos;
    await r.skip(len);
    return {kind: 'ext', type, source: r.source, offset, length: len};
  };
  const str = async (len: number) => utf8.decode(await r.take(len));
  const array = async (len: number) => {
    const out: MsgValue[] = [];
    for (let i = 0; i < len; i++) out.push(await decodeValue(r, options));
    return out;
  };
  const map = async (len: number) => {
    const out = new Map<string | number, MsgValue>();
    for (let i = 0; i < len; i++) {
      const at = r.pos;
      const key = await decodeValue(r, options);
      if (typeof key !== 'string' && typeof key !== 'number') {
        throw new CheckpointError(name, `map key at byte ${at} is not a string or an integer`);
      }
      out.set(key, await decodeValue(r, options));
    }
    return out;
  };
  const at = r.pos;
  const t = (await r.take(1))[0];
  if (t <= 0x7f) return t;
  if (t >= 0xe0) return t - 256;
  if (t >= 0x80 && t <= 0x8f) return map(t & 0x0f);
  if (t >= 0x90 && t <= 0x9f) return array(t & 0x0f);
  if (t >= 0xa0 && t <= 0xbf) return str(t & 0x1f);
  switch (t) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return bin(await u(1));
    case 0xc5: return bin(await u(2));
    case 0xc6: return bin(await u(4));
    case 0xc7: return ext(await u(1));
    case 0xc8: return ext(await u(2));
    case 0xc9: return ext(await u(4));
    case 0xca: return new DataView((await r.take(4)).slice().buffer).getFloat32(0, false);
    case 0xcb: return new DataView((await r.take(8)).slice().buffer).getFloat64(0, false);
    case 0xcc: return u(1);
    case 0xcd: return u(2);
    case 0xce: return u(4);
    case 0xcf: return exactInt(await u(8), at);
    case 0xd0: return s(1);
    case 0xd1: return s(2);
    case 0xd2: return s(4);
    case 0xd3: return exactInt(await s(8), at);
    case 0xd4: return ext(1);
    case 0xd5: return ext(2);
    case 0xd6: return ext(4);
    case 0xd7: return ext(8);
    case 0xd8: return ext(16);
    case 0xd9: return str(await u(1));
    case 0xda: return str(await u(2));
    case 0xdb: return str(await u(4));
    case 0xdc: return array(await u(2));
    case 0xdd: return array(await u(4));
    case 0xde: return map(await u(2));
    case 0xdf: return map(await u(4));
    default:
      throw new CheckpointError(name, `unsupported msgpack type byte 0x${t.toString(16)} at byte ${at}`);
  }
}

/**
 * Decodes a whole source (or the payload of an ext / a bin) as one msgpack document, checking
 * that it ends where the payload ends.
 *
 * @example
 * ```ts
 * const tree = await decodeDocument(fileSource('ckpt.index'));
 * ```
 */
export async function decodeDocument(source: ByteSource, start = 0, length?: number, options: DecodeOptions = {}): Promise<MsgValue> {
  const r = new BufferedReader(source, start, options.chunk);
  const v = await decodeValue(r, options);
  const end = length == null ? await source.size() : start + length;
  if (r.pos !== end) {
    throw new CheckpointError(source.name, `msgpack document at byte ${start} ends at byte ${r.pos}, expected ${end}`);
  }
  return v;
}

/** Decodes the payload of an ext value as a msgpack document. */
export function decodeExt(e: ExtRef, options: DecodeOptions = {}): Promise<MsgValue> {
  return decodeDocument(e.source, e.offset, e.length, {chunk: Math.min(e.length, 4096), ...options});
}

/** The bytes of a bin value (read from its file when it was not kept inline). */
export async function readBin(b: BinRef): Promise<Uint8Array> {
  return b.bytes ?? b.source.read(b.offset, b.length);
}

/** Decodes the bytes of a bin value as a msgpack document (vmoe nests documents in bins). */
export async function decodeBin(b: BinRef): Promise<MsgValue> {
  return decodeDocument(memorySource(await readBin(b), b.source.name));
}

/** Type guards. */
export const isMap = (v: MsgValue): v is Map<string | number, MsgValue> => v instanceof Map;
export const isBin = (v: MsgValue): v is BinRef => v != null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Map) && v.kind === 'bin';
export const isExt = (v: MsgValue): v is ExtRef => v != null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Map) && v.kind === 'ext';
