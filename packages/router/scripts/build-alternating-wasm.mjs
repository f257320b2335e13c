#!/usr/bin/env node
// Compiles assembly/alternating.ts (AssemblyScript: the host alternating solver's group loop) with
// asc and writes the bytes, base64, to src/ot/solvers/alternating-module.ts. Run after editing
// alternating.ts:
//
//   node packages/router/scripts/build-alternating-wasm.mjs
//
// `--check` writes nothing and exits 1 when alternating-module.ts does not hold alternating.ts's bytes.
import {readFileSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {embedMain} from './embed-wasm.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const sourcePath = join(here, '../assembly/alternating.ts');
const outPath = join(here, '../src/ot/solvers/alternating-module.ts');

/** The compiled bytes of alternating.ts (asc -O3, SIMD, stub runtime, no assertions). */
export async function buildAlternating() {
  const asc = (await import('assemblyscript/asc')).default;
  const result = await asc.compileString({'alternating.ts': readFileSync(sourcePath, 'utf8')}, {optimizeLevel: 3, shrinkLevel: 0, runtime: 'stub', noAssert: true, enable: ['simd']});
  if (result.error) throw new Error(`asc failed: ${result.error.message}\n${result.stderr.toString()}`);
  return Buffer.from(result.binary);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await embedMain(process.argv, {
    build: buildAlternating, outPath, outName: 'alternating-module.ts',
    script: 'build-alternating-wasm.mjs', source: 'assembly/alternating.ts', made: 'compiled', constName: 'ALTERNATING_WASM_BASE64',
  });
}
