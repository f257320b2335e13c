/**
 * One entry point over the three checkpoint formats: picks the reader by the location's name and
 * returns the parameter arrays (a train state yields its `params`).
 */
import {CheckpointArrays} from './arrays';
import {SourceOpener} from './byte-source';
import {readPartitionedCheckpoint} from './partitioned';
import {readFlaxMsgpack, readNpz} from './single-file';

/** The formats {@link readCheckpointParams} reads. */
export type CheckpointFormat = 'partitioned' | 'msgpack' | 'npz';

/**
 * The format of a checkpoint location: `.npz` and `.msgpack` files by their suffix, anything else
 * is the prefix of a partitioned checkpoint (`<prefix>.index` + shards). A location ending in
 * `.index` is taken as that prefix's index.
 *
 * @example
 * ```ts
 * checkpointFormat('ckpt/ViT-B_16.npz'); // 'npz'
 * checkpointFormat('workdir/ckpt_1000'); // 'partitioned'
 * ```
 */
export function checkpointFormat(location: string): CheckpointFormat {
  if (/\.npz$/i.test(location)) return 'npz';
  if (/\.msgpack$/i.test(location)) return 'msgpack';
  return 'partitioned';
}

/** What {@link readCheckpointParams} returns. */
export interface CheckpointParams {
  format: CheckpointFormat;
  /** Partitioned checkpoints: `'20220622'` (V1) or null (legacy); null for other formats. */
  version: string | null;
  /** True when the file held a train state (`params` beside `opt_state`, `step`, ...). */
  trainState: boolean;
  /** The parameters by `/`-joined path relative to the params tree (`Encoder/...`, `head/kernel`). */
  arrays: CheckpointArrays;
}

const isTrainStateTop = (keys: Iterable<string>) => {
  const set = new Set(keys);
  return set.has('params') && !set.has('embedding') && !set.has('Transformer') && !set.has('Encoder');
};

function stripParams(arrays: CheckpointArrays): CheckpointArrays {
  const out: CheckpointArrays = new Map();
  for (const [k, v] of arrays) {
    if (k.startsWith('params/')) {
      const path = k.slice('params/'.length);
      out.set(path, {...v, path});
    }
  }
  return out;
}

/**
 * Reads the parameters of a vmoe / flax / vit_jax checkpoint.
 *
 * @param location a partitioned checkpoint's prefix, a `.msgpack` file or a `.npz` file (paths
 *   in Node, URLs in the browser, as `open` understands them)
 * @param open opens one file by name (`fileSource` in Node, `urlSource` in the browser)
 * @returns the parameter arrays, with the format and whether it was a train state
 * @throws CheckpointError naming the file for a missing, truncated or malformed file
 * @example
 * ```ts
 * const {arrays, trainState} = await readCheckpointParams('workdir/ckpt_1000', fileSource);
 * ```
 */
export async function readCheckpointParams(location: string, open: SourceOpener): Promise<CheckpointParams> {
  const format = checkpointFormat(location);
  if (format === 'partitioned') {
    const prefix = location.replace(/\.index$/, '');
    let trainState: boolean | null = null;
    const {index, arrays} = await readPartitionedCheckpoint(prefix, open, {
      select: (path, idx) => {
        trainState ??= isTrainStateTop(idx.leaves.map((l) => l.path[0]));
        return !trainState || path[0] === 'params';
      },
    });
    trainState ??= false;
    return {format, version: index.version, trainState, arrays: trainState ? stripParams(arrays) : arrays};
  }
  const source = await open(location);
  try {
    const arrays = format === 'npz' ? await readNpz(source) : await readFlaxMsgpack(source);
    const trainState = isTrainStateTop([...arrays.keys()].map((k) => k.split('/')[0]));
    return {format, version: null, trainState, arrays: trainState ? stripParams(arrays) : arrays};
  } finally {
    await source.close?.();
  }
}
