/**
 * Inference benchmark (issue 5 §4): latency per image (batch 1) and throughput (batch 32) of the
 * dense ViT and of V-MoEs of the same size (top-1 and sparse-OT routing, 4 experts in every other
 * block, per-example routing), on every backend in Node and in headless Chromium, each given as a
 * ratio to the dense ViT on the same backend in the same run and as a fraction of that backend's
 * matMul peak.
 *
 *   npx tsx bench/inference.ts [--quick] [--backends=cpu,wasm,webgpu] [--browser=wasm,webgl,webgpu|none]
 *                              [--preset=mnist-tiny] [--depth=4] [--experts=4] [--reps=5]
 *                              [--force-webgpu-sync-reads]
 *
 * Node: cpu, wasm, and webgpu through Dawn (`setupBackend('webgpu')`; without a GPU, Dawn's
 * OpenGL backend on Mesa llvmpipe). Chromium: the example page (`?model=none`) runs the same code
 * (`examples/browser/src/inference-bench.ts`) through `window.moeDemo.benchmark`; webgl and
 * webgpu there run on SwiftShader when the machine has no GPU. The peak in Node comes from
 * `bench/common.ts`'s `measureMatMulPeak`; in the page from the same measurement in
 * inference-bench.ts (`matMulPeak`).
 *
 * On webgpu the OT solver makes no synchronous read-back (its `hostReads` option defaults to off
 * there), so the sparse-OT V-MoE runs; only a model saved with `hostReads: true` is reported as
 * not run (synchronous reads fail in Node and destroy the device in Chromium without a GPU;
 * `--force-webgpu-sync-reads` tries anyway).
 *
 * Models are built from seeds by default. With `--trained[=steps]` (default 60 steps) the dense
 * ViT, the top-1 V-MoE and the sparse-OT V-MoE are first trained by the `tfjs-moe train` CLI
 * (preset mnist-tiny, depth 4, 800 digits) into examples/browser/public/model/bench/ (gitignored)
 * and those files are timed, in Node and in the page (`--reuse`: time the files of an earlier
 * `--trained` run without training again): the sparse-OT solver's iteration count
 * depends on the router's logits, so trained routers can time differently from seeded ones.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {backendsFromArgs, benchArgs, machineDescription, measureMatMulPeak, QUICK, selectBackend} from './common';
import {formatInferenceTable, InferenceBenchOptions, InferenceBenchResult, runInferenceBenchmark} from '../examples/browser/src/inference-bench';
import {releaseWebGPU, setupBackend} from '@tfjs-moe/training';
import '@tfjs-moe/router'; // registers the routers for tf.loadLayersModel
import {buildBundle} from '../examples/browser/scripts/build';
import {launchChromium} from '../examples/browser/scripts/chromium';
import {startServer} from '../examples/browser/scripts/server';
import {trainWithCli} from '../examples/browser/scripts/train-model';

// `--trained` takes an optional step count (`--trained=120`); util.parseArgs has no optional
// values, so a bare `--trained` is read as `--trained=60`.
if (process.argv.includes('--trained')) process.argv[process.argv.indexOf('--trained')] = '--trained=60';
const ARGS = benchArgs({
  preset: {type: 'string'}, depth: {type: 'string'}, experts: {type: 'string'}, batches: {type: 'string'}, reps: {type: 'string'},
  trained: {type: 'string'}, browser: {type: 'string'}, reuse: {type: 'boolean'}, 'force-webgpu-sync-reads': {type: 'boolean'},
});
const arg = (name: 'preset' | 'depth' | 'experts' | 'batches' | 'reps' | 'trained' | 'browser'): string | undefined => ARGS[name];

const TRAINED = ARGS.trained !== undefined;
const PUBLIC = path.resolve(__dirname, '../examples/browser/public');

const OPTIONS: InferenceBenchOptions = {
  preset: (arg('preset') ?? 'mnist-tiny') as InferenceBenchOptions['preset'],
  depth: Number(arg('depth') ?? (QUICK && !TRAINED ? 2 : 4)),
  numExperts: Number(arg('experts') ?? 4),
  batches: (arg('batches') ?? (QUICK ? '1,8' : '1,32')).split(',').map(Number),
  reps: Number(arg('reps') ?? (QUICK ? 3 : 5)),
  warmup: 2,
  runSyncReadRoutersOnWebGPU: ARGS['force-webgpu-sync-reads'] === true,
};

/** Trains the three models with the CLI (in parallel) and returns their specs (page-relative URLs). */
async function trainModels(): Promise<InferenceBenchOptions['models']> {
  const steps = Number(arg('trained') ?? 60);
  const routers = [['dense', 'vit (dense, trained)'], ['topk', 'vmoe topk (k=1, trained)'], ['sparse-ot', 'vmoe sparse-ot (trained)']];
  const t0 = Date.now();
  const reuse = ARGS.reuse === true &&
    routers.every(([router]) => fs.existsSync(path.join(PUBLIC, 'model', 'bench', router, 'model', 'model.json')));
  const dirs = reuse ? routers.map(([router]) => path.join(PUBLIC, 'model', 'bench', router, 'model')) :
    await Promise.all(routers.map(([router]) => trainWithCli({
      out: path.join(PUBLIC, 'model', 'bench', router), router, steps, examples: 800, timeoutMs: 3600000,
    })));
  console.log(reuse ? `reusing the models trained by an earlier --trained run (${path.join(PUBLIC, 'model', 'bench')})`
    : `trained ${routers.map((r) => r[0]).join(', ')} for ${steps} steps with tfjs-moe train in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  for (const [router] of routers) {
    const summary = JSON.parse(fs.readFileSync(path.join(PUBLIC, 'model', 'bench', router, 'summary.json'), 'utf8'));
    console.log(`  ${router}: held-out accuracy ${(100 * summary.accuracy).toFixed(1)}% on ${summary.heldOutExamples} digits`);
  }
  return routers.map(([, label], i) => ({label, url: path.relative(PUBLIC, dirs[i]).split(path.sep).join('/') + '/model.json'}));
}

/** Node loader for page-relative model URLs: reads model.json and weights.bin under public/. */
async function loadFromPublic(url: string): Promise<tf.LayersModel> {
  const dir = path.dirname(path.join(PUBLIC, url));
  const json = JSON.parse(fs.readFileSync(path.join(PUBLIC, url), 'utf8'));
  const bin = fs.readFileSync(path.join(dir, json.weightsManifest[0].paths[0]));
  return tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest[0].weights,
    weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
  }));
}

async function node(backend: string): Promise<InferenceBenchResult> {
  if (backend === 'webgpu') {
    // Dawn reads EGL_PLATFORM when it starts; without a GPU it needs the surfaceless platform.
    process.env.EGL_PLATFORM ??= 'surfaceless';
    const setup = await setupBackend('webgpu');
    console.log(`webgpu adapter: ${JSON.stringify(setup.adapter)}`);
  }
  await selectBackend(backend);
  const peakGflops = await measureMatMulPeak();
  return runInferenceBenchmark({...OPTIONS, peakGflops, loadModel: loadFromPublic});
}

async function chromium(backends: string[]): Promise<Array<{where: string; result: InferenceBenchResult}>> {
  await buildBundle({minify: true});
  const server = await startServer({port: 0});
  const browser = await launchChromium();
  const out: Array<{where: string; result: InferenceBenchResult}> = [];
  try {
    const version = browser.context.browser()?.version() ?? '?';
    for (const backend of backends) {
      const page = await browser.context.newPage();
      page.setDefaultTimeout(600000);
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${server.url}?backend=${backend}&model=none`);
      await page.waitForFunction(() => ['ready', 'error'].includes(document.getElementById('status')?.dataset.state ?? ''));
      const active = await page.locator('#active-backend').textContent();
      if (active !== backend) {
        console.log(`Chromium ${backend}: not active (page says ${active}; ${await page.locator('#error').textContent()})`);
        await page.close();
        continue;
      }
      const adapter = backend === 'webgpu' ? await page.evaluate(async () => {
        const a = await (navigator as any).gpu?.requestAdapter();
        const i = a?.info;
        return i ? `${i.vendor} ${i.architecture} ${i.device} ${i.description}`.trim() : 'unknown';
      }) : backend === 'webgl' ? await page.evaluate(() => {
        const gl = document.createElement('canvas').getContext('webgl2');
        const ext = gl?.getExtension('WEBGL_debug_renderer_info');
        return ext ? String(gl!.getParameter(ext.UNMASKED_RENDERER_WEBGL)) : 'unknown';
      }) : 'n/a';
      const t0 = Date.now();
      const result = await page.evaluate(async ([b, o]) => {
        const demo = (window as unknown as {moeDemo: {benchmark(b: string, o: unknown): Promise<unknown>}}).moeDemo;
        return demo.benchmark(b as string, o);
      }, [backend, OPTIONS] as const) as InferenceBenchResult;
      console.log(`Chromium ${version} ${backend} (${adapter}): ${((Date.now() - t0) / 1000).toFixed(0)} s` +
        (errors.length ? `; page errors: ${errors.join(' | ')}` : ''));
      out.push({where: `Chromium ${version}`, result});
      await page.close();
    }
  } finally {
    await browser.close();
    await server.close();
  }
  return out;
}

async function main(): Promise<void> {
  console.log(machineDescription());
  if (TRAINED) OPTIONS.models = await trainModels();
  console.log(`settings: ${JSON.stringify(OPTIONS)}${QUICK ? ' (--quick)' : ''}`);
  const rows: Array<{where: string; result: InferenceBenchResult}> = [];
  for (const backend of backendsFromArgs(['cpu', 'wasm', 'webgpu'])) {
    const t0 = Date.now();
    try {
      rows.push({where: `Node ${process.version}`, result: await node(backend)});
      console.log(`Node ${backend}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    } catch (e) {
      console.log(`Node ${backend}: not run: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  await releaseWebGPU();
  const browserArg = arg('browser') ?? 'wasm,webgl,webgpu';
  if (browserArg !== 'none') {
    try {
      rows.push(...await chromium(browserArg.split(',')));
    } catch (e) {
      console.log(`Chromium: not run: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  console.log('\n' + formatInferenceTable(rows));
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
