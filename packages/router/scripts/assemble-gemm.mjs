#!/usr/bin/env node
// Assembles src/backend/gemm.wat (WebAssembly text) with wabt and writes the bytes, base64, to
// src/backend/gemm-module.ts. Run after editing gemm.wat:
//
//   node packages/router/scripts/assemble-gemm.mjs
//
// `--check` writes nothing and exits 1 when gemm-module.ts does not hold gemm.wat's bytes.
import {readFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {embedMain} from './embed-wasm.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const watPath = join(here, '../src/backend/gemm.wat');
const outPath = join(here, '../src/backend/gemm-module.ts');

/** The assembled bytes of gemm.wat. */
export async function assembleGemm() {
  const wabt = await createRequire(import.meta.url)('wabt')();
  const parsed = wabt.parseWat('gemm.wat', readFileSync(watPath, 'utf8'), {simd: true});
  try {
    parsed.validate();
    return Buffer.from(parsed.toBinary({}).buffer);
  } finally {
    parsed.destroy();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await embedMain(process.argv, {
    build: assembleGemm, outPath, outName: 'gemm-module.ts',
    script: 'assemble-gemm.mjs', source: 'gemm.wat', made: 'assembled', constName: 'GEMM_WASM_BASE64',
  });
}
