/**
 * Diagnoses synchronous read-back on WebGPU in Chromium, the reason the sparse-OT router cannot
 * run on webgpu here: `npx tsx examples/browser/scripts/webgpu-readback-probe.ts [--headed]
 * [--canvas=offscreen|html] [--flags="--a --b"]`.
 *
 * Step 1 uses the raw WebGPU API only (no tfjs): a buffer read-back, then a WebGPU canvas
 * context configured with the device and `getCurrentTexture()` (what tfjs-backend-webgpu's
 * `readSync` does), then the read-back again, and whether the device was lost. Step 2 does the
 * same through tfjs on a device created afterwards: `data()`, `dataSync()`, `data()`, and a larger
 * op 300 ms later. On this machine (Chromium 156, SwiftShader, no GPU) the canvas step destroys
 * the raw device at once; tfjs's `dataSync` then returns correct values (a canvas was already
 * used once) but tfjs's device is lost shortly after (step 2d fails); when tfjs's device is the
 * first to meet a canvas, `dataSync` returns zeros. Run it on a machine with a GPU (`--flags=""`
 * drops the SwiftShader flags) to see whether a real GPU behaves differently.
 * `--headed` needs a display (e.g. `xvfb-run -a npx tsx ...`).
 */
import {parseArgs} from 'util';
import {buildBundle} from './build';
import {CHROMIUM_FLAGS, launchChromium} from './chromium';
import {startServer} from './server';

const ARGS = parseArgs({options: {flags: {type: 'string'}, canvas: {type: 'string'}, headed: {type: 'boolean'}}, strict: true, allowPositionals: false}).values;
const arg = (name: 'flags' | 'canvas'): string | undefined => ARGS[name];

/** Runs in the page (as a string, so no bundler helpers leak in); returns one line per step. */
const PAGE_PROBE = (canvasKind: string): string => `(async () => {
  const out = [];
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return ['no WebGPU adapter'];
  const info = adapter.info || {};
  out.push('adapter: ' + [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' '));
  const device = await adapter.requestDevice();
  device.lost.then((i) => out.push('device lost: ' + i.reason + ' (' + i.message + ')'));
  async function readBack(tag) {
    try {
      const dst = device.createBuffer({size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
      const src = device.createBuffer({size: 16, usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true});
      new Float32Array(src.getMappedRange()).set([1, 2, 3, 4]);
      src.unmap();
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(src, 0, dst, 0, 16);
      device.queue.submit([enc.finish()]);
      await dst.mapAsync(GPUMapMode.READ);
      out.push(tag + ': buffer read-back ' + Array.from(new Float32Array(dst.getMappedRange())).join(','));
    } catch (e) {
      out.push(tag + ': buffer read-back threw: ' + e.message);
    }
  }
  await readBack('1a before any canvas');
  try {
    const c = ${JSON.stringify(canvasKind)} === 'html'
      ? Object.assign(document.createElement('canvas'), {width: 256, height: 256}) : new OffscreenCanvas(256, 256);
    const ctx = c.getContext('webgpu');
    ctx.configure({device, format: 'bgra8unorm', usage: GPUTextureUsage.COPY_DST, alphaMode: 'opaque'});
    const tex = ctx.getCurrentTexture();
    out.push('1b ${canvasKind} canvas context configured, getCurrentTexture ' + tex.width + 'x' + tex.height);
  } catch (e) {
    out.push('1b canvas step threw: ' + e.message);
  }
  await readBack('1c after the canvas step');
  const tf = window.moeDemo.tf;
  await window.moeDemo.switchBackend('webgpu');
  const x = tf.tensor([0.5, -0.25, 1.5, 2]);
  async function step(tag, f) {
    try { out.push(tag + ': ' + Array.from(await f()).join(',')); } catch (e) { out.push(tag + ' threw: ' + e.message); }
  }
  await step('2a tfjs webgpu data() of 2x', () => tf.mul(x, 2).data());
  await step('2b tfjs webgpu dataSync() of 3x', () => tf.mul(x, 3).dataSync());
  tf.backend().device.lost.then((i) => out.push('tfjs device lost: ' + i.reason + ' (' + i.message + ')'));
  await step('2c tfjs webgpu data() of 4x after dataSync', () => tf.mul(x, 4).data());
  await new Promise((r) => setTimeout(r, 300));
  await step('2d tfjs webgpu data() of a 256x256 matMul sum, 300 ms later', () => tf.sum(tf.matMul(tf.ones([256, 256]), tf.ones([256, 256]))).data());
  await new Promise((r) => setTimeout(r, 200));
  return out;
})()`;

async function main(): Promise<void> {
  const flagsArg = arg('flags');
  const args = flagsArg === undefined ? CHROMIUM_FLAGS
    : ['--no-sandbox', '--enable-unsafe-webgpu', ...flagsArg.split(' ').filter(Boolean)];
  await buildBundle();
  const server = await startServer({port: 0});
  const browser = await launchChromium({args, headless: ARGS.headed !== true});
  try {
    const page = await browser.context.newPage();
    await page.goto(`${server.url}?backend=cpu&model=none`);
    await page.waitForFunction(() => document.getElementById('status')?.dataset.state === 'ready', undefined, {timeout: 60000});
    console.log(`Chromium ${browser.context.browser()?.version() ?? '?'}, flags: ${args.join(' ')}`);
    const lines = await page.evaluate(PAGE_PROBE(arg('canvas') ?? 'offscreen')) as string[];
    for (const line of lines) console.log(line);
  } finally {
    await browser.close();
    await server.close();
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
