/**
 * Reader of google-research/vmoe partitioned checkpoints: `<prefix>.index` plus
 * `<prefix>.data-NNNNN-of-MMMMM` shards, legacy (no `version`) and V1 (`version: '20220622'`).
 * Format: shared/docs/vmoe-checkpoints.md, sections 1.2-1.8.
 */
import {CheckpointArray, CheckpointArrays, CheckpointDType, copySlice, itemSize, sizeOf} from './arrays';
import {ByteSource, CheckpointError, SourceOpener} from './byte-source';
import {decodeBin, decodeDocument, decodeExt, ExtRef, isBin, isExt, isMap, MsgValue, readBin} from './msgpack';

/** The marker key that opens every data shard. */
export const SHARD_MARKER = '__msgpack_array_chunk_a87ca2__';
/** The `version` value of V1 indexes. */
export const V1_VERSION = '20220622';

/** One leaf of a partitioned checkpoint's index. */
export interface IndexLeaf {
  /** Leaf number: position in a depth-first walk of the index in stored order. */
  number: number;
  /** Key path. */
  path: string[];
  shape: number[];
  dtype: CheckpointDType;
  /** Shard numbers holding the leaf's chunks. */
  shards: number[];
}

/** What the index says. */
export interface PartitionedIndex {
  /** `'20220622'` for V1, null for legacy files. */
  version: string | null;
  shardCount: number;
  leaves: IndexLeaf[];
}

/**
 * The name of shard `i` of `count`: `<prefix>.data-NNNNN-of-MMMMM` (5 digits or more).
 *
 * @example
 * ```ts
 * shardName('ckpt_100', 2, 16); // 'ckpt_100.data-00002-of-00016'
 * ```
 */
export function shardName(prefix: string, i: number, count: number): string {
  const pad = (n: number) => String(n).padStart(5, '0');
  return `${prefix}.data-${pad(i)}-of-${pad(count)}`;
}

function asInt(v: MsgValue, file: string, what: string, path: string | null): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new CheckpointError(file, `expected an integer ${what}, got ${JSON.stringify(v)}`, path);
  return v;
}

function asShape(v: MsgValue, file: string, path: string): number[] {
  if (!Array.isArray(v)) throw new CheckpointError(file, 'expected a shape (array of integers)', path);
  return v.map((d) => asInt(d, file, 'dimension', path));
}

async function expectExt(v: MsgValue, type: number, file: string, path: string | null): Promise<MsgValue> {
  if (!isExt(v) || v.type !== type) {
    throw new CheckpointError(file, `expected msgpack ext type ${type}, got ${isExt(v) ? `ext ${v.type}` : typeof v}`, path);
  }
  return decodeExt(v);
}

/** Decodes a SliceNd payload (array of bins, each `[start, stop, step]`) into starts and stops. */
async function decodeSliceNd(v: MsgValue, file: string, path: string): Promise<{starts: number[]; stops: number[]}> {
  if (!Array.isArray(v)) throw new CheckpointError(file, 'expected a SliceNd (array of slices)', path);
  const starts: number[] = [];
  const stops: number[] = [];
  for (const b of v) {
    if (!isBin(b)) throw new CheckpointError(file, 'expected a Slice as bin', path);
    const s = await decodeBin(b);
    if (!Array.isArray(s) || s.length !== 3) throw new CheckpointError(file, 'expected a Slice [start, stop, step]', path);
    if (s[2] != null && s[2] !== 1) throw new CheckpointError(file, `unsupported slice step ${JSON.stringify(s[2])}`, path);
    starts.push(asInt(s[0], file, 'slice start', path));
    stops.push(asInt(s[1], file, 'slice stop', path));
  }
  return {starts, stops};
}

/**
 * Reads and decodes `<prefix>.index`: leaves numbered in stored order (nil and empty maps are not
 * leaves). Throws {@link CheckpointError} naming the file for a missing or malformed index.
 *
 * @example
 * ```ts
 * const index = await readPartitionedIndex(await fileSource('ckpt_1000.index'));
 * index.leaves.map((l) => l.path.join('/'));
 * ```
 */
