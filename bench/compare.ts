/**
 * Router study on real data (issue 10, item 5): every router (sparse OT in its three gradient
 * modes, top-1, top-2, expert choice, Sinkhorn, and the dense ViT) trained with the main job's
 * model and schedule (`packages/training/src/defaults.ts`) on full MNIST and on Fashion-MNIST,
 * at capacity factors 1.0 and 1.25, several seeds each. Per run: accuracy on the official test
 * set, dropped tokens and max/mean expert load in training (averaged over logged steps) and at
 * inference (on the test set), training images/s (wall, and per CPU second: the run is
 * single-threaded, so the CPU rate is what an idle machine would show), wall time.
 *
 * Every finished run is appended to `<out>/runs.jsonl` at once, and runs already there are
 * skipped, so a long study can be run in pieces; the tables (mean ± sample std over seeds,
 * accuracy range in brackets, the builds that contributed) are rewritten into `<out>/compare.md`
 * after every run. Every record names its `build` (`git rev-parse --short HEAD` at the start of
 * the process, `-dirty` when the work tree differed from it outside `<out>`; run `npm run build`
 * at that commit first, since the packages are read from their dist folders) and its `backend`
 * (read back after the run). The cells run in the order of `--capacity-factors`, then `--data`,
 * then seed, then router, so a study cut short leaves whole seeds of whole cells.
 *
 * Run:   npm run build && npx tsx bench/compare.ts [options]
 *   --data=mnist,fashion-mnist     data sets (default both; fashion-mnist needs Debian's dataset-fashion-mnist)
 *   --seeds=0,1,2                  seeds (default 0,1,2)
 *   --capacity-factors=1.25,1      training capacity factors, in the order run (default 1.25,1; the dense ViT runs once, with the first)
 *   --routers=LIST                 default sparse-ot:softmax,sparse-ot:implicit,sparse-ot:unrolled,top-1,top-2,expert-choice,sinkhorn,dense
 *   --epochs=X | --steps=N         budget per run (default: the main job's epochs)
 *   --batch=N --backend=wasm --out=bench/results/compare-real
 *   --progress                     print training progress (stderr)
 *   --table-only                   run nothing: rewrite <out>/compare.md from runs.jsonl and print it
 *   --quick                        smoke test: 20 steps, seed 0, capacity factor 1.25, mnist
 */
