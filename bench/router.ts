// Router benchmark: SparseOTRouter in each gradient mode (and the paper preset) against
// TopKRouter on the same tokens, forward and forward+backward, plus a small training comparison
// of the gradient modes.
//
//   npx tsx bench/router.ts [--quick] [--backends=wasm,cpu] [--skip-training] [--skip-timing]
//                           [--skip-warm-start] [--only=<name part>] [--seeds=N]
//
// Config (issue 3): 2048 tokens (32 images x 64 patches), d = 192, E in {8, 32}, routed in
// groups of 256 tokens (8 groups), capacity factor 1.0 and 1.25. --quick: 512 tokens, E = 8 only,
// capacity factor 1.0, fewer repetitions.
import * as tf from '@tensorflow/tfjs';
import {QUICK, backendsFromArgs, benchArgs, machineDescription, measureMatMulPeak, selectBackend, timeMs} from './common';
import {moe, solveSparseOT, sparseOTPlanVJP, sparseOTRouter, topKRouter, type Router, type SparseOTRouterArgs} from '@tfjs-moe/router';

const TOKENS = QUICK ? 512 : 2048;
const D = 192;
const GROUP = 256;
const EXPERTS = QUICK ? [8] : [8, 32];
const FACTORS = QUICK ? [1.0] : [1.0, 1.25];
const REPS = QUICK ? 2 : 5;
/** `--only=<text>`: run only the variants whose name contains the text. */
const ARGS = benchArgs({
  only: {type: 'string'}, seeds: {type: 'string'}, 'skip-timing': {type: 'boolean'}, 'skip-training': {type: 'boolean'}, 'skip-warm-start': {type: 'boolean'},
});
const ONLY = ARGS.only ?? '';
/** `--seeds=N`: training comparison over N seeds (data order, expert and router initialization). */
const SEEDS = Number(ARGS.seeds ?? 1);

interface Variant {
  name: string;
  make: (experts: number) => Router;
}

const otVariant = (name: string, args: Partial<SparseOTRouterArgs>): Variant => ({
  name,
  make: (experts) => sparseOTRouter({numExperts: experts, ...args}),
});

const VARIANTS: Variant[] = [
  {name: 'topk (Switch, k=1)', make: (experts) => topKRouter({numExperts: experts})},
  otVariant("ot paper (Adam-20, softmax)", {preset: 'paper'}),
  otVariant('ot softmax (default solver)', {gradient: 'softmax'}),
  otVariant('ot implicit (default solver + CG VJP)', {gradient: 'implicit'}),
  otVariant('ot unrolled (default solver + 3 unrolled Newton steps)', {gradient: 'unrolled'}),
];

/** One forward routing call; returns the tensors to sync on. */
function forward(router: Router, tokens: tf.Tensor3D, capacity: number): tf.Tensor[] {
  const r = router.route(tokens, {training: true, capacity});
  const out = [r.tokenIndices, r.combineWeights];
  tf.dispose([r.auxiliaryLoss, ...Object.values(r.metrics)]);
  return out;
}

/** Forward + backward to the router kernel of `sum(w * combineWeights) + auxiliaryLoss`. */
function forwardBackward(router: Router, tokens: tf.Tensor3D, capacity: number, w: tf.Tensor): tf.Tensor[] {
  const kernel = (router.kernel as tf.LayerVariable).read() as tf.Variable;
  const {value, grads} = tf.variableGrads(() => {
    const r = router.route(tokens, {training: true, capacity});
    const loss = tf.add(tf.sum(tf.mul(r.combineWeights, w)), r.auxiliaryLoss) as tf.Scalar;
    tf.dispose([r.tokenIndices, r.combineWeights, r.auxiliaryLoss, ...Object.values(r.metrics)]);
    return loss;
  }, [kernel]);
  return [value, ...Object.values(grads)];
}

