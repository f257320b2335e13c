#!/usr/bin/env node
/**
 * The `tfjs-moe` command line: `train`, `eval`, `compare`.
 *
 * @example
 * ```sh
 * npx tfjs-moe train                       # V-MoE + sparse-OT router on full MNIST
 * npx tfjs-moe train --router topk --experts 8 --capacity-factor 1.25 --out runs/topk
 * npx tfjs-moe train --out runs/topk --resume
 * npx tfjs-moe eval --model runs/topk/model
 * npx tfjs-moe compare --seeds 0,1,2 --steps 200
 * ```
 */
import * as path from 'path';
import {parseArgs} from 'util';
import * as tf from '@tensorflow/tfjs';
import '@tfjs-moe/models';
import {InvalidArgumentError, TfjsMoeError} from '@tfjs-moe/router';
import {BACKEND_NAMES, setupBackend, type BackendRequest} from '../backend';
import {compareRouters, DEFAULT_VARIANTS, parseVariants} from '../compare';
import {loadSplits} from '../data/load';
import {TRAINING_DEFAULTS} from '../defaults';
import {fileHandler} from '../io/file-io';
import {formatBalance} from '../metrics/load-balance';
import {ROUTER_CHOICES, GRADIENT_CHOICES, type GradientChoice, type RouterChoice} from '../model-factory';
import {runTraining, summaryLines, type RunOptions} from '../run';
import {evaluate} from '../train/evaluate';
import {VMOE_COMMANDS, vmoeCommand} from './vmoe';

const USAGE = `Usage: tfjs-moe <command> [options]

Commands:
  train     Train a V-MoE (or the dense ViT) and write the model, a JSONL log and an HTML report.
  eval      Evaluate a saved model on held-out data: accuracy and load balance.
  compare   Train several routers at the same budget and write a comparison table.
  import-vmoe / export-vmoe   Convert google-research/vmoe checkpoints (tfjs-moe import-vmoe --help).

train options:
  --router <name>            ${ROUTER_CHOICES.join('|')} (default sparse-ot)
  --gradient <mode>          ${GRADIENT_CHOICES.join('|')} (sparse-ot only; default softmax)
  --experts <n>              experts per MoE block (default 4)
  --capacity-factor <x>      expert capacity factor in training, > 0 (default 1.25)
  --eval-capacity-factor <x> capacity factor at evaluation (default: --capacity-factor)
  --group-size <n>           tokens per routing group (default: one image's tokens)
  --epochs <n>               epochs (default ${TRAINING_DEFAULTS.epochs})    --steps <n>    steps (overrides --epochs)
  --batch-size <n>           default ${TRAINING_DEFAULTS.batchSize}             --lr <x>       peak learning rate (default ${TRAINING_DEFAULTS.learningRate})
  --data <spec>              mnist (default: 60,000 train, official 10,000 test) | fashion-mnist | idx:<folder of IDX files>
                             | digits (10,000 embedded) | synthetic | <folder of class sub-folders of PNGs> | <file.npy|file.json>
  --preset <name>            mnist-tiny (default) | mnist-small | cifar-tiny
  --backend <name>           ${BACKEND_NAMES.join('|')} (default auto: tfjs-node, then wasm, then cpu)
  --out <dir>                output folder (default runs/<router>)
  --resume                   continue the run in --out from its newest checkpoint
  --seed <n>                 seed of split, initialization, data order and randomness (default 0)
  --checkpoint-every <n>     default 50              --eval-every <n>  default: 4 times per run
  --no-report                skip report.html        --quiet        no progress bar

eval options:
  --model <dir>              a folder written by train (model.json + weights.bin), e.g. runs/sparse-ot/model
  --data, --seed, --backend, --batch-size as for train (the test set of --data: official, or the held-out split with --seed)

compare options:
  --routers <list>           default ${DEFAULT_VARIANTS}
  --seeds <list>             default 0,1,2
  --out <dir>                default runs/compare; and every train option except --router/--gradient
`;

const OPTIONS = {
  router: {type: 'string'},
  gradient: {type: 'string'},
  experts: {type: 'string'},
  'capacity-factor': {type: 'string'},
  'eval-capacity-factor': {type: 'string'},
  'group-size': {type: 'string'},
  epochs: {type: 'string'},
  steps: {type: 'string'},
  'batch-size': {type: 'string'},
  lr: {type: 'string'},
  data: {type: 'string'},
  preset: {type: 'string'},
  backend: {type: 'string'},
  out: {type: 'string'},
  resume: {type: 'boolean'},
  seed: {type: 'string'},
  'checkpoint-every': {type: 'string'},
  'eval-every': {type: 'string'},
  'no-report': {type: 'boolean'},
  quiet: {type: 'boolean'},
  model: {type: 'string'},
  routers: {type: 'string'},
  seeds: {type: 'string'},
  help: {type: 'boolean', short: 'h'},
} as const;

type Values = Record<string, string | boolean | undefined>;

