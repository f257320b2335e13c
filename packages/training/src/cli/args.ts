/**
 * Command-line argument helpers shared by the `tfjs-moe` commands.
 */

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
