/**
 * Checkpoint readers against files written by fixtures/generate.py (Python msgpack + numpy, the
 * writers of vmoe and flax re-implemented from the format description): leaf order, dtypes,
 * arrays cut across shards, train states, streaming sources, and typed errors on damaged files.
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  BufferedReader,
  CheckpointError,
  decodeValue,
  memorySource,
  readCheckpointParams,
  readPartitionedCheckpoint,
  readPartitionedIndex,
  toFloat32,
  urlSource,
  type ByteSource,
  type CheckpointArrays,
} from '../../src/vmoe/index';
import {fileSource} from '../../src/vmoe/node-source';
import {copyFixtureDir, fixture, MAIN_CHECKPOINTS, tmpDir} from './helpers';

async function readIndex(file: string) {
  const src = await fileSource(file);
  try {
    return await readPartitionedIndex(src);
  } finally {
    await src.close?.();
  }
}

const floats = (arrays: CheckpointArrays) => new Map([...arrays].map(([k, a]) => [k, {shape: a.shape, values: Array.from(toFloat32(a))}]));

describe('vmoe checkpoint readers', () => {
  it('number leaves in stored order: V1 sorts "10" before "2", legacy keeps the TrainState field order', async () => {
    const v1 = await readIndex(fixture('v1_train_state', 'ckpt.index'));
    expect(v1.version).toBe('20220622');
    const optKeys = [...new Set(v1.leaves.filter((l) => l.path[0] === 'opt_state').map((l) => l.path[1]))];
    // Slots 5 (an empty state) and 7 (None) hold no leaves.
    expect(optKeys).toEqual(['0', '1', '10', '2', '3', '4', '6', '8', '9']);
    expect(v1.leaves.map((l) => l.path[0])).toEqual([...v1.leaves.map((l) => l.path[0])].sort());
    // Data key "2" is the third leaf: opt_state/10/count, whose value the generator set to 10.
    expect(v1.leaves[2].path.join('/')).toBe('opt_state/10/count');
    const {arrays} = await readPartitionedCheckpoint(fixture('v1_train_state', 'ckpt'), fileSource, {select: (p) => p[0] !== 'params'});
    expect(Array.from(toFloat32(arrays.get('opt_state/10/count')!))).toEqual([10]);
    expect(arrays.get('opt_state/10/count')!.dtype).toBe('int32');
    expect(Array.from(toFloat32(arrays.get('rngs/gating')!))).toEqual([3, 4]);
    expect(arrays.get('rngs/gating')!.dtype).toBe('uint32');

    const legacy = await readIndex(fixture('legacy', 'ckpt.index'));
    expect(legacy.version).toBeNull();
    expect(legacy.leaves[0].path).toEqual(['step']);
    expect(legacy.leaves[1].path[0]).toBe('params');
    const first = legacy.leaves.findIndex((l) => l.path[0] === 'opt_state');
    expect(legacy.leaves[first].path.join('/')).toBe('opt_state/0/count');
    expect(legacy.leaves.slice(first).findIndex((l) => l.path[1] === '10')).toBeGreaterThan(legacy.leaves.slice(first).findIndex((l) => l.path[1] === '9'));
  });

  it('every format yields the same parameters, encoderblock_10 included, bfloat16 and float16 upcast exactly', async () => {
    const all = await Promise.all(MAIN_CHECKPOINTS.map((c) => readCheckpointParams(fixture(c), fileSource)));
    expect(all.map((r) => [r.format, r.version, r.trainState])).toEqual([
      ['partitioned', '20220622', false], ['partitioned', null, true], ['partitioned', '20220622', true],
      ['msgpack', null, false], ['npz', null, false],
    ]);
    const dtypes = new Set(all.flatMap((r) => [...r.arrays.values()].map((a) => a.dtype)));
    expect([...dtypes].sort()).toEqual(['bfloat16', 'float16', 'float32']);
    const base = floats(all[0].arrays);
    expect(base.has('Encoder/encoderblock_10/Moe/Router/dense/kernel')).toBe(true);
    expect(base.get('Encoder/encoderblock_10/Moe/Mlp/Dense_0/kernel')!.shape).toEqual([4, 8, 12]);
    for (const r of all.slice(1)) {
      const other = floats(r.arrays);
      expect([...other.keys()].sort()).toEqual([...base.keys()].sort());
      for (const [k, v] of base) expect(other.get(k)).toEqual(v);
    }
  });

  it('reads through small windows and over HTTP range requests the same as from a file', async () => {
    const bytes = new Uint8Array(fs.readFileSync(fixture('v1', 'ckpt.index')));
    const src = memorySource(bytes);
    const whole = await decodeValue(new BufferedReader(src));
    const windowed = await decodeValue(new BufferedReader(src, 0, 7));
    expect(windowed).toEqual(whole);
    let ranges = 0;
    const fakeFetch = (async (url: string, init?: {method?: string; headers?: Record<string, string>}) => {
      const file = url.replace('http://host/', '');
      if (!fs.existsSync(file)) return new Response(null, {status: 404});
      const body = new Uint8Array(fs.readFileSync(file));
      if (init?.method === 'HEAD') return new Response(null, {status: 200, headers: {'content-length': String(body.length)}});
      const m = /bytes=(\d+)-(\d+)/.exec(init?.headers?.Range ?? '');
      if (!m) return new Response(body, {status: 200});
      ranges++;
      return new Response(body.subarray(Number(m[1]), Number(m[2]) + 1), {status: 206});
    }) as unknown as typeof fetch;
    const open = async (name: string): Promise<ByteSource> => urlSource(`http://host/${name}`, fakeFetch);
    const overHttp = await readCheckpointParams(fixture('v1', 'ckpt'), open);
    const fromFile = await readCheckpointParams(fixture('v1', 'ckpt'), fileSource);
    expect(floats(overHttp.arrays)).toEqual(floats(fromFile.arrays));
    expect(ranges).toBeGreaterThan(3);
    await expect(readCheckpointParams(fixture('v1', 'nothing'), open)).rejects.toThrow(new CheckpointError(`http://host/${fixture('v1', 'nothing.index')}`, 'missing (HTTP 404)'));
  });

  it('a missing shard is a CheckpointError naming the shard file', async () => {
    const dir = copyFixtureDir('v1');
    const shard = path.join(dir, 'ckpt.data-00001-of-00003');
    fs.rmSync(shard);
    const err = await readCheckpointParams(path.join(dir, 'ckpt'), fileSource).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as CheckpointError).file).toBe(shard);
    expect((err as Error).message).toBe(`${shard}: missing: no such file`);
  });

  it('a truncated shard, index, msgpack or npz file is a CheckpointError naming the file', async () => {
    const dir = copyFixtureDir('v1');
    const shard = path.join(dir, 'ckpt.data-00002-of-00003');
    fs.truncateSync(shard, fs.statSync(shard).size - 100);
    const e1 = await readCheckpointParams(path.join(dir, 'ckpt'), fileSource).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(CheckpointError);
    expect((e1 as CheckpointError).file).toBe(shard);
    expect((e1 as Error).message).toMatch(/truncated/);

    const index = path.join(dir, 'ckpt.index');
    fs.truncateSync(index, 200);
    const e2 = await readCheckpointParams(path.join(dir, 'ckpt'), fileSource).catch((e: unknown) => e);
    expect((e2 as CheckpointError).file).toBe(index);

    const tmp = tmpDir();
    for (const name of ['params.msgpack', 'params.npz']) {
      const file = path.join(tmp, name);
      const bytes = fs.readFileSync(fixture(name));
      fs.writeFileSync(file, bytes.subarray(0, bytes.length - 50));
      const e = await readCheckpointParams(file, fileSource).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(CheckpointError);
      expect((e as CheckpointError).file).toBe(file);
    }
  });

  it('chunks that leave part of an array uncovered are a CheckpointError naming the parameter', async () => {
    // Shard 0 of the V1 fixture alone: every array cut across shards is incomplete.
    const only0 = async (name: string): Promise<ByteSource> => {
      if (name.endsWith('.index') || name.endsWith('data-00000-of-00003')) return fileSource(name);
      return memorySource(new Uint8Array([0x81, 0xbe, ...new TextEncoder().encode('__msgpack_array_chunk_a87ca2__'), 0xc3]), name);
    };
    const e = await readCheckpointParams(fixture('v1', 'ckpt'), only0).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CheckpointError);
    expect((e as CheckpointError).path).not.toBeNull();
    expect((e as Error).message).toMatch(/the shards hold \d+ of the \d+ items/);
  });
});
