/**
 * End-to-end test of the browser example in headless Debian Chromium (driven by playwright-core,
 * never a downloaded browser), on models saved by `tfjs-moe train`: for wasm, webgl and webgpu (SwiftShader) the page reports the
 * backend it was asked for, predicts the held-out digits exactly as Node does (same model files,
 * per-example routing on both sides, so batch composition plays no part), routes every patch to
 * the same expert as Node, and draws the routing overlay. Bad model files show a clear error on
 * the page instead of hanging. Screenshots go to test-artifacts/.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {buildBundle} from '../scripts/build';
import {heldOutDigits} from '../scripts/make-model';
import {trainWithCli} from '../scripts/train-model';
import {startServer, RunningServer} from '../scripts/server';
import {CHROMIUM, launchChromium, LaunchedChromium} from '../scripts/chromium';
import {RoutingProbe, LayerRouting} from '../src/routing';

const ROOT = path.resolve(__dirname, '..');
const MODELS = path.join(ROOT, 'public', 'model', 'e2e'); // gitignored
const ARTIFACTS = path.resolve(ROOT, '..', '..', 'test-artifacts');
/** Pixel noise and trials that decide whether an image's routing has a clear margin. */
const NOISE = 1e-3;
const NOISE_TRIALS = 3;
/** Fewest held-out images (of 20) whose routing must be compared exactly. */
const MIN_CLEAR_MARGIN = 3;

interface PagePrediction {
  backend: string;
  predictions: number[];
  probabilities: number[][];
  msPerImage: number;
  routing: LayerRouting[][];
}

const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(`SKIPPED: browser end-to-end test: ${CHROMIUM} is missing (apt-get install -y chromium; CI installs it in .ci/run)`);
}
const suite = haveChromium ? describe : describe.skip;

