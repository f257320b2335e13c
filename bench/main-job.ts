/**
 * Tuning runs of the main job (`tfjs-moe train` with no flags: the sparse-OT V-MoE on full MNIST):
 * one configuration per call, printed as one JSON line with test accuracy, steps, images/s of the
 * training steps alone, wall time, and the machine's load average, so that runs on a shared
 * machine can be projected to an idle one (bench/RESULTS-training.md).
 *
 * Run: npx tsx bench/main-job.ts [--steps=N | --epochs=X] [--batch=64] [--lr=2e-3] [--patch=7]
 *        [--width=64] [--mlp=128] [--depth=4] [--heads=4] [--shift=0] [--router=sparse-ot]
 *        [--data=mnist] [--seed=0] [--backend=wasm] [--eval-every=N] [--warmup=F]
 */
import * as os from 'os';
import * as path from 'path';
import {runTraining, type RunOptions} from '@tfjs-moe/training';
import {parseArgs} from 'util';
import {machineDescription} from './common';

// util.parseArgs: an unknown or misspelt flag is an error instead of a silently ignored setting.
const ARGS: Record<string, string | undefined> = parseArgs({options: {backend: {type: 'string'}, data: {type: 'string'}, router: {type: 'string'}, batch: {type: 'string'}, depth: {type: 'string'}, epochs: {type: 'string'}, 'eval-every': {type: 'string'}, heads: {type: 'string'}, lr: {type: 'string'}, mlp: {type: 'string'}, patch: {type: 'string'}, seed: {type: 'string'}, shift: {type: 'string'}, steps: {type: 'string'}, width: {type: 'string'}, warmup: {type: 'string'}, quiet: {type: 'string'}}, strict: true, allowPositionals: false}).values;
const arg = (name: string): string | undefined => ARGS[name];
const num = (name: string): number | undefined => (arg(name) === undefined ? undefined : Number(arg(name)));

/** CPU seconds per training image, from the CPU clock at each progress line (intervals with an evaluation or checkpoint left out). */
const marks: {step: number; cpu: number; clean: boolean}[] = [];
let dirty = false;
const stream = {
  write(s: string): boolean {
    const m = /\]\s+(\d+)\/\d+ loss/.exec(s);
    const c = process.cpuUsage();
    if (m) {
      marks.push({step: Number(m[1]), cpu: (c.user + c.system) / 1e6, clean: !dirty});
      dirty = false;
    } else if (/accuracy/.test(s)) dirty = true;
    if (!arg('quiet')) process.stderr.write(s);
    return true;
  },
};

async function main(): Promise<void> {
  const load0 = os.loadavg()[0];
  console.error(`${machineDescription()}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const opts: RunOptions = {
    router: (arg('router') ?? 'sparse-ot') as RunOptions['router'],
    data: arg('data'),
    steps: num('steps'),
    epochs: num('epochs'),
    batchSize: num('batch'),
    learningRate: num('lr'),
    patchSize: num('patch'),
    hiddenSize: num('width'),
    mlpDim: num('mlp'),
    depth: num('depth'),
    numHeads: num('heads'),
    maxShift: num('shift'),
    seed: num('seed'),
    evalEvery: num('eval-every'),
    warmupSteps: undefined,
    backend: (arg('backend') ?? 'wasm') as RunOptions['backend'],
    out: path.join(os.tmpdir(), `main-job-${process.pid}`),
    report: false,
    progress: stream,
  };
  for (const k of Object.keys(opts) as (keyof RunOptions)[]) if (opts[k] === undefined) delete opts[k];
  const cpu0 = process.cpuUsage();
  const run = await runTraining(opts);
  const cpu = process.cpuUsage(cpu0);
  const r = run.result;
  // images/s of the logged training steps alone (evaluation and checkpoints excluded).
  const ips = r.history.map((h) => h.imagesPerSecond);
  const median = [...ips].sort((a, b) => a - b)[Math.floor(ips.length / 2)];
  let cpuSteps = 0;
  let cpuTime = 0;
  for (let i = 2; i < marks.length; i++) {
    // Skip the first interval (warm-up of kernels) and intervals that held an evaluation.
    if (!marks[i].clean) continue;
    cpuSteps += marks[i].step - marks[i - 1].step;
    cpuTime += marks[i].cpu - marks[i - 1].cpu;
  }
  const lastVal = r.evals.filter((e) => !e.final).at(-1);
  console.log(
    JSON.stringify({
      args: process.argv.slice(2).join(' '),
      testAccuracy: r.final.accuracy,
      validationAccuracy: lastVal?.accuracy,
      steps: r.steps,
      batch: run.config.batchSize,
      seconds: Math.round(run.seconds),
      // CPU seconds of this process (user + system): on an idle machine the wall time of this
      // single-threaded run is about this (setup and data loading included).
      cpuSeconds: Math.round((cpu.user + cpu.system) / 1e6),
      medianImagesPerSecond: Math.round(median),
      cpuImagesPerSecond: Math.round((cpuSteps * (run.config.batchSize as number)) / cpuTime),
      trainImages: r.steps * (run.config.batchSize as number),
      load: [load0, os.loadavg()[0]].map((l) => Number(l.toFixed(1))),
      backend: run.backend,
      machine: machineDescription(),
    }),
  );
  r.model.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
