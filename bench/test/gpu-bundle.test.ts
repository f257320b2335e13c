/**
 * The GPU bundle (`bench/gpu-bundle/build.ts`) is self-contained: the gzip archive is built (under
 * the 64 MiB limit), unpacked in a temporary folder outside the repository (no node_modules
 * reachable) and its `run.sh` trains with the bundled Node on wasm (the .wasm files found next to
 * the bundle) and on webgpu (Dawn from the archive; tfjs-backend-webgpu from the bundle). The
 * benchmark itself throws unless `tf.getBackend()` is the backend asked for and prints it; the
 * webgpu run skips, with the reason printed, only when no WebGPU adapter can be created.
 */
import {execFileSync, spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {buildGpuBundle, GPU_BUNDLE_NAME} from '../gpu-bundle/build';

const TINY = ['--quick', '--batch=4', '--variants=layernorm'];

/** The benchmark's table rows: model and images/s. */
function rows(out: string): Array<{model: string; imagesPerSecond: number}> {
  return out.split('\n').filter((l) => /^\| [a-z-]+ \| layernorm \|/.test(l)).map((l) => {
    const cells = l.split('|').map((c) => c.trim());
    return {model: cells[1], imagesPerSecond: Number(cells[7])};
  });
}

describe('GPU bundle', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-moe-gpu-bundle-test-'));
  const dir = path.join(work, GPU_BUNDLE_NAME);
  const run = (args: string[]) => spawnSync(path.join(dir, 'run.sh'), args, {
    cwd: work, encoding: 'utf8', env: {...process.env, NODE_PATH: '', NODE_OPTIONS: ''}, timeout: 300_000,
  });
  afterAll(() => fs.rmSync(work, {recursive: true, force: true}));

  it('builds a gzip archive under 64 MiB that unpacks to the bundle, Dawn, the .wasm files and Node', async () => {
    const {archive, bytes} = await buildGpuBundle(path.join(work, 'bundle.tar.gz'), 'gzip');
    expect(bytes).toBe(fs.statSync(archive).size);
    expect(bytes).toBeLessThan(64 * 2 ** 20);
    execFileSync('tar', ['xzf', archive], {cwd: work});
    fs.rmSync(archive);
    const files = fs.readdirSync(dir, {recursive: true}).map(String).sort();
    for (const f of ['bench.cjs', 'node', 'run.sh', 'tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm',
      'tfjs-backend-wasm-threaded-simd.wasm', path.join('node_modules', 'webgpu', 'dist', `${process.platform}-${process.arch}`, 'dawn.node'),
      path.join('node_modules', '@tensorflow', 'tfjs-backend-webgpu', 'index.js')]) {
      expect(files).toContain(f);
    }
    // The Node binary is this one, whole.
    expect(fs.statSync(path.join(dir, 'node')).size).toBe(fs.statSync(process.execPath).size);
  });

  it('runs the training benchmark on wasm from the unpacked folder', () => {
    const r = run(['--backend=wasm', '--models=dense', ...TINY]);
    if (r.status !== 0) console.error(r.stdout + r.stderr);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('; backend wasm;');
    const table = rows(r.stdout);
    expect(table.map((x) => x.model)).toEqual(['dense']);
    expect(table[0].imagesPerSecond).toBeGreaterThan(0);
  });

  it('runs the training benchmark on webgpu (Dawn) from the unpacked folder', () => {
    const r = run(['--models=dense', ...TINY]); // run.sh's default backend is webgpu
    if (r.status !== 0 && /no WebGPU adapter/.test(r.stderr)) {
      console.warn(`SKIPPED: GPU bundle on webgpu: ${r.stderr.split('\n').find((l) => l.includes('no WebGPU adapter'))}`);
      return;
    }
    if (r.status !== 0) console.error(r.stdout + r.stderr);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('WebGPU adapter: ');
    expect(r.stdout).toContain('; backend webgpu;');
    const table = rows(r.stdout);
    expect(table.map((x) => x.model)).toEqual(['dense']);
    expect(table[0].imagesPerSecond).toBeGreaterThan(0);
  });
});
