/**
 * Ownership of a run folder: one process writes into it at a time (a lock file), a fresh run
 * does not silently mix with an old one (refused unless asked to overwrite or resume), and what
 * killed writes left behind is cleaned up before the run starts.
 *
 * The lock is `out/.lock`, created exclusively (`O_EXCL`) and holding `{pid, host, started}`.
 * A lock whose process is gone (same host, no such pid) is stale and taken over at once; this is
 * why a PID lock is used rather than an mtime-refreshed lock (proper-lockfile): training runs
 * long synchronous kernels that would starve a refresh timer, and a run killed with `kill -9`
 * must be resumable immediately, not after a staleness timeout.
 */
import * as nodeFs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {ConfigError, InvalidArgumentError} from '@tfjs-moe/router';
import {cleanupTempFiles} from './file-io';

/** Files and folders a run writes into its folder (what `overwrite` replaces). */
export const RUN_OUTPUTS = ['run.json', 'summary.json', 'log.jsonl', 'report.html', 'model', 'checkpoints'] as const;

/** What a lock file holds. */
export interface LockInfo {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  started: string;
}

/**
 * Another process holds the run folder's lock. `holder` says which.
 *
 * @example
 * ```ts
 * try { lockRunFolder('runs/a'); } catch (e) { if (e instanceof RunFolderBusyError) console.error(e.holder.pid); }
 * ```
 */
export class RunFolderBusyError extends ConfigError {
  readonly holder: LockInfo;
  constructor(dir: string, holder: LockInfo) {
    super('out', 'a run folder no other process is writing', dir);
    this.holder = holder;
    this.message =
      `${dir} is in use by process ${holder.pid} on ${holder.host} (since ${holder.started}); ` +
      `wait for that run to finish, or remove ${path.join(dir, '.lock')} if that process is gone.`;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the lock of run folder `dir` (created if missing) and returns its release function.
 * A stale lock (its process gone, same host) is taken over.
 *
 * @throws {@link RunFolderBusyError} when a live process holds the lock
 * @throws {InvalidArgumentError} when `dir` or one of its parents is a file
 *
 * @example
 * ```ts
 * const release = lockRunFolder('runs/a');
 * try { ... } finally { release(); }
 * ```
 */
export function lockRunFolder(dir: string): () => void {
  if (nodeFs.existsSync(dir) && !nodeFs.statSync(dir).isDirectory()) {
    throw new InvalidArgumentError('out', 'a folder (or a path where one can be created)', `${dir} (an existing file)`);
  }
  // A parent that is a file (runs/log.csv/a) would fail in mkdir with a bare ENOTDIR.
  for (let p = path.dirname(path.resolve(dir)); p !== path.dirname(p); p = path.dirname(p)) {
    if (nodeFs.existsSync(p) && !nodeFs.statSync(p).isDirectory()) {
      throw new InvalidArgumentError('out', 'a folder (or a path where one can be created)', `${dir} (${p} is a file, not a folder)`);
    }
  }
  nodeFs.mkdirSync(dir, {recursive: true});
  const file = path.join(dir, '.lock');
  const me: LockInfo = {pid: process.pid, host: os.hostname(), started: new Date().toISOString()};
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      nodeFs.writeFileSync(file, JSON.stringify(me), {flag: 'wx'});
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        process.removeListener('exit', release);
        try {
          const held = JSON.parse(nodeFs.readFileSync(file, 'utf8')) as LockInfo;
          if (held.pid === me.pid && held.started === me.started) nodeFs.rmSync(file, {force: true});
        } catch {
          // Already gone.
        }
      };
      process.on('exit', release);
      return release;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let holder: LockInfo | undefined;
    try {
      holder = JSON.parse(nodeFs.readFileSync(file, 'utf8')) as LockInfo;
    } catch {
      // An empty or torn lock file: its writer died while creating it.
    }
    if (holder && Number.isInteger(holder.pid) && (holder.host !== me.host || alive(holder.pid))) throw new RunFolderBusyError(dir, holder);
    nodeFs.rmSync(file, {force: true});
  }
  throw new RunFolderBusyError(dir, {pid: -1, host: me.host, started: 'unknown'});
}

/** Options of {@link prepareRunFolder}. */
export interface PrepareRunFolderOptions {
  /** The run continues the one in the folder. */
  resume?: boolean;
  /** A fresh run replaces the outputs of an earlier one ({@link RUN_OUTPUTS}). */
  overwrite?: boolean;
}

/**
 * Makes `dir` ready for a run and locks it: takes the lock ({@link lockRunFolder}), removes what
 * killed writes left (temporary files and folders), and for a fresh run refuses a folder that
 * already holds files unless `overwrite` (then the earlier run's outputs are removed; other
 * files stay). Returns the lock's release function and what was cleaned up.
 *
 * @throws {ConfigError} for a fresh run into a non-empty folder without `overwrite`, and for
 *   `resume` together with `overwrite`
 * @throws {@link RunFolderBusyError} when another process holds the folder
 *
 * @example
 * ```ts
 * const {release} = prepareRunFolder('runs/a', {overwrite: true});
 * ```
 */
export function prepareRunFolder(dir: string, options: PrepareRunFolderOptions = {}): {release: () => void; cleaned: string[]} {
  if (options.resume && options.overwrite) throw new ConfigError('overwrite', 'not combined with resume (resume continues the run, overwrite replaces it)', true);
  const release = lockRunFolder(dir);
  try {
    const cleaned = [dir, path.join(dir, 'checkpoints')].flatMap((d) => cleanupTempFiles(d).map((f) => path.join(d, f)));
    if (!options.resume) {
      const entries = nodeFs.readdirSync(dir).filter((e) => e !== '.lock');
      if (entries.length > 0 && !options.overwrite) {
        const e = new ConfigError('out', 'an empty or new folder for a fresh run', dir);
        e.message = `${dir} already holds ${entries.slice(0, 4).join(', ')}${entries.length > 4 ? ', ...' : ''}; pass --resume to continue that run or --overwrite to replace it (or choose another --out).`;
        throw e;
      }
      if (options.overwrite) for (const f of RUN_OUTPUTS) nodeFs.rmSync(path.join(dir, f), {recursive: true, force: true});
    }
    return {release, cleaned};
  } catch (e) {
    release();
    throw e;
  }
}
