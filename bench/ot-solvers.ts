/**
 * Suboptimality of the k-sparse OT solvers vs iterations and wall time, side by side with the
 * reference Adam-20, on routing-sized problems (cost = -softmax(logits), a = 1, b = m / n,
 * k = capacity). The optimal value is computed once per problem in float64 (JS Float64Array)
 * by a long Adam ascent with a decreasing step, the best of its iterates.
 *
 *   npx tsx bench/ot-solvers.ts [--quick] [--backends=wasm,cpu]
 */
import * as tf from '@tensorflow/tfjs';
import {QUICK, backendsFromArgs, machineDescription, measureMatMulPeak, selectBackend} from './common';
import {solveSparseOT} from '../packages/router/src/ot';

/** Float64 semi-dual value and gradient at alpha (column sparsity, a = 1, b = m / n). */
function semidual64(alpha: Float64Array, C: Float64Array, m: number, n: number, k: number, gamma: number): {value: number; grad: Float64Array} {
  const b = m / n;
  const grad = new Float64Array(m).fill(1);
  let value = 0;
  for (let i = 0; i < m; i++) value += alpha[i];
  const idx = Array.from({length: m}, (_, i) => i);
  const x = new Float64Array(m);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < m; i++) x[i] = (alpha[i] - C[i * n + j]) / (gamma * b);
    idx.sort((p, q) => x[q] - x[p]);
    let cs = 0;
    let rho = 0;
    let csRho = 0;
    for (let r = 0; r < k; r++) {
      cs += x[idx[r]];
      if (x[idx[r]] - (cs - 1) / (r + 1) > 0) {
        rho = r + 1;
        csRho = cs;
      }
    }
    const tau = (csRho - 1) / rho;
    for (let r = 0; r < rho; r++) {
      const i = idx[r];
      const y = x[i] - tau;
      const t = b * y;
      grad[i] -= t;
      value -= t * (alpha[i] - C[i * n + j]) - (gamma / 2) * t * t;
    }
  }
  return {value, grad};
}

function optimum64(C: Float64Array, m: number, n: number, k: number, gamma: number, steps: number): number {
  const alpha = new Float64Array(m);
  const mo = new Float64Array(m);
  const v = new Float64Array(m);
  let best = -Infinity;
  for (let t = 1; t <= steps; t++) {
    const lr = 1e-2 * Math.pow(0.01, t / steps);
    const {value, grad} = semidual64(alpha, C, m, n, k, gamma);
    best = Math.max(best, value);
    for (let i = 0; i < m; i++) {
      mo[i] = 0.9 * mo[i] + 0.1 * grad[i];
      v[i] = 0.999 * v[i] + 0.001 * grad[i] * grad[i];
      alpha[i] += lr * (mo[i] / (1 - 0.9 ** t)) / (Math.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8);
    }
  }
  return best;
}

async function main(): Promise<void> {
  console.log(`# ot-solvers ${QUICK ? '(quick)' : ''}\n${machineDescription()}`);
  const sizes: [number, number][] = QUICK ? [[256, 8], [256, 32]] : [[256, 8], [256, 32], [1024, 8], [1024, 32], [1024, 64], [4096, 32], [4096, 64]];
  const factors = [1.0, 1.25];
  const peaks = [['random', 1], ['peaked', 5]] as const;
  for (const backend of backendsFromArgs()) {
    await selectBackend(backend);
    const peak = await measureMatMulPeak();
    console.log(`\n## backend ${tf.getBackend()}: matMul peak ${peak.toFixed(2)} GFLOP/s`);
    console.log('| m | n | cf | logits | k | Adam-20 subopt | Adam-20 ms | Newton-3 subopt | Newton-3 ms | Newton-10 subopt | Newton-10 ms | Newton subopt at Adam-20 time | ratio (Adam-20 / Newton, equal time) | time for Adam-20 subopt (Newton) | drop A20/N10 | mean row viol A20/N10 | Adam GFLOP/s (% peak) |');
    console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const [m, n] of sizes) {
      for (const cf of factors) {
        for (const [kind, scale] of peaks) {
          const k = Math.min(m, Math.ceil((m * cf) / n / 4) * 4);
          const cost = tf.tidy(() => tf.neg(tf.softmax(tf.mul(tf.randomNormal([m, n], 0, 1, 'float32', 17), scale))));
          const C64 = Float64Array.from(cost.dataSync());
          const opt = optimum64(C64, m, n, k, 1, QUICK ? 400 : 1500);
          const run = (o: Record<string, unknown>): {sub: number; ms: number; drop: number; row: number} => {
            solveSparseOT(cost, {k, ...o}).dispose(); // warm-up
            const t0 = performance.now();
            const r = solveSparseOT(cost, {k, ...o});
            const v = r.value.dataSync()[0];
            const ms = performance.now() - t0;
            const out = {sub: opt - v, ms, drop: r.droppedFraction, row: r.meanRowError};
            r.dispose();
            return out;
          };
          const a20 = run({solver: 'adam'});
          const newtonCurve = [1, 2, 3, 5, 10, 20].map((it) => ({it, ...run({maxIterations: it, tolerance: 0})}));
          const n3 = newtonCurve.find((c) => c.it === 3)!;
          const n10 = newtonCurve.find((c) => c.it === 10)!;
          const atTime = newtonCurve.filter((c) => c.ms <= a20.ms).pop();
          const reach = newtonCurve.find((c) => c.sub <= a20.sub);
          const flops = 20 * 25 * m * n; // ~25 elementwise flops per plan entry per Adam step
          const gf = flops / (a20.ms * 1e6);
          console.log(`| ${m} | ${n} | ${cf} | ${kind} | ${k} | ${a20.sub.toExponential(2)} | ${a20.ms.toFixed(0)} | ${n3.sub.toExponential(2)} | ${n3.ms.toFixed(0)} | ${n10.sub.toExponential(2)} | ${n10.ms.toFixed(0)} | ${atTime ? atTime.sub.toExponential(2) : 'n/a'} | ${atTime ? (a20.sub / Math.max(atTime.sub, 1e-12)).toFixed(2) : 'n/a'} | ${reach ? `${reach.ms.toFixed(0)} ms (${(reach.ms / a20.ms).toFixed(2)}x)` : 'not reached in 20 its'} | ${a20.drop.toFixed(3)}/${n10.drop.toFixed(3)} | ${a20.row.toFixed(3)}/${n10.row.toFixed(3)} | ${gf.toFixed(3)} (${((100 * gf) / peak).toFixed(2)}%) |`);
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
