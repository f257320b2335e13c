/**
 * Packs the training benchmark (bench/train-step.ts) for a GPU machine without npm or network:
 * one esbuild bundle (tfjs, the three packages, the benchmark), tfjs-backend-wasm's .wasm files,
 * Dawn (`dawn.node` with the `webgpu` package's manifest and entry point), this Node binary and a
 * run script, in one xz-compressed tar archive (checked to be under 64 MiB).
 *
 * `npx tsx bench/gpu-bundle/build.ts [--out=bench/results/tfjs-moe-gpu-bench.tar.xz]`
 *
 * On the GPU machine (Linux x64, as this Node and Dawn are):
 * `tar xJf tfjs-moe-gpu-bench.tar.xz && ./tfjs-moe-gpu-bench/run.sh --variants=layernorm`
 * (arguments go to the benchmark; `--backend=webgpu` is the default of run.sh, a later
 * `--backend=wasm` overrides it). Dawn uses the platform's native backend (Vulkan on Linux) and
 * falls back to OpenGL through EGL.
 */
import {execFileSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {parseArgs} from 'util';
import * as esbuild from 'esbuild';

const ROOT = path.resolve(__dirname, '..', '..');
const LIMIT_BYTES = 64 * 2 ** 20;
const NAME = 'tfjs-moe-gpu-bench';

const RUN_SH = `#!/bin/sh
# Runs the tfjs-moe training benchmark with the bundled Node and Dawn; arguments go to the benchmark.
here="$(cd "$(dirname "$0")" && pwd)"
# Dawn picks the platform's native backend (Vulkan on Linux) and falls back to OpenGL (EGL).
export EGL_PLATFORM="\${EGL_PLATFORM:-surfaceless}"
exec "$here/node" "$here/bench.cjs" --backend=webgpu "$@"
`;

/** Builds the archive and returns its path and size in bytes. */
export async function buildGpuBundle(out: string): Promise<{archive: string; bytes: number}> {
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-moe-gpu-'));
  const dir = path.join(stage, NAME);
  fs.mkdirSync(dir);
  await esbuild.build({
    entryPoints: [path.join(ROOT, 'bench', 'train-step.ts')],
    outfile: path.join(dir, 'bench.cjs'),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    minify: true,
    // Loaded at run time from the archive's node_modules; optional tfjs-node is not shipped.
    external: ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'],
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
  // Dawn: setupBackend resolves webgpu/package.json and loads dist/<platform>-<arch>/dawn.node.
  const webgpu = path.dirname(require.resolve('webgpu/package.json'));
  const platformDir = `${process.platform}-${process.platform === 'darwin' ? 'universal' : process.arch}`;
  const dawnDir = path.join(dir, 'node_modules', 'webgpu', 'dist', platformDir);
  fs.mkdirSync(dawnDir, {recursive: true});
  for (const f of ['package.json', 'index.js', 'LICENSE.md']) fs.copyFileSync(path.join(webgpu, f), path.join(dir, 'node_modules', 'webgpu', f));
  fs.copyFileSync(path.join(webgpu, 'dist', platformDir, 'dawn.node'), path.join(dawnDir, 'dawn.node'));
  fs.copyFileSync(process.execPath, path.join(dir, 'node'));
  fs.chmodSync(path.join(dir, 'node'), 0o755);
  fs.writeFileSync(path.join(dir, 'run.sh'), RUN_SH, {mode: 0o755});
  fs.mkdirSync(path.dirname(out), {recursive: true});
  execFileSync('tar', ['-C', stage, '-cf', path.resolve(out), '-I', 'xz -9 -T0', NAME]);
  fs.rmSync(stage, {recursive: true, force: true});
  const bytes = fs.statSync(out).size;
  if (bytes >= LIMIT_BYTES) throw new Error(`${out} is ${(bytes / 2 ** 20).toFixed(1)} MiB, over the 64 MiB limit`);
  return {archive: out, bytes};
}

if (require.main === module) {
  const {values} = parseArgs({options: {out: {type: 'string', default: path.join(ROOT, 'bench', 'results', `${NAME}.tar.xz`)}}});
  void buildGpuBundle(values.out!).then(({archive, bytes}) => {
    console.log(`${archive}: ${(bytes / 2 ** 20).toFixed(1)} MiB (limit 64 MiB)`);
  });
}
