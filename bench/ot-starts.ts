/**
 * Which groups the alternating solver's second start helps (`multiStart`, issue 10 item 4): on
 * batches of routing groups (cost = -softmax(scale * N(0, 1)), a = 1, b = m / n, k =
 * round(cf m / n)) at the default budget (3 iterations), the zero start alone (`multiStart:
 * false`) against both starts (`true`): in how many groups the cheapest-column start ended higher,
 * the mean gain, and both runs' mean gaps to a 30-iteration two-start run (a longer ascent: a
 * reference, not the optimum), plus what `'auto'` picks and the ms per solve of each on the
 * backend's own path (cpu, wasm: the host path; one timed run after a warm-up).
 *
 *   npx tsx bench/ot-starts.ts [--backends=cpu] [--groups=128] [--sizes=64x32,128x32] [--factors=0.5,1,1.25]
 */
import * as tf from '@tensorflow/tfjs';
import {alternating, sparseOTProblem} from '@tfjs-moe/router';
import {backendsFromArgs, benchArgs, machineDescription, selectBackend} from './common';

const args = benchArgs({groups: {type: 'string'}, sizes: {type: 'string'}, factors: {type: 'string'}});
const G = Number(args.groups ?? 128);
const SIZES = (args.sizes ?? '16x4,64x4,64x8,256x8,64x16,128x16,256x16,32x32,64x32,128x32,256x32,64x64,128x64')
  .split(',').map((s) => s.split('x').map(Number) as [number, number]);
const FACTORS = (args.factors ?? '0.5,1,1.25').split(',').map(Number);

/** Values `[groups]` of one solve and its wall ms (one timed run after a warm-up). */
function run(cost: tf.Tensor3D, k: number, multiStart: boolean | 'auto', maxIterations = 3): {v: Float32Array; ms: number} {
  const p = sparseOTProblem(cost, {k});
  let v = new Float32Array(0);
  let ms = NaN;
  for (let r = 0; r < 2; r++) {
    const t0 = performance.now();
    const out = alternating({multiStart, maxIterations}).solve(p);
    v = Float32Array.from(out.value.dataSync());
    if (r > 0) ms = performance.now() - t0;
    out.dispose();
    if (maxIterations > 3) break;
  }
  p.dispose();
  return {v, ms};
}

async function main(): Promise<void> {
  const load = (await import('os')).loadavg().map((l) => l.toFixed(2)).join(' ');
  console.log(`# ot-starts: ${G} groups per row\n${machineDescription()}; load average ${load}`);
  for (const backend of backendsFromArgs(['cpu'])) {
    await selectBackend(backend);
    console.log(`\n## backend ${tf.getBackend()}\n`);
    console.log('| m | n | k (cf) | logits scale | cheapest start ended higher | mean gain | mean gap, zero start / both | auto = | ms zero / both / auto |');
    console.log('|---|---|---|---|---:|---:|---|---|---|');
    for (const [m, n] of SIZES) {
      for (const cf of FACTORS) {
        const k = Math.max(1, Math.round((cf * m) / n));
        for (const scale of [1, 3]) {
          const cost = tf.tidy(() => tf.neg(tf.softmax(tf.mul(tf.randomNormal([G, m, n], 0, 1, 'float32', m * 13 + n + scale), scale))) as tf.Tensor3D);
          const one = run(cost, k, false);
          const two = run(cost, k, true);
          const auto = run(cost, k, 'auto');
          const ref = run(cost, k, true, 30).v;
          let higher = 0;
          let gain = 0;
          let gapOne = 0;
          let gapTwo = 0;
          for (let g = 0; g < G; g++) {
            if (two.v[g] > one.v[g]) higher++;
            gain += (two.v[g] - one.v[g]) / G;
            gapOne += Math.max(ref[g] - one.v[g], 0) / G;
            gapTwo += Math.max(ref[g] - two.v[g], 0) / G;
          }
          const same = (x: Float32Array): boolean => x.every((v, g) => v === auto.v[g]);
          const picks = same(two.v) ? (same(one.v) ? 'both' : 'two starts') : same(one.v) ? 'zero start' : 'neither';
          console.log(`| ${m} | ${n} | ${k} (${((k * n) / m).toFixed(3)}) | ${scale} | ${higher}/${G} | ${gain.toExponential(1)} | ${gapOne.toExponential(2)} / ${gapTwo.toExponential(2)} | ${picks} | ${one.ms.toFixed(1)} / ${two.ms.toFixed(1)} / ${auto.ms.toFixed(1)} |`);
          cost.dispose();
        }
      }
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
