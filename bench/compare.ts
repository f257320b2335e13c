/**
 * Router comparison at the same budget (issue 4, section 5): the dense ViT, top-k, expert choice,
 * Sinkhorn, and sparse OT in each gradient mode, each trained with the same data, steps, batch
 * size, schedule and seeds; held-out accuracy, max/mean load and dropped fraction, images/s and
 * the fraction of the backend's measured matMul peak (bench/common.ts) that training reaches.
 *
 * Run:   npx tsx bench/compare.ts [--quick] [--backends=wasm] [--steps=N] [--seeds=0,1,2] [--routers=...]
 * Full:  npx tsx bench/compare.ts --backends=wasm --steps=250 --seeds=0,1,2
 * Also:  the same table comes from `npx tfjs-moe compare`.
 */
import * as path from 'path';
import {QUICK, backendsFromArgs, machineDescription, measureMatMulPeak, selectBackend} from './common';
import {compareRouters, DEFAULT_VARIANTS, parseVariants} from '../packages/training/src/compare';
import type {BackendRequest} from '../packages/training/src/backend';

function arg(name: string): string | undefined {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a?.slice(name.length + 3);
}

async function main(): Promise<void> {
  const steps = Number(arg('steps') ?? (QUICK ? 20 : 250));
  const seeds = (arg('seeds') ?? (QUICK ? '0' : '0,1,2')).split(',').map(Number);
  const variants = parseVariants(arg('routers') ?? DEFAULT_VARIANTS);
  console.log(`# Router comparison (${QUICK ? 'quick' : 'full'}): ${machineDescription()}`);
  console.log(`budget: ${steps} steps of 64 embedded digits (8000 train / 2000 held-out), mnist-tiny V-MoE (4 experts every other block, capacity factor 1.25) vs dense ViT\n`);
  for (const backend of backendsFromArgs(['wasm'])) {
    await selectBackend(backend);
    const peak = await measureMatMulPeak();
    console.log(`## ${backend}: measured matMul peak ${peak.toFixed(1)} GFLOP/s (bench/common.ts)\n`);
    const {table} = await compareRouters({
      variants,
      seeds,
      steps,
      batchSize: 64,
      backend: backend as BackendRequest,
      out: path.join('bench', 'results', `compare-${backend}`),
      evalEvery: 0,
      checkpointEvery: 0,
      progress: null,
      peakGflops: peak,
      onRun: (r) => console.error(`  ${r.variant} seed ${r.seed}: ${(100 * r.accuracy).toFixed(2)}%, ${Math.round(r.imagesPerSecond)} img/s, ${r.seconds.toFixed(0)} s`),
    });
    console.log(table);
    console.log('');
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