export async function readPartitionedIndex(source: ByteSource): Promise<PartitionedIndex> {
  const file = source.name;
  const top = await decodeDocument(source);
  if (!isMap(top) || !top.has('index') || !top.has('shard_count')) {
    throw new CheckpointError(file, 'not a vmoe checkpoint index (expected a map with "shard_count" and "index")');
  }
  const version = top.get('version') ?? null;
  if (version !== null && typeof version !== 'string') throw new CheckpointError(file, `bad version ${JSON.stringify(version)}`);
  const shardCount = asInt(top.get('shard_count') as MsgValue, file, 'shard_count', null);
  const leaves: IndexLeaf[] = [];
  const walk = async (node: MsgValue, path: string[]): Promise<void> => {
    if (node === null) return;
    if (isMap(node)) {
      for (const [k, v] of node) await walk(v, [...path, String(k)]);
      return;
    }
    const p = path.join('/');
    const info = await expectExt(node, 8, file, p);
    if (!Array.isArray(info) || info.length !== 3 || !isBin(info[0]) || !Array.isArray(info[2])) {
      throw new CheckpointError(file, 'malformed IndexInfo', p);
    }
    const shaped = await decodeBin(info[0]);
    if (!Array.isArray(shaped) || shaped.length < 2 || typeof shaped[1] !== 'string') {
      throw new CheckpointError(file, 'malformed ShapedArray', p);
    }
    const dtype = shaped[1] as CheckpointDType;
    itemSize(dtype, file, p);
    const shards = info[2].map((s) => asInt(s, file, 'shard number', p));
    for (const s of shards) {
      if (s < 0 || s >= shardCount) throw new CheckpointError(file, `shard ${s} out of range [0, ${shardCount})`, p);
    }
    leaves.push({number: leaves.length, path, shape: asShape(shaped[0], file, p), dtype, shards});
  };
  await walk(top.get('index') as MsgValue, []);
  if (version === V1_VERSION) {
    // V1 stores keys in code-point order at every level; a different order means a foreign writer.
    for (let i = 1; i < leaves.length; i++) {
      if (comparePaths(leaves[i - 1].path, leaves[i].path) >= 0) {
        throw new CheckpointError(file, `V1 index keys are not in sorted order (${leaves[i - 1].path.join('/')} before ${leaves[i].path.join('/')})`);
      }
    }
  }
  return {version: version as string | null, shardCount, leaves};
}

function comparePaths(a: string[], b: string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return a.length - b.length;
}

/** Options of {@link readPartitionedCheckpoint}. */
export interface ReadPartitionedOptions {
  /** Which leaves to read (by key path, given the whole index); default all. */
  select?: (path: string[], index: PartitionedIndex) => boolean;
}

/**
 * Reads a vmoe partitioned checkpoint: the index, then every shard holding a wanted leaf, each
 * chunk copied into its global slice (chunks of one array may lie in several shards). Shards are
 * read one at a time, by byte ranges, so files beyond 2 GiB are fine.
 * Throws {@link CheckpointError} naming the file for a missing or truncated shard, a chunk outside
 * its array, or an array that the chunks do not fully cover.
 *
 * @param prefix the checkpoint prefix (`workdir/ckpt_1000`, or a URL prefix)
 * @param open opens a file by its full name (`fileSource` in Node, `urlSource` in the browser)
 * @example
 * ```ts
 * const {arrays, index} = await readPartitionedCheckpoint('workdir/ckpt_1000', fileSource);
 * arrays.get('params/head/kernel')?.shape; // [768, 1000]
 * ```
 */
export async function readPartitionedCheckpoint(
  prefix: string,
  open: SourceOpener,
  options: ReadPartitionedOptions = {},
): Promise<{index: PartitionedIndex; arrays: CheckpointArrays}> {
  const indexSource = await open(`${prefix}.index`);
  let index: PartitionedIndex;
  try {
    index = await readPartitionedIndex(indexSource);
  } finally {
    await indexSource.close?.();
  }
  const wanted = index.leaves.filter((l) => options.select?.(l.path, index) ?? true);
  const byNumber = new Map(wanted.map((l) => [l.number, l]));
  const out = new Map<number, {array: CheckpointArray; covered: number; item: number}>();
  for (const l of wanted) {
    const item = itemSize(l.dtype, indexSource.name, l.path.join('/'));
    out.set(l.number, {array: {path: l.path.join('/'), shape: l.shape, dtype: l.dtype, bytes: new Uint8Array(sizeOf(l.shape) * item)}, covered: 0, item});
  }
  const shardsNeeded = [...new Set(wanted.flatMap((l) => l.shards))].sort((a, b) => a - b);
  for (const s of shardsNeeded) {
    const source = await open(shardName(prefix, s, index.shardCount));
    try {
      await readShard(source, byNumber, out);
    } finally {
      await source.close?.();
    }
  }
  const arrays: CheckpointArrays = new Map();
  for (const l of wanted) {
    const o = out.get(l.number)!;
    const n = sizeOf(l.shape);
    if (o.covered !== n) {
      throw new CheckpointError(`${prefix}.index`, `the shards hold ${o.covered} of the ${n} items of the array (shards ${l.shards.join(', ')})`, o.array.path);
    }
    arrays.set(o.array.path, o.array);
  }
  return {index, arrays};
}