async function timing(backend: string, peak: number): Promise<string[]> {
  const lines: string[] = [];
  lines.push(`\n### Router time on ${backend} (${TOKENS} tokens in groups of ${GROUP}, d ${D}; median of ${REPS})\n`);
  lines.push('| E | cf | capacity | router | forward ms | x topk | fwd+bwd ms | x topk | logits GFLOP/s (fwd) | of peak | dropped | row viol. | solver it. |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  const groups = TOKENS / GROUP;
  const tokens = tf.randomNormal([groups, GROUP, D], 0, 1, 'float32', 7) as tf.Tensor3D;
  for (const experts of EXPERTS) {
    for (const cf of FACTORS) {
      let topF = NaN;
      let topB = NaN;
      for (const v of VARIANTS.filter((x) => x.name.includes(ONLY) || x.name.startsWith('topk'))) {
        const router = v.make(experts);
        router.build(tokens.shape);
        const capacity = router.computeCapacity(GROUP, cf);
        const w = tf.randomNormal([groups, experts, capacity], 0, 1, 'float32', 8);
        const f = await timeMs(() => forward(router, tokens, capacity), REPS, 1);
        const b = await timeMs(() => forwardBackward(router, tokens, capacity, w), REPS, 1);
        const r = router.route(tokens, {training: true, capacity});
        const m = Object.fromEntries(Object.entries(r.metrics).map(([k, t]) => [k, t.dataSync()[0]]));
        r.dispose();
        if (v.name.startsWith('topk')) {
          topF = f;
          topB = b;
        }
        const gflops = (2 * TOKENS * D * experts) / (f * 1e6);
        lines.push(`| ${experts} | ${cf} | ${capacity} | ${v.name} | ${f.toFixed(1)} | ${(f / topF).toFixed(2)} | ${b.toFixed(1)} | ${(b / topB).toFixed(2)} | ` +
          `${gflops.toFixed(3)} | ${((100 * gflops) / peak).toFixed(2)}% | ${(m.droppedFraction ?? NaN).toFixed(3)} | ` +
          `${m.meanRowViolation === undefined ? '-' : m.meanRowViolation.toFixed(3)} | ${m.solverIterations === undefined ? '-' : m.solverIterations} |`);
        console.log(lines[lines.length - 1]);
        tf.dispose(w);
        for (const wt of router.weights) wt.dispose();
      }
    }
  }
  // The implicit VJP alone (CG on the experts' Schur complement vs on the tokens), on the plan
  // of the default solve at capacity factor 1.
  lines.push(`\n| E | implicit VJP alone: CG on experts (ms) | CG on tokens (ms) | default solve (ms) |`);
  lines.push('|---|---|---|---|');
  for (const experts of EXPERTS) {
    const capacity = Math.ceil(GROUP / experts);
    const cost = tf.tidy(() => tf.neg(tf.softmax(tf.randomNormal([groups, GROUP, experts], 0, 1, 'float32', 9))));
    const solveMs = await timeMs(() => {
      const r = solveSparseOT(cost, {k: capacity});
      tf.dispose([r.alpha, r.beta, r.value].filter((t): t is tf.Tensor => t != null));
      return r.plan;
    }, REPS, 1);
    const r = solveSparseOT(cost, {k: capacity});
    const up = tf.randomNormal(r.plan.shape, 0, 1, 'float32', 10);
    const expertsMs = await timeMs(() => sparseOTPlanVJP(r.plan, up), REPS, 1);
    const tokensMs = await timeMs(() => sparseOTPlanVJP(r.plan, up, {space: 'tokens'}), REPS, 1);
    lines.push(`| ${experts} | ${expertsMs.toFixed(1)} | ${tokensMs.toFixed(1)} | ${solveMs.toFixed(1)} |`);
    console.log(lines[lines.length - 1]);
    tf.dispose([cost, up]);
    r.dispose();
  }
  tokens.dispose();
  return lines;
}

/**
 * Training comparison on a task where routing matters: tokens come from 4 clusters and the target
 * is a cluster-specific linear map of the token (y = A_c x), so an MoE with 4 linear-ish experts
 * can fit it only if the router sends each cluster to its own expert. Every variant trains the
 * same MoE (E 4, hidden 32, groups of 64 tokens) with Adam (lr 1e-2) from the same initial
 * weights; we report the mean squared error on held-out batches (inference mode) after training.
 */
async function training(backend: string): Promise<string[]> {
  const d = 16;
  const clusters = 4;
  const steps = QUICK ? 40 : 150;
  const batch = 4;
  const tokensPer = 64;
  const centers = tf.randomNormal([clusters, d], 0, 2, 'float32', 11);
  const maps = tf.randomNormal([clusters, d, d], 0, 1 / Math.sqrt(d), 'float32', 12);
  const sample = (seed: number): {x: tf.Tensor3D; y: tf.Tensor3D} => tf.tidy(() => {
    const c = tf.randomUniform([batch * tokensPer], 0, clusters, 'int32', seed);
    const x = tf.add(tf.gather(centers, c), tf.randomNormal([batch * tokensPer, d], 0, 0.5, 'float32', seed + 1)) as tf.Tensor2D;
    const a = tf.gather(maps, c) as tf.Tensor3D; // [N, d, d]
    const y = tf.squeeze(tf.matMul(tf.expandDims(x, 1), a), [1]);
    return {x: tf.reshape(x, [batch, tokensPer, d]) as tf.Tensor3D, y: tf.reshape(y, [batch, tokensPer, d]) as tf.Tensor3D};
  });
  const evalSets = [0, 1, 2].map((i) => sample(1000 + 10 * i));
  const variants: Array<{name: string; cf: number; router: () => Router | string; frozenRouter?: boolean}> = [
    {name: 'topk (Switch)', cf: 1.25, router: () => topKRouter({numExperts: clusters})},
    {name: 'ot softmax', cf: 1.0, router: () => sparseOTRouter({numExperts: clusters})},
    {name: 'ot softmax', cf: 1.25, router: () => sparseOTRouter({numExperts: clusters})},
    {name: 'ot implicit, gamma 1', cf: 1.0, router: () => sparseOTRouter({numExperts: clusters, gradient: 'implicit'})},
    {name: 'ot implicit, gamma 1', cf: 1.25, router: () => sparseOTRouter({numExperts: clusters, gradient: 'implicit'})},
    {name: 'ot implicit, gamma 4', cf: 1.25, router: () => sparseOTRouter({numExperts: clusters, gradient: 'implicit', gamma: 4})},
    {name: 'ot implicit, gamma 1, cost -logits', cf: 1.25, router: () => sparseOTRouter({numExperts: clusters, gradient: 'implicit', cost: 'negative-logits'})},
    {name: 'ot unrolled, gamma 1', cf: 1.25, router: () => sparseOTRouter({numExperts: clusters, gradient: 'unrolled'})},
    {name: 'ot unrolled, gamma 1, cost -logits', cf: 1.25, router: () => sparseOTRouter({numExperts: clusters, gradient: 'unrolled', cost: 'negative-logits'})},
    {name: 'ot softmax, cost -logits', cf: 1.25, router: () => sparseOTRouter({numExperts: clusters, cost: 'negative-logits'})},
    // Controls: the router kernel stays at its initial value, only the experts train. The gap to
    // the rows above is what the router's gradient contributes.
    {name: 'ot softmax, router frozen', cf: 1.25, router: () => sparseOTRouter({numExperts: clusters}), frozenRouter: true},
    {name: 'ot implicit, gamma 1, router frozen', cf: 1.25, router: () => sparseOTRouter({numExperts: clusters, gradient: 'implicit'}), frozenRouter: true},
  ];
  const lines: string[] = [];
  lines.push(`\n### Training comparison on ${backend} (${steps} Adam steps, batch ${batch} x ${tokensPer} tokens, d ${d}, E ${clusters}; eval MSE on 3 held-out batches)\n`);
  lines.push(`| router | cf | eval MSE at step 0 | eval MSE after training${SEEDS > 1 ? ` (mean of ${SEEDS} seeds, min-max)` : ''} | dropped (eval) | ms / step |`);
  lines.push('|---|---|---|---|---|---|');
  for (const v of variants.filter((x) => x.name.includes(ONLY))) {
    const starts: number[] = [];
    const finals: number[] = [];
    const drops: number[] = [];
    let msPerStep = 0;
    for (let seed = 0; seed < SEEDS; seed++) {
      const layer = moe({
        numExperts: clusters, hiddenDim: 32, router: v.router() as never, capacityFactor: v.cf, activation: 'relu',
        kernelInitializer: {className: 'GlorotUniform', config: {seed: 3 + seed}},
      });
      layer.build([null, tokensPer, d]);
      // Same router kernel for every variant (per seed).
      const rk = tf.randomNormal([d, clusters], 0, 0.05, 'float32', 13 + seed);
      const weights = layer.getWeights();
      const idx = layer.weights.findIndex((w) => w.name.includes('router/kernel'));
      weights[idx] = rk;
      layer.setWeights(weights);
      const evalLoss = (): {mse: number; dropped: number} => {
        let total = 0;
        let dropped = 0;
        for (const s of evalSets) {
          const l = tf.tidy(() => tf.mean(tf.square(tf.sub(layer.apply(s.x, {training: false}) as tf.Tensor, s.y))));
          total += l.dataSync()[0];
          l.dispose();
          dropped += Number(layer.lastMetrics?.droppedFraction ?? NaN);
        }
        return {mse: total / evalSets.length, dropped: dropped / evalSets.length};
      };
      starts.push(evalLoss().mse);
      const opt = tf.train.adam(1e-2);
      const trainable = layer.trainableWeights
        .filter((w) => !(v.frozenRouter && w.name.includes('router/kernel')))
        .map((w) => w.read() as tf.Variable);
      const t0 = performance.now();
      for (let step = 0; step < steps; step++) {
        const s = sample(10000 * seed + step);
        const cost = opt.minimize(() => tf.mean(tf.square(tf.sub(layer.apply(s.x, {training: true}) as tf.Tensor, s.y))) as tf.Scalar,
          true, trainable);
        cost?.dataSync();
        tf.dispose([s.x, s.y, cost as tf.Tensor]);
      }
      msPerStep += (performance.now() - t0) / steps / SEEDS;
      const end = evalLoss();
      finals.push(end.mse);
      drops.push(end.dropped);
      opt.dispose();
      rk.dispose();
      for (const wt of layer.weights) wt.dispose();
    }
    const mean = (xs: number[]): number => xs.reduce((p, q) => p + q, 0) / xs.length;
    const spread = SEEDS > 1 ? ` (${Math.min(...finals).toFixed(3)}-${Math.max(...finals).toFixed(3)})` : '';
    lines.push(`| ${v.name} | ${v.cf} | ${mean(starts).toFixed(4)} | ${mean(finals).toFixed(4)}${spread} | ${mean(drops).toFixed(3)} | ${msPerStep.toFixed(1)} |`);
    console.log(lines[lines.length - 1]);
  }
  for (const s of evalSets) tf.dispose([s.x, s.y]);
  tf.dispose([centers, maps]);
  return lines;
}

/**
 * Warm start: a sequence of batches of fresh tokens through one router kernel (as in training),
 * each solved cold (from zero) and warm (from the previous batch's per-expert potentials, averaged
 * over groups, as `warmStart: true` does). Reports the iterations the default solver ran and the
 * semi-dual value reached, both with the default budget and with a 3-iteration budget.
 */
async function warmStart(backend: string): Promise<string[]> {
  const experts = 8;
  const batches = QUICK ? 4 : 10;
  const groups = TOKENS / GROUP;
  const capacity = Math.ceil(GROUP / experts);
  const kernel = tf.randomNormal([D, experts], 0, 1 / Math.sqrt(D), 'float32', 21);
  const lines: string[] = [];
  lines.push(`\n### Warm start on ${backend} (${batches} batches of ${TOKENS} tokens, groups of ${GROUP}, E ${experts}, capacity ${capacity})\n`);
  lines.push('| budget | cold: mean iterations | warm: mean iterations | mean value warm - cold (per group) |');
  lines.push('|---|---|---|---|');
  for (const budget of [undefined, 3]) {
    let beta: tf.Tensor | null = null;
    let itCold = 0;
    let itWarm = 0;
    let gain = 0;
    for (let t = 0; t < batches; t++) {
      const cost = tf.tidy(() => tf.neg(tf.softmax(tf.reshape(tf.matMul(
        tf.randomNormal([TOKENS, D], 0, 1, 'float32', 100 + t), kernel), [groups, GROUP, experts]))));
      const opts = budget === undefined ? {k: capacity} : {k: capacity, maxIterations: budget};
      const cold = solveSparseOT(cost, opts);
      const init = beta ? tf.tile(tf.reshape(beta, [1, experts]), [groups, 1]) : undefined;
      const warm = solveSparseOT(cost, init ? {...opts, init: {beta: init}} : opts);
      if (t > 0) {
        itCold += cold.iterations;
        itWarm += warm.iterations;
        gain += tf.tidy(() => tf.mean(tf.sub(warm.value, cold.value))).dataSync()[0];
      }
      const nextBeta = tf.mean(warm.beta as tf.Tensor, 0);
      tf.dispose([cost, init, beta].filter((x): x is tf.Tensor => x != null));
      beta = nextBeta;
      cold.dispose();
      warm.dispose();
    }
    tf.dispose(beta as tf.Tensor);
    const n = batches - 1;
    lines.push(`| ${budget ?? 'default'} | ${(itCold / n).toFixed(1)} | ${(itWarm / n).toFixed(1)} | ${(gain / n).toExponential(2)} |`);
    console.log(lines[lines.length - 1]);
  }
  kernel.dispose();
  return lines;
}

async function main(): Promise<void> {
  console.log(`# bench/router.ts${QUICK ? ' --quick' : ''}\n\n${machineDescription()}`);
  const skipTiming = ARGS['skip-timing'] === true;
  const skipTraining = ARGS['skip-training'] === true;
  for (const backend of backendsFromArgs(QUICK ? ['cpu'] : ['wasm'])) {
    await selectBackend(backend);
    const peak = await measureMatMulPeak();
    console.log(`\n${backend}: measured matMul peak ${peak.toFixed(2)} GFLOP/s`);
    if (!skipTiming) await timing(backend, peak);
    if (!skipTraining) await training(backend);
    if (!ARGS['skip-warm-start']) await warmStart(backend);
  }
}

void main();
