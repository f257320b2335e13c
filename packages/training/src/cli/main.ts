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
import * as fs from 'fs';
import * as path from 'path';
import {parseArgs} from 'util';
import '@tfjs-moe/models';
import {checkOptions, InvalidArgumentError, nearestKey} from '@tfjs-moe/router';
import {BACKEND_NAMES, setupBackend, type BackendRequest} from '../backend';
import {compareRouters, DEFAULT_VARIANTS, parseVariants} from '../compare';
import {loadSplits} from '../data/load';
import {TRAINING_DEFAULTS} from '../defaults';
import {readJsonFile} from '../io/file-io';
import {loadModel} from '../io/load-model';
import {formatBalance} from '../metrics/load-balance';
import {ROUTER_CHOICES, GRADIENT_CHOICES, type GradientChoice, type RouterChoice} from '../model-factory';
import {RUN_OPTION_KEYS, runTraining, summaryLines, type RunOptions} from '../run';
import {evaluate} from '../train/evaluate';
import {joinNegativeValues, reportCommandError} from './args';
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
  --k <n>                    topk: experts per token (default 1)
  --load-balance-loss-weight <x>  topk: weight of the load-balancing loss (default 0.01)
  --z-loss-weight <x>        topk, expert-choice, sinkhorn: weight of the router z-loss (default 0)
  --jitter <x>               topk: multiplicative router-input jitter in training (default 0)
  --out <dir>                output folder (default runs/<router>); a fresh run needs it empty or new
  --resume                   continue the run in --out from its newest intact checkpoint; --steps or
                             --epochs extend it; other changed settings are an error
  --overwrite                replace the outputs of an earlier run in --out
  --config <file.json>       settings as JSON ({"router": "topk", "steps": 200, ...}; the keys of
                             runTraining's options); flags override it
  --seed <n>                 seed of split, initialization, data order and randomness (default 0)
  --checkpoint-every <n>     steps between checkpoints (default 50); 0: never (no checkpoint, so no --resume)
  --eval-every <n>           steps between held-out evaluations (default: 4 per run); 0: never (only the final one)
  --no-report                skip report.html        --quiet        no progress bar
  --verbose                  print stack traces of unexpected errors

Paths are resolved against the directory you ran the command from (npm's INIT_CWD under npm run).

eval options:
  --model <dir>              a run folder of train (runs/sparse-ot) or its model/ (model.json + weights.bin)
  --data, --seed, --backend, --batch-size as for train (the test set of --data: official, or the held-out split with --seed)

compare options:
  --routers <list>           default ${DEFAULT_VARIANTS}
  --seeds <list>             default 0,1,2
  --out <dir>                default runs/compare (one sub-folder per run, compare.md, compare.json)
  and every train option except --router, --gradient, --resume
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
  k: {type: 'string'},
  'load-balance-loss-weight': {type: 'string'},
  'z-loss-weight': {type: 'string'},
  jitter: {type: 'string'},
  out: {type: 'string'},
  resume: {type: 'boolean'},
  overwrite: {type: 'boolean'},
  config: {type: 'string'},
  verbose: {type: 'boolean'},
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

const COMMON_FLAGS = ['data', 'seed', 'backend', 'batch-size', 'help', 'verbose', 'quiet'];
const TRAIN_FLAGS = Object.keys(OPTIONS).filter((f) => !['model', 'routers', 'seeds'].includes(f));
/** The flags each command takes (a flag of another command is an error, not silently ignored). */
const COMMAND_FLAGS: Record<string, string[]> = {
  train: TRAIN_FLAGS,
  eval: [...COMMON_FLAGS, 'model'],
  compare: [...TRAIN_FLAGS.filter((f) => !['router', 'gradient', 'resume', 'overwrite'].includes(f)), 'routers', 'seeds'],
};

/** The directory the user ran the command from: npm sets INIT_CWD when it runs a workspace script elsewhere. */
function callerDir(): string {
  return process.env.INIT_CWD ?? process.cwd();
}

function resolvePath(p: string | undefined): string | undefined {
  return p === undefined ? undefined : path.resolve(callerDir(), p);
}


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

/** Data names that are not paths. */
const NAMED_DATA = ['mnist', 'fashion-mnist', 'digits', 'synthetic'];

/** A `--data` value with its path (also the folder of `idx:DIR`) resolved against `base`. */
function resolveData(d: string, base: string): string {
  if (NAMED_DATA.includes(d)) return d;
  return d.startsWith('idx:') ? `idx:${path.resolve(base, d.slice(4))}` : path.resolve(base, d);
}

function dataSpec(values: Values): string | undefined {
  const d = values.data as string | undefined;
  return d === undefined ? undefined : resolveData(d, callerDir());
}

/** Reads `--config`: a JSON object of {@link RunOptions} keys (unknown keys are an error naming the nearest known one). */
function configFile(values: Values): RunOptions {
  const file = resolvePath(values.config as string | undefined);
  if (file === undefined) return {};
  const json = readJsonFile<Record<string, unknown>>(file, 'settings file (JSON object of train options)');
  checkOptions(json, RUN_OPTION_KEYS.filter((k) => k !== 'progress'), file);
  if (typeof json.out === 'string') json.out = path.resolve(path.dirname(file), json.out);
  if (typeof json.data === 'string') json.data = resolveData(json.data, path.dirname(file));
  return json as RunOptions;
}

/** The numeric run options and their flags (`true`: an integer). */
const NUMERIC_FLAGS: ReadonlyArray<[keyof RunOptions, string, boolean]> = [
  ['experts', 'experts', true],
  ['capacityFactor', 'capacity-factor', false],
  ['evalCapacityFactor', 'eval-capacity-factor', false],
  ['groupSize', 'group-size', true],
  ['epochs', 'epochs', false],
  ['steps', 'steps', true],
  ['batchSize', 'batch-size', true],
  ['learningRate', 'lr', false],
  ['k', 'k', true],
  ['loadBalanceLossWeight', 'load-balance-loss-weight', false],
  ['zLossWeight', 'z-loss-weight', false],
  ['jitterNoise', 'jitter', false],
  ['seed', 'seed', true],
  ['checkpointEvery', 'checkpoint-every', true],
  ['evalEvery', 'eval-every', true],
];

/** The flag that sets each run option, where the names differ only in spelling or not at all. */
const FLAG_OF: Record<string, string> = {
  ...Object.fromEntries(NUMERIC_FLAGS.map(([key, flag]) => [key, flag])),
  router: 'router', gradient: 'gradient', preset: 'preset', backend: 'backend', out: 'out',
};

/**
 * An error about a run option that the user set by its flag names the flag (`--capacity-factor`,
 * not `capacityFactor`); one set in a `--config` file keeps the file's key.
 */
function namingTheFlag(e: unknown, values: Values): unknown {
  if (!(e instanceof InvalidArgumentError)) return e;
  const flag = FLAG_OF[e.argument];
  if (flag === undefined || values[flag] === undefined) return e;
  e.message = e.message.replace(`Expected ${e.argument} to be`, `Expected --${flag} to be`);
  return e;
}

function runOptions(values: Values): RunOptions {
  const fromFlags: RunOptions = {
    router: values.router as RouterChoice | undefined,
    gradient: values.gradient as GradientChoice | undefined,
    ...Object.fromEntries(NUMERIC_FLAGS.map(([key, flag, integer]) => [key, num(values, flag, integer)])),
    data: dataSpec(values),
    preset: values.preset as RunOptions['preset'],
    backend: values.backend === undefined ? undefined : backendOf(values),
    out: resolvePath(values.out as string | undefined),
    resume: values.resume === true ? true : undefined,
    overwrite: values.overwrite === true ? true : undefined,
    report: values['no-report'] === true ? false : undefined,
    progress: values.quiet ? null : process.stderr,
  };
  const merged: Record<string, unknown> = {...configFile(values)};
  for (const [k, v] of Object.entries(fromFlags)) if (v !== undefined || k === 'progress') merged[k] = v;
  return merged as RunOptions;
}

async function trainCommand(values: Values): Promise<void> {
  const run = await runTraining(runOptions(values));
  for (const line of summaryLines(run)) console.log(line);
  run.result.model.dispose();
}

async function evalCommand(values: Values): Promise<void> {
  let dir = resolvePath(values.model as string | undefined);
  if (!dir) throw new InvalidArgumentError('--model', 'a run folder or a model folder written by tfjs-moe train', dir);
  if (!fs.existsSync(path.join(dir, 'model.json')) && fs.existsSync(path.join(dir, 'model', 'model.json'))) dir = path.join(dir, 'model');
  const setup = await setupBackend(backendOf(values));
  const model = await loadModel(dir);
  try {
    const [, h, w] = model.inputs[0].shape as number[];
    const seed = num(values, 'seed', true) ?? 0;
    const split = loadSplits(dataSpec(values) ?? TRAINING_DEFAULTS.data, {size: [h, w], seed});
    const r = await evaluate(model, split.test, {batchSize: num(values, 'batch-size', true) ?? 128});
    console.log(`${dir} on ${split.test.name} (${r.examples} examples, backend ${setup.backend}): accuracy ${(100 * r.accuracy).toFixed(2)}%, loss ${r.loss.toFixed(4)}`);
    for (const [name, s] of Object.entries(r.balance)) {
      console.log(`  ${name}: ${formatBalance(s)} tokens/expert ${s.tokensPerExpert.map((t) => t.toFixed(1)).join(' ')}`);
    }
  } finally {
    model.dispose();
  }
}

async function compareCommand(values: Values): Promise<void> {
  const {router: _r, gradient: _g, resume: _x, overwrite: _w, out, progress, ...rest} = runOptions(values);
  const seeds = ((values.seeds as string | undefined) ?? '0,1,2').split(',').map((s) => {
    const v = Number(s);
    if (s.trim() === '' || !Number.isInteger(v)) throw new InvalidArgumentError('--seeds', 'a comma-separated list of integers', values.seeds);
    return v;
  });
  const {table} = await compareRouters({
    ...rest,
    out,
    variants: parseVariants((values.routers as string | undefined) ?? DEFAULT_VARIANTS),
    seeds,
    progress,
    onRun: (r) => console.error(`  ${r.variant} seed ${r.seed}: accuracy ${(100 * r.accuracy).toFixed(2)}%, max/mean ${r.maxOverMean.toFixed(2)}, ${Math.round(r.imagesPerSecond)} img/s -> ${r.out}`),
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
    values = parseArgs({args: joinNegativeValues(rest, OPTIONS), options: OPTIONS, allowPositionals: false, strict: true}).values as Values;
  } catch (e) {
    const err = e as Error & {code?: string};
    const flag = /Unknown option '(--?[^']+)'/.exec(err.message)?.[1];
    const known = COMMAND_FLAGS[command] ?? Object.keys(OPTIONS);
    const near = flag ? nearestKey(flag.replace(/^-+/, ''), known) : undefined;
    const msg = flag ? `Unknown option '${flag}'.${near ? ` Did you mean '--${near}'?` : ''}` : err.message;
    console.error(`tfjs-moe${command ? ` ${command}` : ''}: ${msg} Run 'tfjs-moe --help' for the options.`);
    return 2;
  }
  if (!command || command === 'help' || command === '--help' || command === '-h' || values.help) {
    console.log(USAGE);
    return command || values.help ? 0 : 2;
  }
  if (!(command in COMMAND_FLAGS)) {
    const near = nearestKey(command, Object.keys(COMMAND_FLAGS));
    console.error(`tfjs-moe: unknown command ${JSON.stringify(command)}.${near ? ` Did you mean '${near}'?` : ''} Commands: train, eval, compare.`);
    return 2;
  }
  const foreign = Object.keys(values).filter((f) => !COMMAND_FLAGS[command].includes(f));
  if (foreign.length) {
    console.error(`tfjs-moe ${command}: option${foreign.length > 1 ? 's' : ''} ${foreign.map((f) => `--${f}`).join(', ')} not taken by '${command}'. Run 'tfjs-moe --help' for the options.`);
    return 2;
  }
  try {
    if (command === 'train') await trainCommand(values);
    else if (command === 'eval') await evalCommand(values);
    else await compareCommand(values);
  } catch (e) {
    return reportCommandError(namingTheFlag(e, values), command, values.verbose === true);
  }
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      console.error(`tfjs-moe: ${(e as Error)?.message ?? String(e)}`);
      process.exitCode = 1;
    },
  );
}