import {execFileSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {vmoe, type VMoEConfigLike} from '@tfjs-moe/models';
import {
  TRAINING_DEFAULTS as D, datasetSize, defaultWarmupSteps, loadSplits, modelConfig, runTraining, setupBackend, train,
  type LoadBalanceStats, type ModelSpec, type RunOptions, type TrainResult,
} from '@tfjs-moe/training';
import {parseArgs} from 'util';

const ARGS = parseArgs({options: {quick: {type: 'boolean'}, progress: {type: 'boolean'}, 'table-only': {type: 'boolean'}, backend: {type: 'string'}, batch: {type: 'string'}, 'capacity-factors': {type: 'string'}, data: {type: 'string'}, epochs: {type: 'string'}, out: {type: 'string'}, routers: {type: 'string'}, seeds: {type: 'string'}, steps: {type: 'string'}}, strict: true, allowPositionals: false}).values;
const QUICK = ARGS.quick === true;
const arg = (name: 'backend' | 'batch' | 'capacity-factors' | 'data' | 'epochs' | 'out' | 'routers' | 'seeds' | 'steps'): string | undefined => ARGS[name];

/** A contender and the model options it stands for. */
const ROUTERS: Record<string, Pick<ModelSpec, 'router' | 'gradient' | 'expertsPerToken'>> = {
  'sparse-ot:softmax': {router: 'sparse-ot', gradient: 'softmax'},
  'sparse-ot:implicit': {router: 'sparse-ot', gradient: 'implicit'},
  'sparse-ot:unrolled': {router: 'sparse-ot', gradient: 'unrolled'},
  'top-1': {router: 'topk', expertsPerToken: 1},
  'top-2': {router: 'topk', expertsPerToken: 2},
  'expert-choice': {router: 'expert-choice'},
  sinkhorn: {router: 'sinkhorn'},
  dense: {router: 'dense'},
};

/**
 * Variants of a contender that change its router's own options (which `runTraining` does not
 * expose): trained by {@link trainWithRouterOptions}, the same steps as `runTraining` with the
 * router config patched. Not in the default `--routers` list.
 */
const VARIANTS: Record<string, {base: string; routerOptions: Record<string, unknown>}> = {
  // Issue 9 item 5: the sparse-OT router's dispatch before the rebalancing step (support, no rebalancing) ...
  'sparse-ot:softmax:no-rebalance': {base: 'sparse-ot:softmax', routerOptions: {assignment: {className: 'ExpertsChooseTokens', config: {dispatch: 'support', rebalance: false}}}},
  // ... and after it (the default, spelled out, so that both rows take the same code path).
  'sparse-ot:softmax:rebalance': {base: 'sparse-ot:softmax', routerOptions: {assignment: {className: 'ExpertsChooseTokens', config: {dispatch: 'support', rebalance: true}}}},
};
const DEFAULT_ROUTERS = Object.keys(ROUTERS);
const ALL_ROUTERS = [...DEFAULT_ROUTERS, ...Object.keys(VARIANTS)];
const specOf = (router: string): Pick<ModelSpec, 'router' | 'gradient' | 'expertsPerToken'> => ROUTERS[VARIANTS[router]?.base ?? router];

/** What a run returns: {@link runTraining}'s result, wall seconds of training + final evaluation, batch size, active backend. */
interface Trained {
  result: TrainResult;
  seconds: number;
  batchSize: number;
  backend: string;
}

/**
 * Trains as `runTraining` does (same data split, model, schedule and defaults; no outputs
 * written), with `routerOptions` merged into every MoE block's router config.
 */
async function trainWithRouterOptions(o: RunOptions, routerOptions: Record<string, unknown>): Promise<Trained> {
  const {backend} = await setupBackend(o.backend ?? 'auto');
  const seed = o.seed ?? 0;
  const split = loadSplits(o.data ?? D.data, {seed});
  const batchSize = o.batchSize ?? D.batchSize;
  const steps = o.steps ?? Math.max(1, Math.round((o.epochs ?? D.epochs) * Math.floor(datasetSize(split.train) / batchSize)));
  const m = modelConfig(o, split.train);
  if (m.kind !== 'vmoe') throw new Error('router options need a V-MoE');
  const moe = m.config.moe as Record<string, unknown>;
  const config = {...m.config, moe: {...moe, router: {...(moe.router as Record<string, unknown>), ...routerOptions}}} as VMoEConfigLike;
  const t0 = performance.now();
  const result = await train({
    model: (seed) => vmoe({...config, seed}),
    data: split,
    seed,
    batchSize,
    steps,
    learningRate: D.learningRate,
    warmupSteps: defaultWarmupSteps(steps),
    maxShift: D.maxShift,
    clipNorm: D.clipNorm,
    weightDecay: D.weightDecay,
    logEvery: D.logEvery,
    evalEvery: o.evalEvery,
    checkpointEvery: 0,
    onLog: ARGS.progress ? (r) => void process.stderr.write(`    step ${r.step}/${steps}: loss ${r.loss.toFixed(3)}, ${r.imagesPerSecond.toFixed(0)} img/s\n`) : undefined,
  });
  return {result, seconds: (performance.now() - t0) / 1000, batchSize, backend};
}

/** One finished run. */
interface StudyRun {
  data: string;
  router: string;
  /** Training capacity factor (null for the dense ViT). */
  capacityFactor: number | null;
  seed: number;
  steps: number;
  /**
   * The budget asked for: `--epochs` (the main job's epochs when neither flag was given), or null
   * when `--steps` set it. A resumed study skips a cell only when its record's budget matches.
   */
  epochs: number | null;
  batchSize: number;
  testAccuracy: number;
  /** Largest over the MoE layers of the dropped-token fraction / max-over-mean load, averaged over logged training steps. */
  trainDropped: number;
  trainMaxOverMean: number;
  /** The same at inference on the test set. */
  testDropped: number;
  testMaxOverMean: number;
  /** Median training images/s over logged intervals after the first (wall clock). */
  imagesPerSecond: number;
  /** Whole run: training images per CPU second of this process (the final evaluation of the 10,000 test images included in the CPU time). */
  cpuImagesPerSecond: number;
  seconds: number;
  cpuSeconds: number;
  loadAverage: number;
  /**
   * The code the run came from: short commit hash of HEAD when the process started, `-dirty` if
   * the work tree differed from it (outside the study's own folder). Absent in none: the first 20
   * records (before this field existed) were given `9df77ab` by hand, the commit they ran on.
   */
  build: string;
  /** Active tfjs backend, read back after the run (absent in the first 20 records: wasm). */
  backend?: string;
}

/** Short hash of HEAD, with `-dirty` when tracked or untracked files outside `exclude` differ from it. */
function gitBuild(exclude: string): string {
  const git = (...a: string[]): string => execFileSync('git', a, {encoding: 'utf8'}).trim();
  try {
    const head = git('rev-parse', '--short=7', 'HEAD');
    const dirty = git('status', '--porcelain', '--', '.', `:(exclude)${exclude}`) !== '';
    return dirty ? `${head}-dirty` : head;
  } catch {
    return 'unknown';
  }
}

function worst(stats: Record<string, LoadBalanceStats>, key: 'droppedFraction' | 'maxOverMean', none: number): number {
  const v = Object.values(stats).map((s) => s[key]);
  return v.length ? Math.max(...v) : none;
}

function meanStd(v: number[]): [number, number] {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  return [m, v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1)) : 0];
}