function num(values: Values, flag: string, integer = false): number | undefined {
  const raw = values[flag];
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (raw === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new InvalidArgumentError(`--${flag}`, integer ? 'an integer' : 'a number', raw);
  }
  return v;
}

function backendOf(values: Values): BackendRequest {
  const b = (values.backend as string | undefined) ?? 'auto';
  if (!(BACKEND_NAMES as readonly string[]).includes(b)) {
    throw new InvalidArgumentError('--backend', `one of ${BACKEND_NAMES.map((n) => `'${n}'`).join(', ')}`, b);
  }
  return b as BackendRequest;
}

function runOptions(values: Values): RunOptions {
  return {
    router: values.router as RouterChoice | undefined,
    gradient: values.gradient as GradientChoice | undefined,
    experts: num(values, 'experts', true),
    capacityFactor: num(values, 'capacity-factor'),
    evalCapacityFactor: num(values, 'eval-capacity-factor'),
    groupSize: num(values, 'group-size', true),
    epochs: num(values, 'epochs'),
    steps: num(values, 'steps', true),
    batchSize: num(values, 'batch-size', true),
    learningRate: num(values, 'lr'),
    data: values.data as string | undefined,
    preset: values.preset as RunOptions['preset'],
    backend: backendOf(values),
    out: values.out as string | undefined,
    resume: values.resume === true,
    seed: num(values, 'seed', true),
    checkpointEvery: num(values, 'checkpoint-every', true),
    evalEvery: num(values, 'eval-every', true),
    report: values['no-report'] !== true,
    progress: values.quiet ? null : process.stderr,
  };
}

async function trainCommand(values: Values): Promise<void> {
  const run = await runTraining(runOptions(values));
  for (const line of summaryLines(run)) console.log(line);
  run.result.model.dispose();
}

async function evalCommand(values: Values): Promise<void> {
  const dir = values.model as string | undefined;
  if (!dir) throw new InvalidArgumentError('--model', 'a model folder written by tfjs-moe train', dir);
  const setup = await setupBackend(backendOf(values));
  const model = await tf.loadLayersModel(fileHandler(dir));
  const [, h, w] = model.inputs[0].shape as number[];
  const seed = num(values, 'seed', true) ?? 0;
  const split = loadSplits((values.data as string | undefined) ?? TRAINING_DEFAULTS.data, {size: [h, w], seed});
  const r = await evaluate(model, split.test, {batchSize: num(values, 'batch-size', true) ?? 128});
  console.log(`${path.resolve(dir)} on ${split.test.name} (${r.examples} examples, backend ${setup.backend}): accuracy ${(100 * r.accuracy).toFixed(2)}%, loss ${r.loss.toFixed(4)}`);
  for (const [name, s] of Object.entries(r.balance)) {
    console.log(`  ${name}: ${formatBalance(s)} tokens/expert ${s.tokensPerExpert.map((t) => t.toFixed(1)).join(' ')}`);
  }
  model.dispose();
}

async function compareCommand(values: Values): Promise<void> {
  const {router: _r, gradient: _g, resume: _x, out, ...rest} = runOptions(values);
  const seeds = ((values.seeds as string | undefined) ?? '0,1,2').split(',').map((s) => {
    const v = Number(s);
    if (!Number.isInteger(v)) throw new InvalidArgumentError('--seeds', 'a comma-separated list of integers', values.seeds);
    return v;
  });
  const {table} = await compareRouters({
    ...rest,
    out,
    variants: parseVariants((values.routers as string | undefined) ?? DEFAULT_VARIANTS),
    seeds,
    progress: null,
    onRun: (r) => console.error(`  ${r.variant} seed ${r.seed}: accuracy ${(100 * r.accuracy).toFixed(2)}%, max/mean ${r.maxOverMean.toFixed(2)}, ${Math.round(r.imagesPerSecond)} img/s`),
  });
  console.log(table);
}

/**
 * Runs the CLI with `argv` (without `node` and the script); returns the exit code.
 *
 * @example
 * ```ts
 * const code = await main(['train', '--router', 'topk', '--steps', '100']);
 * ```
 */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if ((VMOE_COMMANDS as readonly string[]).includes(command)) return vmoeCommand(command as (typeof VMOE_COMMANDS)[number], rest);
  let values: Values;
  try {
    values = parseArgs({args: rest, options: OPTIONS, allowPositionals: false, strict: true}).values as Values;
  } catch (e) {
    console.error(`tfjs-moe: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (!command || command === 'help' || command === '--help' || command === '-h' || values.help) {
    console.log(USAGE);
    return command || values.help ? 0 : 2;
  }
  try {
    if (command === 'train') await trainCommand(values);
    else if (command === 'eval') await evalCommand(values);
    else if (command === 'compare') await compareCommand(values);
    else {
      console.error(`tfjs-moe: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      return 2;
    }
  } catch (e) {
    if (e instanceof TfjsMoeError) {
      console.error(`tfjs-moe ${command}: ${e.message}`);
      return 1;
    }
    throw e;
  }
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
