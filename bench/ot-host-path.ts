/**
 * The OT core's host path against its tensor path (issue 10 item 1): one solve of routing-shaped
 * problems on each backend, both paths in one process, as wall ms (fastest of `--reps` after a
 * warm-up), kernels per solve (`tf.profile`) and the largest plan difference between the paths.
 * The host path runs twice: with the alternating solver's group loop in WebAssembly (the
 * default) and in JavaScript (`setWasmSolver(false)`); the two give the same bits.
 *
 * `npx tsx bench/ot-host-path.ts [--backends=cpu,wasm] [--reps=5]`
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {parseArgs} from 'util';
import {alternating, newton, setHostSolvers, setWasmSolver, sparseOTProblem, type SparseOTSolver} from '@tfjs-moe/router';
import {machineDescription} from './common';

const {values: args} = parseArgs({options: {backends: {type: 'string', default: 'cpu,wasm'}, reps: {type: 'string', default: '5'}}});

/** [label, groups, tokens m, experts n, k, solver]. */
const CASES: Array<[string, number, number, number, number, () => SparseOTSolver]> = [
  ['main job layer (batch 128), alternating', 128, 17, 4, 5, () => alternating()],
  ['batch 64, alternating', 64, 17, 4, 5, () => alternating()],
  ['64 tokens x 8 experts, cf 1.25, alternating', 16, 64, 8, 10, () => alternating()],
  ['256 tokens x 8 experts, cf 1.25, alternating', 4, 256, 8, 40, () => alternating()],
  ['MoE benchmark layer: 64 tokens x 32 experts, cf 1.0, alternating', 32, 64, 32, 2, () => alternating()],
  ['64 tokens x 32 experts, cf 1.25, alternating', 32, 64, 32, 3, () => alternating()],
  ['17 x 4, k = m, newton', 64, 17, 4, 17, () => newton()],
];

async function main(): Promise<void> {
  const reps = Number(args.reps);
  const load = (await import('os')).loadavg().map((l) => l.toFixed(2)).join(' ');
  console.log(`${machineDescription()}; load average ${load}`);
  console.log('| backend | problem | tensor ms | host ms, JS loop | host ms | speed-up (tensor / host) | JS loop / WebAssembly | tensor kernels | host kernels | max plan diff |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const backend of args.backends!.split(',')) {
    if (!(await tf.setBackend(backend)) || tf.getBackend() !== backend) throw new Error(`backend ${backend} is not active`);
    for (const [label, groups, m, n, k, make] of CASES) {
      const cost = tf.tidy(() => tf.neg(tf.softmax(tf.randomNormal([groups, m, n], 0, 2, 'float32', m + n))));
      const solver = make();
      const once = () => {
        const problem = sparseOTProblem(cost, {k});
        const out = solver.solve(problem);
        problem.dispose();
        return out;
      };
      const run = async (host: boolean, wasmLoop = true): Promise<{ms: number; kernels: number; plan: ArrayLike<number>}> => {
        setHostSolvers(host);
        setWasmSolver(wasmLoop);
        once().dispose(); // warm-up
        let ms = Infinity;
        for (let r = 0; r < reps; r++) {
          const t0 = performance.now();
          const out = once();
          out.plan.dataSync();
          ms = Math.min(ms, performance.now() - t0);
          out.dispose();
        }
        let plan: ArrayLike<number> = [];
        const profile = await tf.profile(() => {
          const out = once();
          plan = out.plan.dataSync();
          out.dispose();
        });
        return {ms, kernels: profile.kernels.length, plan};
      };
      const tensor = await run(false);
      const jsLoop = await run(true, false);
      const host = await run(true);
      for (let i = 0; i < host.plan.length; i++) if (!Object.is(host.plan[i], jsLoop.plan[i])) throw new Error(`${label}: the WebAssembly and JavaScript group loops differ at ${i}`);
      let diff = 0;
      for (let i = 0; i < host.plan.length; i++) diff = Math.max(diff, Math.abs(host.plan[i] - tensor.plan[i]));
      console.log(`| ${backend} | ${label} (${groups} groups) | ${tensor.ms.toFixed(1)} | ${jsLoop.ms.toFixed(2)} | ${host.ms.toFixed(2)} | ${(tensor.ms / host.ms).toFixed(0)}x | ${(jsLoop.ms / host.ms).toFixed(2)}x | ${tensor.kernels} | ${host.kernels} | ${diff.toExponential(1)} |`);
      cost.dispose();
    }
  }
  setHostSolvers(true);
  setWasmSolver(true);
}
void main();