/** `9df77ab (0,1), 1234abc (2)`: each build with the seeds it ran, and the backend when not wasm. */
function builds(rs: StudyRun[]): string {
  const by = new Map<string, number[]>();
  for (const r of rs) {
    const key = `${r.build ?? '?'}${r.backend && r.backend !== 'wasm' ? ` ${r.backend}` : ''}`;
    by.set(key, [...(by.get(key) ?? []), r.seed]);
  }
  return [...by].map(([b, seeds]) => `${b} (${seeds.join(',')})`).join(', ');
}

function table(runs: StudyRun[]): string {
  const lines: string[] = [];
  // Data sets in order of appearance; per data set capacity factors from large to small, the dense ViT last.
  const datas = [...new Set(runs.map((r) => r.data))];
  const cfRank = (cf: number | null): number => (cf === null ? -Infinity : cf);
  const cells = [...new Map(runs.map((r) => [`${r.data}|${r.capacityFactor ?? '-'}`, r])).values()]
    .sort((a, b) => datas.indexOf(a.data) - datas.indexOf(b.data) || cfRank(b.capacityFactor) - cfRank(a.capacityFactor));
  const keys = cells.map((r) => `${r.data}|${r.capacityFactor ?? '-'}`);
  for (const key of keys) {
    const [data, cf] = key.split('|');
    const group = runs.filter((r) => `${r.data}|${r.capacityFactor ?? '-'}` === key);
    const r0 = group[0];
    lines.push(`### ${data}, ${cf === '-' ? 'dense ViT (no capacity factor)' : `capacity factor ${cf}`} (${r0.steps} steps of ${r0.batchSize})`, '');
    lines.push('| router | seeds | test accuracy | train dropped | test dropped | train max/mean | test max/mean | images/s (wall) | images/CPU-s | builds (seeds) |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|');
    for (const router of ALL_ROUTERS) {
      const rs = group.filter((r) => r.router === router);
      if (!rs.length) continue;
      const f = (sel: (r: StudyRun) => number, digits: number, scale = 1, unit = ''): string => {
        const [m, sd] = meanStd(rs.map((r) => scale * sel(r)));
        return rs.length > 1 ? `${m.toFixed(digits)}${unit} ± ${sd.toFixed(digits)}` : `${m.toFixed(digits)}${unit}`;
      };
      const accs = rs.map((r) => 100 * r.testAccuracy);
      const range = rs.length > 1 ? ` [${Math.min(...accs).toFixed(2)}, ${Math.max(...accs).toFixed(2)}]` : '';
      lines.push(
        `| ${router} | ${rs.map((r) => r.seed).join(',')} | ${f((r) => r.testAccuracy, 2, 100, '%')}${range} | ${f((r) => r.trainDropped, 2, 100, '%')} | ${f((r) => r.testDropped, 2, 100, '%')} | ` +
          `${f((r) => r.trainMaxOverMean, 2)} | ${f((r) => r.testMaxOverMean, 2)} | ${f((r) => r.imagesPerSecond, 0)} | ${f((r) => r.cpuImagesPerSecond, 0)} | ${builds(rs)} |`,
      );
    }
    lines.push('');
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const datas = (arg('data') ?? (QUICK ? 'mnist' : 'mnist,fashion-mnist')).split(',');
  const seeds = (arg('seeds') ?? (QUICK ? '0' : '0,1,2')).split(',').map(Number);
  const factors = (arg('capacity-factors') ?? (QUICK ? '1.25' : '1.25,1')).split(',').map(Number);
  const routers = (arg('routers') ?? DEFAULT_ROUTERS.join(',')).split(',');
  for (const r of routers) if (!ALL_ROUTERS.includes(r)) throw new Error(`unknown router ${r}; one of ${ALL_ROUTERS.join(', ')}`);
  const steps = arg('steps') !== undefined ? Number(arg('steps')) : QUICK ? 20 : undefined;
  const epochs = arg('epochs') !== undefined ? Number(arg('epochs')) : undefined;
  const out = arg('out') ?? path.join('bench', 'results', QUICK ? 'compare-real-quick' : 'compare-real');
  fs.mkdirSync(out, {recursive: true});
  const runsFile = path.join(out, 'runs.jsonl');
  const runs: StudyRun[] = fs.existsSync(runsFile) ? fs.readFileSync(runsFile, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as StudyRun) : [];
  const tableFile = path.join(out, 'compare.md');
  if (ARGS['table-only']) {
    fs.writeFileSync(tableFile, table(runs));
    console.log(table(runs));
    return;
  }
  const build = gitBuild(out);
  console.log(`# Router study: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, build ${build}; ${runs.length} runs already in ${runsFile}`);
  // Capacity factor, then data set, then seed, then router: a study cut short leaves whole seeds of whole cells.
  for (const cf of factors) {
    for (const data of datas) {
      for (const seed of seeds) {
        for (const router of routers) {
          const spec = specOf(router);
          const capacityFactor = spec.router === 'dense' ? null : cf;
          if (spec.router === 'dense' && cf !== factors[0]) continue; // the dense ViT has no capacity
          const budget = steps ?? `e${epochs ?? 'default'}`;
          const sameBudget = (r: StudyRun): boolean =>
            r.batchSize === (arg('batch') ? Number(arg('batch')) : D.batchSize) && (steps !== undefined ? r.steps === steps && r.epochs === null : r.epochs === (epochs ?? D.epochs));
          const done = runs.find((r) => r.data === data && r.router === router && r.capacityFactor === capacityFactor && r.seed === seed && sameBudget(r));
          if (done) continue;
          const options: RunOptions = {
            ...spec,
            ...(capacityFactor !== null ? {capacityFactor} : {}),
            data,
            seed,
            ...(steps !== undefined ? {steps} : {}),
            ...(epochs !== undefined ? {epochs} : {}),
            ...(arg('batch') ? {batchSize: Number(arg('batch'))} : {}),
            backend: (arg('backend') ?? 'wasm') as RunOptions['backend'],
            out: path.join(os.tmpdir(), `compare-real-${process.pid}`, `${data}-${router.replace(':', '-')}-cf${cf}-s${seed}-${budget}`),
            evalEvery: 0,
            checkpointEvery: 0,
            report: false,
            progress: ARGS.progress ? process.stderr : null,
          };
          const cpu0 = process.cpuUsage();
          const variant = VARIANTS[router];
          const run: Trained = variant
            ? await trainWithRouterOptions(options, variant.routerOptions)
            : await runTraining(options).then((s) => ({result: s.result, seconds: s.seconds, batchSize: s.config.batchSize as number, backend: s.backend}));
          const cpu = process.cpuUsage(cpu0);
          const r = run.result;
          const speeds = (r.history.length > 1 ? r.history.slice(1) : r.history).map((h) => h.imagesPerSecond).sort((a, b) => a - b);
          const cpuSeconds = (cpu.user + cpu.system) / 1e6;
          const batchSize = run.batchSize;
          const rec: StudyRun = {
            data,
            router,
            capacityFactor,
            seed,
            steps: r.steps,
            epochs: steps !== undefined ? null : (epochs ?? D.epochs),
            batchSize,
            testAccuracy: r.final.accuracy,
            trainDropped: worst(r.trainBalance, 'droppedFraction', 0),
            trainMaxOverMean: worst(r.trainBalance, 'maxOverMean', 1),
            testDropped: worst(r.final.balance, 'droppedFraction', 0),
            testMaxOverMean: worst(r.final.balance, 'maxOverMean', 1),
            imagesPerSecond: speeds.length ? speeds[Math.floor(speeds.length / 2)] : NaN,
            cpuImagesPerSecond: (r.steps * batchSize) / cpuSeconds,
            seconds: run.seconds,
            cpuSeconds,
            loadAverage: os.loadavg()[0],
            build,
            backend: run.backend,
          };
          r.model.dispose();
          runs.push(rec);
          fs.appendFileSync(runsFile, JSON.stringify(rec) + '\n');
          fs.writeFileSync(tableFile, table(runs));
          console.error(
            `  ${data} ${router} cf ${capacityFactor ?? '-'} seed ${seed}: test ${(100 * rec.testAccuracy).toFixed(2)}%, dropped ${(100 * rec.trainDropped).toFixed(1)}% / ${(100 * rec.testDropped).toFixed(1)}%, ` +
              `${Math.round(rec.imagesPerSecond)} img/s, ${rec.seconds.toFixed(0)} s (CPU ${cpuSeconds.toFixed(0)} s, load ${rec.loadAverage.toFixed(1)}, ${new Date().toISOString()})`,
          );
        }
      }
    }
  }
  console.log(table(runs));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
