import {main} from '../../src/cli/main';

/** Runs the `tfjs-moe` CLI in-process with console output captured; returns its exit code and output. */
export async function runCli(args: string[]): Promise<{code: number; stderr: string; stdout: string}> {
  const err = jest.spyOn(console, 'error').mockImplementation(() => undefined);
  const out = jest.spyOn(console, 'log').mockImplementation(() => undefined);
  try {
    const code = await main(args);
    return {code, stderr: err.mock.calls.map((c) => c.join(' ')).join('\n'), stdout: out.mock.calls.map((c) => c.join(' ')).join('\n')};
  } finally {
    err.mockRestore();
    out.mockRestore();
  }
}
