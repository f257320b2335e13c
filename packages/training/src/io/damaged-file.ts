/**
 * Files read back from disk that are missing, truncated or corrupt: one typed error naming the
 * file and what is wrong ({@link DamagedFileError}), and the JSON reader that raises it.
 */
import {InvalidArgumentError} from '@tfjs-moe/router';
import {nodeFileSystem, type FileSystem} from './atomic-write';

/**
 * A file on disk is missing, truncated or not what it should be (corrupt JSON, a weights file
 * shorter than its manifest, ...). `file` is its path; the message names it and says what is
 * wrong, in one line.
 *
 * Message: `Expected <file> to be <what it should be>, but got <what it is>.`
 *
 * @example
 * ```ts
 * try { readArtifacts('runs/a/model'); } catch (e) { if (e instanceof DamagedFileError) console.error(e.file); }
 * ```
 */
export class DamagedFileError extends InvalidArgumentError {
  /** The damaged file. */
  readonly file: string;
  constructor(file: string, expected: string, got: unknown) {
    super(file, expected, got);
    this.file = file;
  }
}

/**
 * Reads and parses a JSON file, with a {@link DamagedFileError} naming the file when it is
 * missing, empty, truncated or not JSON, or (with `check`) when `check` returns an error text.
 *
 * @example
 * ```ts
 * const pointer = readJsonFile<{checkpoint: string}>('runs/a/checkpoints/latest.json', 'checkpoint pointer');
 * ```
 */
export function readJsonFile<T>(file: string, what: string, fs: FileSystem = nodeFileSystem, check?: (json: T) => string | undefined): T {
  if (!fs.existsSync(file)) throw new DamagedFileError(file, `an existing ${what} file`, 'no such file');
  let json: T;
  try {
    json = JSON.parse(fs.readFileSync(file).toString('utf8')) as T;
  } catch (e) {
    throw new DamagedFileError(file, `a ${what} in JSON`, `unreadable JSON (${(e as Error).message})`);
  }
  const problem = json === null || typeof json !== 'object' ? 'not a JSON object' : check?.(json);
  if (problem !== undefined) throw new DamagedFileError(file, `a ${what}`, problem);
  return json;
}
