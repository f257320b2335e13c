/**
 * The plan's own dispatch: each expert takes the top `capacity` tokens of its column of the
 * transport plan. rebalance.ts then turns it into an assignment that uses the capacity it has.
 */
import * as tf from '@tensorflow/tfjs';
import {gatherTokenExpertValues} from '../moe/dispatch';
import {hostPathAvailable} from '../ot/solvers/host';
import {defaultHostReads} from '../ot/validate';
import {EMPTY_SLOT} from './routing-result';

/**
 * The plan's own dispatch, before rebalancing: each expert takes the top `capacity` tokens of
 * its plan column (ties: the lower token index, as `tf.topk`), keeping real tokens only and, with
 * `dispatch: 'support'`, only tokens with a positive plan value; other slots are -1. On cpu, wasm
 * and tensorflow (host reads allowed) one pass over the host copy of the plan; elsewhere tensor
 * ops (a top-k and two gathers). Not differentiable (index work).
 *
 * @param plan `<float32>[groups, groupSize, experts]` @param real `<float32>[groups, groupSize]`, 1 = real token
 * @param dispatch `'support'` or `'top-capacity'`
 * @returns `<int32>[groups, experts, capacity]`
 *
 * @example
 * ```ts
 * const plan = tf.tensor3d([[[0.9, 0], [0.1, 0.6], [0, 0.4]]]); // 3 tokens, 2 experts
 * planDispatch(plan, tf.ones([1, 3]), 2, 'support').print(); // [[[0, 1], [1, 2]]]
 * ```
 */
export function planDispatch(
  plan: tf.Tensor3D, real: tf.Tensor2D, capacity: number, dispatch: 'support' | 'top-capacity', hostReads: boolean = defaultHostReads(),
): tf.Tensor3D {
  const [groups, S, E] = plan.shape;
  if (hostPathAvailable(hostReads)) {
    const P = plan.dataSync();
    const M = real.dataSync();
    const out = new Int32Array(groups * E * capacity).fill(EMPTY_SLOT);
    const order = new Int32Array(S);
    const cap = Math.min(capacity, S);
    for (let g = 0; g < groups; g++) {
      for (let e = 0; e < E; e++) {
        // Top `cap` tokens by plan value, ties: lower token (insertion into the running top).
        let filled = 0;
        for (let s = 0; s < S; s++) {
          const v = P[(g * S + s) * E + e];
          if (filled === cap && !(v > P[(g * S + order[cap - 1]) * E + e])) continue;
          let r = filled === cap ? cap - 1 : filled++;
          while (r > 0 && v > P[(g * S + order[r - 1]) * E + e]) {
            order[r] = order[r - 1];
            r--;
          }
          order[r] = s;
        }
        for (let c = 0; c < filled; c++) {
          const s = order[c];
          const keep = M[g * S + s] > 0 && (dispatch !== 'support' || P[(g * S + s) * E + e] > 0);
          if (keep) out[(g * E + e) * capacity + c] = s;
        }
      }
    }
    return tf.tensor3d(out, [groups, E, capacity], 'int32');
  }
  return tf.tidy(() => {
    const top = tf.topk(tf.transpose(plan, [0, 2, 1]), capacity, true).indices as tf.Tensor3D; // [G, E, cap]
    let keep = gatherTokenExpertValues(tf.tile(tf.expandDims(real, 2), [1, 1, E]) as tf.Tensor3D, top);
    if (dispatch === 'support') keep = tf.mul(keep, tf.cast(tf.greater(gatherTokenExpertValues(plan, top), 0), 'float32')) as tf.Tensor3D;
    return tf.where(tf.greater(keep, 0), top, tf.fill(top.shape, EMPTY_SLOT, 'int32')) as tf.Tensor3D;
  });
}