suite('browser example in headless Chromium', () => {
  let server: RunningServer;
  let chromium: LaunchedChromium;
  let browser: import('playwright-core').BrowserContext;
  let heldOut: {images: number[][]; labels: number[]};
  const nodeProbs: Record<string, number[][]> = {};
  const nodeRouting: Record<string, LayerRouting[][]> = {};
  /** Per model: the images whose routing has a clear margin (unchanged under input noise). */
  const clearMargin: Record<string, number[]> = {};

  beforeAll(async () => {
    await tf.setBackend('cpu');
    await tf.ready();
    expect(tf.getBackend()).toBe('cpu');
    // The models under test: trained by the real `tfjs-moe train` CLI (a few steps on a slice of
    // the digits, both runs in parallel), served as the files it wrote; plus broken variants.
    fs.rmSync(MODELS, {recursive: true, force: true});
    const runs = path.join(MODELS, 'runs');
    // Every backend runs the sparse-OT model. On webgpu its solver makes no synchronous read
    // (hostReads defaults to false there: tfjs-backend-webgpu's synchronous read destroys the
    // SwiftShader device, see bench/RESULTS-browser.md), so it runs its whole iteration budget
    // where Node's cpu may stop at a convergence check; answers are compared on clear-margin images.
    const sparseOt = await trainWithCli({out: path.join(runs, 'sparse-ot'), router: 'sparse-ot', evalCapacityFactor: 2});
    fs.mkdirSync(path.join(MODELS, 'good'), {recursive: true});
    for (const f of ['model.json', 'weights.bin']) fs.copyFileSync(path.join(sparseOt, f), path.join(MODELS, 'good', f));
    heldOut = heldOutDigits(2);
    fs.writeFileSync(path.join(MODELS, 'good', 'heldout.json'), JSON.stringify(heldOut));
    writeBadModels();
    // Node's answers, from the same files.
    const x = tf.tensor4d(heldOut.images.flat(), [heldOut.images.length, 28, 28, 1]);
    for (const name of ['good']) {
      const loaded = await tf.loadLayersModel(tf.io.fromMemory(readArtifacts(path.join(MODELS, name))));
      const y = loaded.predict(x) as tf.Tensor;
      nodeProbs[name] = softmaxRows((await y.array()) as number[][]);
      const probe = new RoutingProbe(loaded);
      nodeRouting[name] = await probe.route(x);
      y.dispose();
      // Dispatch is discrete: compare it only where it has a clear margin. An image qualifies
      // when its routing in every MoE layer is unchanged under NOISE_TRIALS uniform pixel
      // perturbations of +-NOISE, which move the router's inputs far more than float32
      // differences between backends (~1e-6 relative) do.
      const key = (r: LayerRouting[]): string => JSON.stringify(r.map(routingOf));
      const stable = nodeRouting[name].map(() => true);
      for (let trial = 0; trial < NOISE_TRIALS; trial++) {
        const noisy = tf.tidy(() => tf.clipByValue(tf.add(x, tf.randomUniform(x.shape, -NOISE, NOISE, 'float32', trial + 1)), 0, 1)) as tf.Tensor4D;
        const r = await probe.route(noisy);
        noisy.dispose();
        r.forEach((img, i) => { if (key(img) !== key(nodeRouting[name][i])) stable[i] = false; });
      }
      clearMargin[name] = stable.flatMap((ok, i) => (ok ? [i] : []));
    }
    x.dispose();
    await buildBundle();
    server = await startServer({port: 0});
    chromium = await launchChromium();
    browser = chromium.context;
    fs.mkdirSync(ARTIFACTS, {recursive: true});
  }, 300000);

  afterAll(async () => {
    await chromium?.close();
    await server?.close();
  });

  test.each(['wasm', 'webgl', 'webgpu'])('%s: active backend, predictions and routing equal Node\'s, overlay drawn', async (backend) => {
    const name = 'good';
    const probs = nodeProbs[name];
    const routing = nodeRouting[name];
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}?backend=${backend}&model=model/e2e/${name}/model.json`);
    await page.waitForFunction(() => {
      const s = document.getElementById('status')?.dataset.state;
      return s === 'ready' || s === 'error';
    }, undefined, {timeout: 120000});
    const errorText = await page.locator('#error').textContent();
    expect(await page.locator('#error').isHidden()).toBe(true);
    expect(errorText).toBe('');
    expect(await page.locator('#active-backend').textContent()).toBe(backend);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);

    const result = await page.evaluate(async (imgs) => {
      const demo = (window as unknown as {moeDemo: {predict(i: number[][]): Promise<unknown>}}).moeDemo;
      return demo.predict(imgs);
    }, heldOut.images) as PagePrediction;
    expect(result.backend).toBe(backend);
    // Dispatch is discrete, so answers are compared on the images whose routing has a clear
    // margin (see beforeAll): there every token (patches and class token) must go to the same
    // experts, with the same per-expert load, in every MoE layer
    // (compared exactly, first difference reported), the class must be the same and the
    // probabilities within tolerance. On the other images a token may legitimately flip expert
    // between backends, which changes the output by more than float32 rounding.
    const compared = clearMargin[name];
    console.log(`browser e2e ${backend}: answers compared on ${compared.length} of ${heldOut.images.length} images (the others change routing under +-${NOISE} pixel noise in Node)`);
    expect(compared.length).toBeGreaterThanOrEqual(MIN_CLEAR_MARGIN);
    let tokens = 0;
    const differing: string[] = [];
    for (const i of compared) {
      result.routing[i].forEach((layer, l) => {
        const want = routing[i][l].expertsOfToken;
        layer.expertsOfToken.forEach((experts, t) => {
          tokens++;
          if (JSON.stringify(experts) !== JSON.stringify(want[t])) {
            differing.push(`image ${i} layer ${l} token ${t}: ${JSON.stringify(experts)} vs Node ${JSON.stringify(want[t])}`);
          }
        });
      });
    }
    console.log(`browser e2e ${backend}: ${differing.length} of ${tokens} token routings differ from Node's`);
    expect(differing).toEqual([]);
    expect(compared.map((i) => result.predictions[i])).toEqual(compared.map((i) => probs[i].indexOf(Math.max(...probs[i]))));
    const maxDiff = Math.max(...compared.flatMap((i) => result.probabilities[i].map((v, j) => Math.abs(v - probs[i][j]))));
    // The sparse-OT solver is iterative: float32 differences between backends move its plan
    // slightly (measured 5e-3 on webgl/SwiftShader), so probabilities get 1e-2.
    expect(maxDiff).toBeLessThan(1e-2);

    // The UI path: click a held-out digit, then check the overlay and the load bars.
    // A software GPU on a loaded machine may take longer than Playwright's 30 s default to run
    // the click's synchronous forward pass; the test's own timeout bounds the wait.
    await page.locator('#gallery canvas').first().click({timeout: 180_000});
    await page.waitForFunction(() => document.getElementById('prediction')?.textContent !== '–', undefined, {timeout: 180_000});
    expect(await page.locator('#prediction').textContent()).toBe(String(result.predictions[0]));
    expect(Number(await page.locator('#inference-ms').textContent())).toBeGreaterThan(0);
    const moeLayers = routing[0].length;
    expect(await page.locator('canvas.routing-overlay').count()).toBe(moeLayers);
    if (moeLayers > 0) {
      // Overlay pixels are tinted with the expert colours: not all grey.
      const colourful = await page.evaluate(() => {
        const c = document.querySelector('canvas.routing-overlay') as HTMLCanvasElement;
        const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - d[i + 1]) > 20 || Math.abs(d[i + 1] - d[i + 2]) > 20) n++;
        return n;
      });
      // Kept patches are tinted with their expert's colour, dropped ones grey: at least half of
      // the kept patches' pixels (7x7 each) must be colourful.
      const kept = routing[0][0].expertOfPatch.filter((e) => e >= 0).length;
      expect(kept).toBeGreaterThan(0);
      expect(colourful).toBeGreaterThan(kept * 49 * 0.5);
      expect(await page.locator('.expert-load').count()).toBe(moeLayers * routing[0][0].numExperts);
    } else {
      console.warn('browser e2e: the example model has no MoE layer yet (vmoe missing): overlay not checked');
    }
    await page.screenshot({path: path.join(ARTIFACTS, `browser-${backend}.png`), fullPage: true});
    expect(errors).toEqual([]);
    await page.close();
  }, 300000);

  test('webgpu with a sparse-OT model forced to host reads: a clear error instead of a broken device', async () => {
    const page = await browser.newPage();
    await page.goto(`${server.url}?backend=webgpu&model=model/e2e/host-reads/model.json`);
    await page.waitForFunction(() => ['ready', 'error'].includes(document.getElementById('status')?.dataset.state ?? ''), undefined, {timeout: 60000});
    expect(await page.locator('#active-backend').textContent()).toBe('webgpu');
    await page.locator('#gallery canvas').first().click();
    await page.waitForFunction(() => document.getElementById('status')?.dataset.state === 'error', undefined, {timeout: 60000});
    expect(await page.locator('#error').textContent()).toBe('Inference failed: the sparse-OT router with hostReads: true ' +
      '(in block1_moe, block3_moe) cannot run on webgpu: it reads values back synchronously, which tfjs-backend-webgpu cannot ' +
      'do here. Remove hostReads from its config, or pick wasm or webgl.');
    await page.close();
  }, 120000);

  test.each([
    ['bad-router', /bad model config: .*router/i],
    ['negative-size', /layer "patch_embedding\w*" \(PatchEmbedding\): expected hidden_size to be a positive integer, but got -64/],
    ['bad-shapes', /weights do not match the config/],
    ['missing', /HTTP 404/],
  ])('%s: a clear error on the page, no hang', async (name, expected) => {
    const page = await browser.newPage();
    await page.goto(`${server.url}?backend=cpu&model=model/e2e/${name}/model.json`);
    await page.waitForFunction(() => document.getElementById('status')?.dataset.state === 'error', undefined, {timeout: 60000});
    const text = (await page.locator('#error').textContent()) ?? '';
    expect(text).toContain(`Could not load the model from model/e2e/${name}/model.json: `);
    expect(text).toMatch(expected);
    await page.close();
  }, 120000);
});

