/**
 * The Node file source for the checkpoint readers (kept apart so that the readers stay
 * browser-safe): reads byte ranges through a file handle, so files beyond 2 GiB are fine.
 */
import {promises as fsp} from 'fs';
import {ByteSource, CheckpointError} from './byte-source';

/**
 * Opens a file for range reads. A missing file or a folder is a {@link CheckpointError} naming it.
 *
 * @example
 * ```ts
 * const src = await fileSource('workdir/ckpt_1000.data-00000-of-00004');
 * const head = await src.read(0, 16);
 * await src.close?.();
 * ```
 */
export async function fileSource(path: string): Promise<ByteSource> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(path, 'r');
  } catch (e) {
    const code = (e as {code?: string}).code;
    throw new CheckpointError(path, code === 'ENOENT' ? 'missing: no such file' : `cannot open (${String(e)})`);
  }
  const stat = await handle.stat();
  if (stat.isDirectory()) {
    await handle.close();
    throw new CheckpointError(path, 'a folder, not a checkpoint file');
  }
  const size = stat.size;
  return {
    name: path,
    size: async () => size,
    read: async (offset, length) => {
      if (offset < 0 || length < 0 || offset + length > size) {
        throw new CheckpointError(path, `truncated: needs bytes [${offset}, ${offset + length}) but the file has ${size} bytes`);
      }
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const {bytesRead} = await handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new CheckpointError(path, `short read at byte ${offset + done}`);
        done += bytesRead;
      }
      return out;
    },
    close: async () => {
      await handle.close();
    },
  };
}
