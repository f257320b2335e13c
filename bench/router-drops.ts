// Dropped fraction of the sparse-OT router before and after the rebalancing step (issue 9 item 5),
// routing only (no training): random router logits (std 1 and 2) and identical tokens (a blank
// image), 3 seeds, capacity factor 1.0 and 1.25, E 8, groups of 64 and 256 tokens, cpu backend.
//
//   npx tsx bench/router-drops.ts
import * as tf from '@tensorflow/tfjs';
import {SparseOTRouter, sparseOTRouter, type Router} from '@tfjs-moe/router';
import {machineDescription} from './common';

const E = 8;
const GROUPS = 4;
const SEEDS = [1, 2, 3];
const VARIANTS: Array<[string, () => Router]> = [
  ['paper (released, top-capacity)', () => SparseOTRouter.paper({numExperts: E})],
  ['support, no rebalancing (before)', () => sparseOTRouter({numExperts: E, assignment: {className: 'ExpertsChooseTokens', config: {dispatch: 'support', rebalance: false}}})],
  ['support + rebalancing (after, default)', () => sparseOTRouter({numExperts: E})],
];

async function main(): Promise<void> {
  await tf.setBackend('cpu');
  if (tf.getBackend() !== 'cpu') throw new Error('cpu backend expected');
  console.log(machineDescription());
  console.log('| tokens/group | logits | cf | router | dropped (mean of 3 seeds) | max |');
  console.log('|---|---|---|---|---|---|');
  for (const S of [64, 256]) {
    for (const logitsKind of ['normal std 1', 'normal std 2', 'identical']) {
      for (const cf of [1.0, 1.25]) {
        for (const [name, make] of VARIANTS) {
          const drops: number[] = [];
          for (const seed of SEEDS) {
            const router = make();
            router.build([null, null, E]);
            router.setWeights([tf.eye(E), ...router.getWeights().slice(1)]);
            const std = logitsKind === 'normal std 2' ? 2 : 1;
            const logits = logitsKind === 'identical'
              ? tf.zeros([GROUPS, S, E]) as tf.Tensor3D
              : tf.randomNormal([GROUPS, S, E], 0, std, 'float32', seed) as tf.Tensor3D;
            const r = router.route(logits, {training: false, capacity: router.computeCapacity(S, cf)});
            drops.push((await r.metrics.droppedFraction.data())[0]);
            r.dispose();
            logits.dispose();
          }
          const mean = drops.reduce((a, b) => a + b, 0) / drops.length;
          console.log(`| ${S} | ${logitsKind} | ${cf} | ${name} | ${mean.toFixed(4)} | ${Math.max(...drops).toFixed(4)} |`);
        }
      }
    }
  }
}

void main();
