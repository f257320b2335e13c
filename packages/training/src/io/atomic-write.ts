/**
 * Atomic writes on the local disk: a file or a whole folder is written to a temporary sibling,
 * flushed, and renamed into place, so readers (and a run resumed after `kill -9`) see the old
 * version or the new one, never a mix; plus the clean-up of what killed writes left behind, and
 * the file-system seam ({@link FileSystem}) through which tests make writes fail.
 */
import * as nodeFs from 'fs';
import * as path from 'path';
import {TfjsMoeError} from '@tfjs-moe/router';

/**
 * The file-system calls this module makes. Tests substitute a version whose writes fail to check
 * that a failed write leaves the previous files intact.
 */
export interface FileSystem {
  writeFileSync(file: string, data: string | Uint8Array): void;
  appendFileSync(file: string, data: string): void;
  readFileSync(file: string): Buffer;
  renameSync(from: string, to: string): void;
  mkdirSync(dir: string, options: {recursive: true}): unknown;
  rmSync(target: string, options: {recursive: true; force: true}): void;
  existsSync(target: string): boolean;
  readdirSync(dir: string): string[];
  /** Flushes a file or folder to disk (fsync); a no-op where unsupported. */
  fsync?(target: string): void;
}

/**
 * The real file system (Node's `fs`), with fsync of files and folders.
 *
 * @example
 * ```ts
 * atomicWriteFile('out/a.txt', 'hello', nodeFileSystem);
 * ```
 */
export const nodeFileSystem: FileSystem = {
  writeFileSync: (f, d) => nodeFs.writeFileSync(f, d),
  appendFileSync: (f, d) => nodeFs.appendFileSync(f, d),
  readFileSync: (f) => nodeFs.readFileSync(f),
  renameSync: (a, b) => nodeFs.renameSync(a, b),
  mkdirSync: (d, o) => nodeFs.mkdirSync(d, o),
  rmSync: (t, o) => nodeFs.rmSync(t, o),
  existsSync: (t) => nodeFs.existsSync(t),
  readdirSync: (d) => nodeFs.readdirSync(d),
  fsync: (t) => {
    let fd: number | undefined;
    try {
      fd = nodeFs.openSync(t, 'r');
      nodeFs.fsyncSync(fd);
    } catch {
      // Some file systems refuse fsync on folders; the rename is still atomic.
    } finally {
      if (fd !== undefined) nodeFs.closeSync(fd);
    }
  },
};

/**
 * A write to disk failed; the previous file or folder at `target` is left as it was.
 *
 * @example
 * ```ts
 * try { atomicWriteFile('/read-only/x', 'y'); } catch (e) { if (e instanceof WriteError) console.error(e.target); }
 * ```
 */
export class WriteError extends TfjsMoeError {
  /** The path that was to be written. */
  readonly target: string;
  constructor(target: string, cause: unknown) {
    super(`Could not write ${target}: ${(cause as Error)?.message ?? String(cause)}. The previous version, if any, is intact.`);
    this.target = target;
  }
}

function tempName(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${Date.now().toString(36)}`);
}

/**
 * Writes `data` to `file` atomically: to a temporary file in the same folder, flushed, then
 * renamed over `file` (an atomic replace on POSIX). Readers see the old or the new content,
 * never a mix; a failure leaves the old file and removes the temporary one.
 *
 * @example
 * ```ts
 * atomicWriteFile('out/latest.json', JSON.stringify({step: 100}));
 * ```
 */
export function atomicWriteFile(file: string, data: string | Uint8Array, fs: FileSystem = nodeFileSystem): void {
  const tmp = tempName(file);
  try {
    fs.mkdirSync(path.dirname(file), {recursive: true});
    fs.writeFileSync(tmp, data);
    fs.fsync?.(tmp);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, {recursive: true, force: true});
    throw new WriteError(file, e);
  }
}

/**
 * Writes a folder of files atomically: all files go into a temporary sibling folder, which is
 * then renamed to `dir`. An existing `dir` is first renamed aside and removed only after the new
 * folder is in place, so a failure at any point leaves the previous folder (or, in the instant
 * between the two renames, its renamed copy `.<name>.old-*`) intact.
 *
 * @example
 * ```ts
 * atomicWriteFolder('out/model', {'model.json': json, 'weights.bin': bytes});
 * ```
 */
export function atomicWriteFolder(dir: string, files: Record<string, string | Uint8Array>, fs: FileSystem = nodeFileSystem): void {
  const tmp = tempName(dir);
  try {
    fs.mkdirSync(tmp, {recursive: true});
    for (const [name, data] of Object.entries(files)) {
      fs.writeFileSync(path.join(tmp, name), data);
      fs.fsync?.(path.join(tmp, name));
    }
    fs.fsync?.(tmp);
  } catch (e) {
    fs.rmSync(tmp, {recursive: true, force: true});
    throw new WriteError(dir, e);
  }
  const old = `${tempName(dir)}.old`;
  let movedOld = false;
  try {
    if (fs.existsSync(dir)) {
      fs.renameSync(dir, old);
      movedOld = true;
    }
    fs.renameSync(tmp, dir);
  } catch (e) {
    if (movedOld && !fs.existsSync(dir)) fs.renameSync(old, dir);
    fs.rmSync(tmp, {recursive: true, force: true});
    throw new WriteError(dir, e);
  }
  if (movedOld) fs.rmSync(old, {recursive: true, force: true});
  fs.fsync?.(path.dirname(dir));
}

/**
 * Removes what killed writes left in `dir` (not recursive): temporary files and folders
 * `.<name>.tmp-*` of {@link atomicWriteFile} / {@link atomicWriteFolder}; a folder renamed aside
 * (`.<name>.tmp-*.old`) whose replacement never arrived is renamed back first. Call it only while
 * no other process writes into `dir` (e.g. holding the run folder's lock). Returns what it removed.
 *
 * @example
 * ```ts
 * cleanupTempFiles('runs/a/checkpoints'); // ['.ckpt-00000050.tmp-4242-lx2k9']
 * ```
 */
export function cleanupTempFiles(dir: string, fs: FileSystem = nodeFileSystem): string[] {
  if (!fs.existsSync(dir)) return [];
  const removed: string[] = [];
  const entries = fs.readdirSync(dir);
  for (const e of entries) {
    const m = /^\.(.+)\.tmp-[^.]+\.old$/.exec(e);
    if (m && !fs.existsSync(path.join(dir, m[1]))) fs.renameSync(path.join(dir, e), path.join(dir, m[1]));
  }
  for (const e of fs.readdirSync(dir)) {
    if (/^\..+\.tmp-/.test(e)) {
      fs.rmSync(path.join(dir, e), {recursive: true, force: true});
      removed.push(e);
    }
  }
  return removed;
}