/**
 * What is compared of one layer's routing: every expert of every token (class token and patches;
 * a column-sparse OT plan may give a token to several experts) and each expert's load.
 */
function routingOf(l: LayerRouting): {experts: number[][]; load: number[]} {
  return {experts: l.expertsOfToken, load: l.load};
}

function softmaxRows(rows: number[][]): number[][] {
  return rows.map((row) => {
    const sum = row.reduce((a, b) => a + b, 0);
    if (row.every((v) => v >= 0) && Math.abs(sum - 1) < 1e-3) return row;
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / z);
  });
}

function readArtifacts(dir: string): tf.io.ModelArtifacts {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const bin = fs.readFileSync(path.join(dir, 'weights.bin'));
  return {
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest[0].weights,
    weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
  };
}

/** Broken copies of the good model (unknown router, a negative size, weights of wrong shapes), and one forced to host reads. */
function writeBadModels(): void {
  const good = path.join(MODELS, 'good');
  const json = JSON.parse(fs.readFileSync(path.join(good, 'model.json'), 'utf8'));
  const write = (name: string, j: unknown): void => {
    fs.mkdirSync(path.join(MODELS, name), {recursive: true});
    fs.writeFileSync(path.join(MODELS, name, 'model.json'), JSON.stringify(j));
    fs.copyFileSync(path.join(good, 'weights.bin'), path.join(MODELS, name, 'weights.bin'));
  };
  const layers = (j: any): any[] => j.modelTopology.config.layers;
  // Unknown router: rename the router of the MoE layers (or, without MoE layers, a layer class).
  const badRouter = structuredClone(json);
  let renamed = false;
  for (const l of layers(badRouter)) {
    if (l.config && 'router' in l.config) {
      l.config.router = typeof l.config.router === 'string' ? 'no-such-router'
        : {...l.config.router, name: 'no-such-router', className: 'NoSuchRouter'};
      renamed = true;
    }
  }
  if (!renamed) layers(badRouter)[1].class_name = 'NoSuchRouter';
  write('bad-router', badRouter);
  // A negative size in the patch embedding.
  const negative = structuredClone(json);
  const withSize = layers(negative).find((l) => l.config && typeof l.config.hidden_size === 'number');
  withSize.config.hidden_size = -64;
  write('negative-size', negative);
  // Weight shapes that do not match: the first weight's shape is claimed one larger.
  const shapes = structuredClone(json);
  const specs = shapes.weightsManifest[0].weights;
  specs[0].shape = specs[0].shape.map((d: number, i: number) => (i === 0 ? d + 1 : d));
  write('bad-shapes', shapes);
  // Not broken, but refused on webgpu: the sparse-OT routers forced to synchronous reads.
  const hostReads = structuredClone(json);
  for (const l of layers(hostReads)) {
    if (l.config?.router?.config) l.config.router.config.host_reads = true;
  }
  write('host-reads', hostReads);
  fs.copyFileSync(path.join(good, 'heldout.json'), path.join(MODELS, 'host-reads', 'heldout.json')); // the page's gallery
}
