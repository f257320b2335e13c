/**
 * The browser example: picks a backend (and shows the one really active), loads the model,
 * predicts a drawn or held-out digit, and draws the routing of every MoE layer as a coloured
 * overlay on the image, with per-expert load bars. `window.moeDemo` exposes the same actions to
 * the end-to-end test.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import {setWasmPaths} from '@tensorflow/tfjs-backend-wasm';
import '@tfjs-moe/models';
import {activateBackend} from '@tfjs-moe/router'; // also registers every router for tf.loadLayersModel
import {ModelLoadError, loadModelChecked} from './model-loader';
import {toMnist} from './preprocess';
import {LayerRouting, RoutingProbe} from './routing';
import {patchWebGPU} from './webgpu-patch';
import {webgpuSyncReadProblem} from './sync-read-routers';
import {InferenceBenchOptions, InferenceBenchResult, runInferenceBenchmark} from './inference-bench';

setWasmPaths('/wasm/');
patchWebGPU();

/** Distinct colours for up to 12 experts (then they repeat). */
const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#46f0f0', '#f032e6',
  '#bcf60c', '#008080', '#9a6324', '#800000', '#000075'];

interface HeldOut {
  images: number[][];
  labels: number[];
}

/** What one prediction returns (also to the end-to-end test). */
export interface Prediction {
  backend: string;
  predictions: number[];
  probabilities: number[][];
  /** Wall time of the forward pass (including reading the result back), per image, in ms. */
  msPerImage: number;
  routing: LayerRouting[][];
}

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const modelUrl = params.get('model') ?? 'model/model.json';
let model: tf.LayersModel | undefined;
let probe: RoutingProbe | undefined;
let heldOut: HeldOut = {images: [], labels: []};
let imageSize = 28;

function setStatus(state: 'loading' | 'ready' | 'error' | 'busy', text: string): void {
  const s = $('status');
  s.dataset.state = state;
  s.textContent = text;
}

function showError(message: string): void {
  const box = $('error');
  box.hidden = false;
  box.textContent = message;
  setStatus('error', 'error');
}

/** Switches backend and asserts it (`activateBackend` reads the switch back: tf.setBackend fails quietly). */
async function switchBackend(name: string): Promise<string> {
  setStatus('busy', `starting ${name}…`);
  const why = await activateBackend(name);
  const active = tf.getBackend();
  $('active-backend').textContent = active ?? 'none';
  ($('backend-select') as HTMLSelectElement).value = active ?? name;
  if (why !== undefined) throw new Error(`backend ${name} could not be started (${why}); active backend is ${active}`);
  setStatus('ready', 'ready');
  return active;
}

