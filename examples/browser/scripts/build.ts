/**
 * Bundles src/main.ts and the workspace packages it imports (from their sources) into
 * dist/app.js with esbuild.
 */
import * as esbuild from 'esbuild';
import * as path from 'path';
import {parseArgs} from 'util';

const here = path.resolve(__dirname, '..');
const packages = path.resolve(here, '../../packages');

/** Builds the bundle; returns the output file. */
export async function buildBundle(options: {minify?: boolean} = {}): Promise<string> {
  const outfile = path.join(here, 'dist', 'app.js');
  await esbuild.build({
    entryPoints: [path.join(here, 'src', 'main.ts')],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: true,
    // No keepNames: its __name() helper would end up in the function that tfjs-backend-wasm
    // stringifies into its pthread workers, where __name is undefined (wasm with threads fails).
    keepNames: false,
    minify: options.minify ?? false,
    logLevel: 'warning',
    alias: {
      '@tfjs-moe/router': path.join(packages, 'router/src/index.ts'),
      '@tfjs-moe/models': path.join(packages, 'models/src/index.ts'),
    },
    // Node built-ins that tfjs references behind environment checks.
    external: ['fs', 'path', 'crypto', 'worker_threads', 'perf_hooks', 'os', 'util'],
    define: {'process.env.NODE_ENV': '"production"'},
  });
  return outfile;
}

if (require.main === module) {
  buildBundle({minify: parseArgs({options: {minify: {type: 'boolean'}}, strict: true, allowPositionals: false}).values.minify === true}).then((f) => console.log(`wrote ${f}`)).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
