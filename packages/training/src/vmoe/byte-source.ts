/**
 * Random-access byte sources for the checkpoint readers: a file may exceed 2 GiB (more than
 * `fs.readFile` or one browser ArrayBuffer allows), so readers ask for byte ranges only. Sources
 * for memory, a `Blob` (a browser `File`) and a URL (HTTP range requests) live here; the Node
 * file source is in `node-source.ts` so that this module stays browser-safe.
 */
import {TfjsMoeError} from '@tfjs-moe/router';

/**
 * A checkpoint file is missing, truncated or not in the format expected. `file` names the file
 * (path, URL or label) and `path`, when set, the parameter path inside the checkpoint.
 *
 * @example
 * ```ts
 * try { await importVMoE('ckpt', config); } catch (e) {
 *   if (e instanceof CheckpointError) console.log(e.file, e.path);
 * }
 * ```
 */
export class CheckpointError extends TfjsMoeError {
  readonly file: string;
  readonly path: string | null;
  constructor(file: string, message: string, path: string | null = null) {
    super(`${file}${path ? ` (${path})` : ''}: ${message}`);
    this.file = file;
    this.path = path;
  }
}

/** Random access to the bytes of one file. */
export interface ByteSource {
  /** A label for error messages (file path or URL). */
  readonly name: string;
  /** Total size in bytes. */
  size(): Promise<number>;
  /**
   * `length` bytes from `offset`. Throws {@link CheckpointError} when the range goes past the end of
   * the file (a truncated file).
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Releases the file handle, if any. */
  close?(): Promise<void>;
}

/** Opens the file `name` next to a checkpoint (a shard of a partitioned checkpoint). */
export type SourceOpener = (name: string) => Promise<ByteSource>;

function checkRange(name: string, offset: number, length: number, size: number): void {
  if (offset < 0 || length < 0 || offset + length > size) {
    throw new CheckpointError(name, `truncated: needs bytes [${offset}, ${offset + length}) but the file has ${size} bytes`);
  }
}

/**
 * A source over bytes in memory.
 *
 * @example
 * ```ts
 * const src = memorySource(new Uint8Array([0x90]), 'empty-array.msgpack');
 * ```
 */
export function memorySource(bytes: Uint8Array, name = '<memory>'): ByteSource {
  return {
    name,
    size: async () => bytes.length,
    read: async (offset, length) => {
      checkRange(name, offset, length, bytes.length);
      return bytes.subarray(offset, offset + length);
    },
  };
}

/**
 * A source over a `Blob` (e.g. a `File` from an `<input type=file>`): reads slices only.
 *
 * @example
 * ```ts
 * const src = blobSource(input.files[0]);
 * ```
 */
export function blobSource(blob: Blob, name = (blob as {name?: string}).name ?? '<blob>'): ByteSource {
  return {
    name,
    size: async () => blob.size,
    read: async (offset, length) => {
      checkRange(name, offset, length, blob.size);
      return new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
    },
  };
}

/**
 * A source over a URL, read with HTTP range requests (`Range: bytes=a-b`); the size comes from a
 * `HEAD` request's `Content-Length`. A server that ignores ranges (status 200) is handled by
 * keeping the whole body once. A missing file (status 404, network error) is a
 * {@link CheckpointError} naming the URL.
 *
 * @example
 * ```ts
 * const src = urlSource('https://example.com/ckpt.index');
 * ```
 */
export function urlSource(url: string, fetchFn: typeof fetch = fetch): ByteSource {
  let sizeCache: number | null = null;
  let whole: Uint8Array | null = null;
  const fail = (what: string) => new CheckpointError(url, what);
  const size = async () => {
    if (sizeCache != null) return sizeCache;
    const res = await fetchFn(url, {method: 'HEAD'}).catch((e: unknown) => { throw fail(`cannot fetch: ${String(e)}`); });
    if (!res.ok) throw fail(`missing (HTTP ${res.status})`);
    const len = res.headers.get('content-length');
    if (len == null) {
      whole = new Uint8Array(await (await fetchFn(url)).arrayBuffer());
      sizeCache = whole.length;
    } else {
      sizeCache = Number(len);
    }
    return sizeCache;
  };
  return {
    name: url,
    size,
    read: async (offset, length) => {
      const total = await size();
      checkRange(url, offset, length, total);
      if (length === 0) return new Uint8Array(0);
      if (whole) return whole.subarray(offset, offset + length);
      const res = await fetchFn(url, {headers: {Range: `bytes=${offset}-${offset + length - 1}`}});
      if (!res.ok) throw fail(`missing (HTTP ${res.status})`);
      const body = new Uint8Array(await res.arrayBuffer());
      if (res.status === 200) {
        whole = body;
        return body.subarray(offset, offset + length);
      }
      if (body.length !== length) throw fail(`short read: asked ${length} bytes at ${offset}, got ${body.length}`);
      return body;
    },
  };
}

/**
 * Opens shards next to a URL prefix: `urlOpener('https://host/dir/')('ckpt.index')`.
 *
 * @example
 * ```ts
 * const opener = urlOpener('https://storage.example.com/vmoe/');
 * ```
 */
export function urlOpener(base: string, fetchFn: typeof fetch = fetch): SourceOpener {
  return async (name) => urlSource(new URL(name, base).toString(), fetchFn);
}

/**
 * A buffered sequential reader over a {@link ByteSource}: fetches windows of `chunk` bytes and
 * can skip large ranges without reading them.
 */
export class BufferedReader {
  pos: number;
  private buf: Uint8Array = new Uint8Array(0);
  private bufStart = 0;
  private total = -1;

  constructor(readonly source: ByteSource, start = 0, private readonly chunk = 1 << 20) {
    this.pos = start;
  }

  /** File size (cached). */
  async size(): Promise<number> {
    if (this.total < 0) this.total = await this.source.size();
    return this.total;
  }

  /** The next `n` bytes (a view valid until the next call), advancing the position. */
  async take(n: number): Promise<Uint8Array> {
    const end = this.pos + n;
    if (this.pos < this.bufStart || end > this.bufStart + this.buf.length) {
      const total = await this.size();
      if (end > total) {
        throw new CheckpointError(this.source.name, `truncated: a value at byte ${this.pos} needs ${n} bytes but the file ends at ${total}`);
      }
      const len = Math.min(Math.max(n, this.chunk), total - this.pos);
      this.buf = await this.source.read(this.pos, len);
      this.bufStart = this.pos;
    }
    const off = this.pos - this.bufStart;
    this.pos = end;
    return this.buf.subarray(off, off + n);
  }

  /** Skips `n` bytes (checking that they exist). */
  async skip(n: number): Promise<void> {
    const total = await this.size();
    if (this.pos + n > total) {
      throw new CheckpointError(this.source.name, `truncated: ${n} bytes at byte ${this.pos} past the end of the file (${total} bytes)`);
    }
    this.pos += n;
  }
}