function softmaxIfNeeded(row: number[]): number[] {
  const sum = row.reduce((a, b) => a + b, 0);
  if (row.every((v) => v >= 0) && Math.abs(sum - 1) < 1e-3) return row;
  const m = Math.max(...row);
  const e = row.map((v) => Math.exp(v - m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}

/** Runs the model (and the routing probe) on `<[0,1]>[n][size*size]` images. */
/** Throws a clear error instead of letting a sync-reading router break the webgpu device. */
function checkRoutersForBackend(): void {
  if (tf.getBackend() !== 'webgpu' || !probe) return;
  const problem = webgpuSyncReadProblem(probe.layers);
  if (problem) throw new Error(problem);
}

async function predict(images: number[][]): Promise<Prediction> {
  if (!model || !probe) throw new Error('the model is not loaded');
  checkRoutersForBackend();
  const n = images.length;
  const flat = new Float32Array(n * imageSize * imageSize);
  images.forEach((img, i) => flat.set(img, i * imageSize * imageSize));
  const x = tf.tensor4d(flat, [n, imageSize, imageSize, 1]);
  // Warm-up pass on a fresh backend compiles shaders / kernels; time the second one.
  tf.tidy(() => model!.predict(x));
  const t0 = performance.now();
  const y = model.predict(x) as tf.Tensor;
  const values = (await y.array()) as number[][];
  const ms = performance.now() - t0;
  y.dispose();
  const routing = await probe.route(x);
  x.dispose();
  const probabilities = values.map(softmaxIfNeeded);
  const predictions = probabilities.map((p) => p.indexOf(Math.max(...p)));
  return {backend: tf.getBackend(), predictions, probabilities, msPerImage: ms / n, routing};
}

function drawImage(ctx: CanvasRenderingContext2D, img: ArrayLike<number>, size: number): void {
  const data = ctx.createImageData(size, size);
  for (let i = 0; i < size * size; i++) {
    const v = Math.round(255 * Math.min(1, Math.max(0, img[i])));
    data.data.set([v, v, v, 255], 4 * i);
  }
  ctx.putImageData(data, 0, 0);
}

function renderPrediction(p: Prediction, img: ArrayLike<number>): void {
  $('prediction').textContent = String(p.predictions[0]);
  $('inference-ms').textContent = p.msPerImage.toFixed(1);
  $('inference-backend').textContent = p.backend;
  $('probabilities').innerHTML = p.probabilities[0]
    .map((v, d) => `<div class="bar">${d} <span class="fill" style="width:${(200 * v).toFixed(0)}px"></span> ${(100 * v).toFixed(1)}%</div>`)
    .join('');
  const layers = p.routing[0] ?? [];
  const numExperts = Math.max(0, ...layers.map((l) => l.numExperts));
  $('legend').innerHTML = layers.length === 0 ? '(this model has no MoE layers)' : Array.from({length: numExperts}, (_, e) =>
    `<span style="background:${PALETTE[e % PALETTE.length]}">expert ${e}</span>`).join('') +
    '<span style="background:#777">dropped</span>';
  const routingBox = $('routing');
  routingBox.innerHTML = '';
  const loadBox = $('load');
  loadBox.innerHTML = '';
  for (const layer of layers) {
    const fig = document.createElement('figure');
    const canvas = document.createElement('canvas');
    canvas.width = imageSize;
    canvas.height = imageSize;
    canvas.className = 'routing-overlay';
    canvas.dataset.layer = layer.layer;
    const ctx = canvas.getContext('2d')!;
    drawImage(ctx, img, imageSize);
    const grid = Math.round(Math.sqrt(layer.expertOfPatch.length));
    const patch = imageSize / grid;
    ctx.globalAlpha = 0.5;
    layer.expertOfPatch.forEach((e, i) => {
      ctx.fillStyle = e < 0 ? '#777' : PALETTE[e % PALETTE.length];
      ctx.fillRect((i % grid) * patch, Math.floor(i / grid) * patch, patch, patch);
    });
    ctx.globalAlpha = 1;
    const cap = document.createElement('figcaption');
    cap.textContent = layer.layer;
    fig.append(canvas, cap);
    routingBox.append(fig);
    const total = layer.load.reduce((a, b) => a + b, 0) || 1;
    loadBox.insertAdjacentHTML('beforeend', `<h4>${layer.layer}</h4>` + layer.load.map((c, e) =>
      `<div class="bar expert-load" data-expert="${e}">expert ${e} <span class="fill" style="width:${(200 * c / total).toFixed(0)}px;background:${PALETTE[e % PALETTE.length]}"></span> ${c} tokens</div>`).join(''));
  }
}

async function predictAndRender(img: number[]): Promise<Prediction> {
  setStatus('busy', 'predicting…');
  try {
    const p = await predict([img]);
    renderPrediction(p, img);
    setStatus('ready', 'ready');
    return p;
  } catch (e) {
    showError(`Inference failed: ${(e as Error).message}`);
    throw e;
  }
}

function setupPad(): () => number[] {
  const pad = $('pad') as HTMLCanvasElement;
  const ctx = pad.getContext('2d', {willReadFrequently: true})!;
  const clear = (): void => {
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, pad.width, pad.height);
  };
  clear();
  let drawing = false;
  let last: [number, number] | undefined;
  const pos = (e: PointerEvent): [number, number] => {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
  };
  pad.addEventListener('pointerdown', (e) => { drawing = true; last = pos(e); pad.setPointerCapture(e.pointerId); });
  pad.addEventListener('pointerup', () => { drawing = false; last = undefined; });
  pad.addEventListener('pointermove', (e) => {
    if (!drawing || !last) return;
    const p = pos(e);
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = 20;
    ctx.lineCap = 'round';
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...p);
    ctx.stroke();
    last = p;
  });
  $('clear').addEventListener('click', clear);
  return () => {
    const rgba = ctx.getImageData(0, 0, pad.width, pad.height).data;
    const grey = new Float32Array(pad.width * pad.height);
    for (let i = 0; i < grey.length; i++) grey[i] = rgba[4 * i] / 255;
    return Array.from(toMnist(grey, pad.width, pad.height, imageSize));
  };
}

function setupGallery(): void {
  const gallery = $('gallery');
  heldOut.images.forEach((img, i) => {
    const c = document.createElement('canvas');
    c.width = imageSize;
    c.height = imageSize;
    c.title = `held-out #${i} (label ${heldOut.labels[i]})`;
    drawImage(c.getContext('2d')!, img, imageSize);
    c.addEventListener('click', () => void predictAndRender(img).catch(() => undefined));
    gallery.append(c);
  });
}

async function main(): Promise<void> {
  const readPad = setupPad();
  const select = $('backend-select') as HTMLSelectElement;
  const wanted = params.get('backend') ?? 'wasm';
  await switchBackend(wanted).catch((e) => showError((e as Error).message));
  select.addEventListener('change', () => {
    $('error').hidden = true;
    void switchBackend(select.value).catch((e) => showError((e as Error).message));
  });
  if (modelUrl === 'none') {
    // Benchmark pages (`?model=none`) build their own models through moeDemo.benchmark.
    setStatus('ready', 'ready (no model loaded)');
    return;
  }
  setStatus('loading', 'loading model…');
  model = await loadModelChecked(modelUrl);
  const shape = model.inputs[0].shape;
  imageSize = shape[1] ?? 28;
  probe = new RoutingProbe(model);
  const heldOutUrl = new URL('heldout.json', new URL(modelUrl, location.href)).href;
  const res = await fetch(heldOutUrl).catch(() => undefined);
  if (res?.ok) heldOut = await res.json();
  setupGallery();
  $('predict').addEventListener('click', () => void predictAndRender(readPad()).catch(() => undefined));
  setStatus('ready', 'ready');
}

const ready = main().catch((e) => {
  showError(e instanceof ModelLoadError ? e.message : `Error: ${(e as Error).message ?? e}`);
  throw e;
});

/**
 * Runs the inference benchmark (dense ViT vs V-MoEs built from seeds) on `backend` in this page;
 * `bench/inference.ts` calls it through playwright-core.
 */
async function benchmark(backend: string, options: InferenceBenchOptions = {}): Promise<InferenceBenchResult> {
  await switchBackend(backend);
  setStatus('busy', `benchmarking on ${backend}…`);
  try {
    return await runInferenceBenchmark(options);
  } finally {
    setStatus('ready', 'ready');
  }
}

(window as unknown as {moeDemo: unknown}).moeDemo = {
  ready,
  switchBackend,
  predict,
  predictAndRender,
  benchmark,
  /** The page's tfjs, for diagnostics from the test or the console. */
  tf,
  get heldOut() { return heldOut; },
};