async function readShard(
  source: ByteSource,
  byNumber: Map<number, IndexLeaf>,
  out: Map<number, {array: CheckpointArray; covered: number; item: number}>,
): Promise<void> {
  const file = source.name;
  const top = await decodeDocument(source, 0, undefined, {inlineLimit: 0, chunk: 1 << 16});
  if (!isMap(top) || top.get(SHARD_MARKER) !== true) {
    throw new CheckpointError(file, `not a vmoe data shard (no "${SHARD_MARKER}" marker)`);
  }
  for (const [key, chunks] of top) {
    if (key === SHARD_MARKER) continue;
    const num = typeof key === 'number' ? key : Number(key);
    const leaf = byNumber.get(num);
    if (!leaf) continue;
    const o = out.get(num)!;
    const p = o.array.path;
    if (!Array.isArray(chunks)) throw new CheckpointError(file, 'expected an array of chunks', p);
    for (const chunk of chunks) {
      if (!Array.isArray(chunk) || chunk.length !== 2 || !Array.isArray(chunk[0])) {
        throw new CheckpointError(file, 'malformed chunk (expected [subchunks, slice])', p);
      }
      const {starts, stops} = await decodeSliceNd(await expectExt(chunk[1], 6, file, p), file, p);
      const rank = leaf.shape.length;
      if (starts.length !== rank || starts.some((s, i) => s < 0 || stops[i] > leaf.shape[i] || s > stops[i])) {
        throw new CheckpointError(file, `chunk slice [${starts.map((s, i) => `${s}:${stops[i]}`).join(', ')}] outside shape [${leaf.shape.join(', ')}]`, p);
      }
      const count = sizeOf(starts.map((s, i) => stops[i] - s));
      const bytes = new Uint8Array(count * o.item);
      let filled = 0;
      for (const sub of chunk[0] as MsgValue[]) {
        const data = await decodeNdarray(sub as ExtRef, file, p);
        if (data.dtype !== leaf.dtype) throw new CheckpointError(file, `subchunk dtype ${data.dtype}, index says ${leaf.dtype}`, p);
        if (filled + data.bytes.length > bytes.length) throw new CheckpointError(file, 'subchunks hold more items than their slice', p);
        bytes.set(data.bytes, filled);
        filled += data.bytes.length;
      }
      if (filled !== bytes.length) throw new CheckpointError(file, `subchunks hold ${filled / o.item} items, the slice ${count}`, p);
      copySlice(o.array.bytes, leaf.shape, bytes, starts, stops, o.item);
      o.covered += count;
    }
  }
}

/**
 * Decodes an ext-1 (ndarray) or ext-3 (numpy scalar) value: `[shape, dtype name, data bytes]`.
 * Throws {@link CheckpointError} for another ext or a data length that disagrees with the shape.
 */
export async function decodeNdarray(v: MsgValue, file: string, path: string): Promise<CheckpointArray> {
  if (!isExt(v) || (v.type !== 1 && v.type !== 3)) {
    throw new CheckpointError(file, `expected an ndarray (msgpack ext 1 or 3), got ${isExt(v) ? `ext ${v.type}` : JSON.stringify(v)}`, path);
  }
  const payload = await decodeExt(v, {inlineLimit: 0});
  if (!Array.isArray(payload) || payload.length !== 3 || typeof payload[1] !== 'string' || !isBin(payload[2])) {
    throw new CheckpointError(file, 'malformed ndarray payload (expected [shape, dtype, data])', path);
  }
  const shape = asShape(payload[0], file, path);
  const dtype = payload[1] as CheckpointDType;
  const item = itemSize(dtype, file, path);
  const bin = payload[2];
  if (bin.length !== sizeOf(shape) * item) {
    throw new CheckpointError(file, `ndarray data has ${bin.length} bytes, shape [${shape.join(', ')}] of ${dtype} needs ${sizeOf(shape) * item}`, path);
  }
  return {path, shape, dtype, bytes: await readBin(bin)};
}
