/**
 * Trains a model for the page with the real `tfjs-moe train` command line (engineer F's CLI, run
 * from its TypeScript sources through tsx), on a small slice of the embedded digits so that it
 * finishes in seconds: the path a user takes (`tfjs-moe train --out <dir>`, then serve
 * `<dir>/model`). Used by the end-to-end test and by `npm run model -- --cli`.
 */
import {spawn} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import {loadDigits, splitDataset} from '@tfjs-moe/training';

const CLI = path.resolve(__dirname, '../../../packages/training/src/cli/main.ts');

/** Options of {@link trainWithCli}. */
export interface CliTrainOptions {
  /** Output folder of the run; the model lands in `<out>/model/`. */
  out: string;
  /** `--router` (default `'sparse-ot'`). */
  router?: string;
  /** Training steps (default 4). */
  steps?: number;
  /** Examples of the digits' training split to train on (default 160, all classes equally). */
  examples?: number;
  /** `--eval-capacity-factor` (default: the CLI's, its training capacity factor). */
  evalCapacityFactor?: number;
  /** `--seed` (default 0). */
  seed?: number;
  /** `--backend` (default `'wasm'`). */
  backend?: string;
  /** Kill the CLI after this many ms (default 240000). */
  timeoutMs?: number;
}

/**
 * Writes `count` digits of the training split (`splitDataset(loadDigits(), {seed: 0})`), evenly
 * spaced so that every class is present, as the CLI's `.json` data format
 * (`{images: [n][28][28], labels: [n]}`).
 */
export function writeDigitsJson(file: string, count: number): void {
  const {train} = splitDataset(loadDigits(), {seed: 0});
  const pixels = train.height * train.width * train.channels;
  const images: number[][][] = [];
  const labels: number[] = [];
  const n = Math.min(count, train.labels.length);
  for (let i = 0; i < n; i++) {
    const j = Math.floor((i * train.labels.length) / n);
    const flat = train.images.subarray(j * pixels, (j + 1) * pixels);
    images.push(Array.from({length: train.height}, (_, r) =>
      Array.from(flat.subarray(r * train.width, (r + 1) * train.width), (v) => Math.round(v * 1000) / 1000)));
    labels.push(train.labels[j]);
  }
  fs.mkdirSync(path.dirname(file), {recursive: true});
  fs.writeFileSync(file, JSON.stringify({images, labels}));
}

/**
 * Runs `tfjs-moe train` in a child process and returns the folder of the saved model
 * (`<out>/model`, with model.json and weights.bin). Rejects with the CLI's output if it fails.
 *
 * @example
 * ```ts
 * const dir = await trainWithCli({out: '/tmp/run', router: 'topk', steps: 4});
 * // dir === '/tmp/run/model'
 * ```
 */
export async function trainWithCli(options: CliTrainOptions): Promise<string> {
  const out = path.resolve(options.out);
  fs.rmSync(out, {recursive: true, force: true});
  const data = path.join(out, 'digits.json');
  writeDigitsJson(data, options.examples ?? 160);
  const steps = options.steps ?? 4;
  const args = ['-r', require.resolve('tsx/cjs'), CLI, 'train',
    '--router', options.router ?? 'sparse-ot', '--data', data, '--steps', String(steps),
    '--batch-size', '16', '--eval-every', String(steps), '--checkpoint-every', String(steps),
    '--seed', String(options.seed ?? 0), '--backend', options.backend ?? 'wasm',
    '--out', out, '--overwrite', '--no-report', '--quiet', // out holds the data file written above
    ...(options.evalCapacityFactor !== undefined ? ['--eval-capacity-factor', String(options.evalCapacityFactor)] : [])];
  const output: string[] = [];
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, args, {stdio: ['ignore', 'pipe', 'pipe']});
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 240000);
    child.stdout.on('data', (d) => output.push(String(d)));
    child.stderr.on('data', (d) => output.push(String(d)));
    child.on('error', reject);
    child.on('close', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  const model = path.join(out, 'model');
  if (code !== 0 || !fs.existsSync(path.join(model, 'model.json'))) {
    throw new Error(`tfjs-moe train exited with ${code}:\n${output.join('').slice(-4000)}`);
  }
  return model;
}
