/**
 * A msgpack encoder for writing vmoe checkpoints: JS `Map`s keep their insertion order (the leaf
 * order of a V1 file), large bins are emitted as parts without copying (so a shard over 2 GiB can
 * be written piece by piece), and ext values are written as vmoe and flax write them. Strings are
 * `str`, `Uint8Array` is `bin`, integers use the smallest encoding, other numbers float64.
 */

/** An ext value to encode: type code and payload bytes. */
export class Ext {
  constructor(readonly type: number, readonly data: Uint8Array) {}
}

/** A value {@link encodeParts} accepts. */
export type EncodableValue = null | boolean | number | string | Uint8Array | Ext | EncodableValue[] | Map<string, EncodableValue>;

const utf8 = new TextEncoder();

function header(bytes: number[]): Uint8Array {
  return new Uint8Array(bytes);
}

function be(n: number, width: number): number[] {
  const out: number[] = [];
  for (let i = width - 1; i >= 0; i--) out.push(Math.floor(n / 2 ** (8 * i)) % 256);
  return out;
}

function lengthHeader(n: number, fix: number | null, fixMax: number, codes: [number, number, number | null]): Uint8Array {
  if (fix !== null && n <= fixMax) return header([fix | n]);
  if (codes[0] !== 0 && n < 0x100) return header([codes[0], n]);
  if (n < 0x10000) return header([codes[1], ...be(n, 2)]);
  return header([codes[2] as number, ...be(n, 4)]);
}

/**
 * Encodes a value as a list of byte parts whose concatenation is the msgpack document.
 *
 * @example
 * ```ts
 * const parts = encodeParts(new Map([['a', 1]]));
 * concatParts(parts); // Uint8Array [0x81, 0xa1, 0x61, 0x01]
 * ```
 */
export function encodeParts(value: EncodableValue, parts: Uint8Array[] = []): Uint8Array[] {
  if (value === null) parts.push(header([0xc0]));
  else if (value === false) parts.push(header([0xc2]));
  else if (value === true) parts.push(header([0xc3]));
  else if (typeof value === 'number') {
    if (Number.isInteger(value) && Math.abs(value) <= Number.MAX_SAFE_INTEGER) {
      if (value >= 0) {
        if (value < 0x80) parts.push(header([value]));
        else if (value < 0x100) parts.push(header([0xcc, value]));
        else if (value < 0x10000) parts.push(header([0xcd, ...be(value, 2)]));
        else if (value < 0x100000000) parts.push(header([0xce, ...be(value, 4)]));
        else parts.push(header([0xcf, ...be(value, 8)]));
      } else if (value >= -32) parts.push(header([value + 256]));
      else if (value >= -128) parts.push(header([0xd0, value + 256]));
      else if (value >= -32768) parts.push(header([0xd1, ...be(value + 65536, 2)]));
      else if (value >= -(2 ** 31)) parts.push(header([0xd2, ...be(value + 2 ** 32, 4)]));
      else {
        const b = new Uint8Array(9);
        b[0] = 0xd3;
        new DataView(b.buffer).setBigInt64(1, BigInt(value), false);
        parts.push(b);
      }
    } else {
      const b = new Uint8Array(9);
      b[0] = 0xcb;
      new DataView(b.buffer).setFloat64(1, value, false);
      parts.push(b);
    }
  } else if (typeof value === 'string') {
    const bytes = utf8.encode(value);
    parts.push(lengthHeader(bytes.length, 0xa0, 31, [0xd9, 0xda, 0xdb]), bytes);
  } else if (value instanceof Uint8Array) {
    parts.push(lengthHeader(value.length, null, -1, [0xc4, 0xc5, 0xc6]), value);
  } else if (value instanceof Ext) {
    const n = value.data.length;
    const fixed: Record<number, number> = {1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8};
    const t = value.type & 0xff;
    if (fixed[n] !== undefined) parts.push(header([fixed[n], t]));
    else if (n < 0x100) parts.push(header([0xc7, n, t]));
    else if (n < 0x10000) parts.push(header([0xc8, ...be(n, 2), t]));
    else parts.push(header([0xc9, ...be(n, 4), t]));
    parts.push(value.data);
  } else if (Array.isArray(value)) {
    parts.push(lengthHeader(value.length, 0x90, 15, [0, 0xdc, 0xdd]));
    for (const v of value) encodeParts(v, parts);
  } else if (value instanceof Map) {
    parts.push(lengthHeader(value.size, 0x80, 15, [0, 0xde, 0xdf]));
    for (const [k, v] of value) {
      encodeParts(k, parts);
      encodeParts(v, parts);
    }
  } else {
    throw new TypeError(`cannot encode ${String(value)} as msgpack`);
  }
  return parts;
}

/** Concatenates parts into one buffer (for small documents such as ext payloads). */
export function concatParts(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Encodes a small value into one buffer. */
export function encode(value: EncodableValue): Uint8Array {
  return concatParts(encodeParts(value));
}
