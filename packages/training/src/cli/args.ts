/**
 * Command-line argument helpers shared by the `tfjs-moe` commands, and their one way of reporting
 * a failed command.
 */
import {TfjsMoeError} from '@tfjs-moe/router';

/**
 * Joins a string option and a negative-number value (`--epochs -1` -> `--epochs=-1`), which
 * `util.parseArgs` would otherwise refuse as an "ambiguous" argument without saying the value; the
 * joined value then reaches the option's own check, whose error names the flag and echoes it.
 *
 * @example
 * ```ts
 * joinNegativeValues(['--lr', '-1'], {lr: {type: 'string'}}); // ['--lr=-1']
 * ```
 */
export function joinNegativeValues(argv: string[], options: Record<string, {type: string}>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = argv[i + 1];
    const flag = /^--([^=]+)$/.exec(a)?.[1];
    if (flag !== undefined && options[flag]?.type === 'string' && next !== undefined && /^-(\d|\.\d|inf)/i.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

/**
 * Reports a failed command on stderr in one line and returns the exit code 1: a library error
 * (`TfjsMoeError`) by its message (a leading `<command>: ` context is said once), a missing or
 * unreadable path by what is wrong with it, anything else by its name and first line; the stack
 * trace only with `--verbose`.
 *
 * @example
 * ```ts
 * try { await trainCommand(values); } catch (e) { return reportCommandError(e, 'train', values.verbose === true); }
 * ```
 */
export function reportCommandError(e: unknown, command: string, verbose: boolean): 1 {
  const err = e as NodeJS.ErrnoException;
  if (verbose) console.error(err);
  if (e instanceof TfjsMoeError) {
    console.error(`tfjs-moe ${command}: ${err.message.replace(new RegExp(`^${command}: `), '')}`);
  } else if (err?.code === 'ENOENT' || err?.code === 'EACCES' || err?.code === 'EISDIR' || err?.code === 'ENOTDIR') {
    console.error(`tfjs-moe ${command}: ${err.code === 'ENOENT' ? 'no such file or folder' : err.code === 'EACCES' ? 'permission denied' : 'wrong kind of path'}: ${err.path ?? err.message}`);
  } else {
    const first = String(err?.message ?? err).split('\n')[0];
    console.error(`tfjs-moe ${command}: ${err?.name ?? 'Error'}: ${first}${verbose ? '' : ' (run with --verbose for the stack trace)'}`);
  }
  return 1;
}
