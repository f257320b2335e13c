/**
 * Routing that keeps its promises (issue 9, router level): the rebalancing step on hand-worked
 * plans; identical tokens (a blank image) spread over the experts with every solver; no token
 * dropped at capacity factor >= 1 when the capacity covers the group; groups with no real token
 * route nothing, on every backend and with or without host reads; the released router still drops.
 */
import * as tf from '@tensorflow/tfjs';
import {describeBackends, expectNoLeaks} from '../helpers/backends';
import {rebalanceAssignment} from '../../src/routers/rebalance';
import {SparseOTRouter, sparseOTRouter, type SparseOTRouterArgs} from '../../src/routers/sparse-ot';
import {metricsToValues, type RoutingResult} from '../../src/routers/routing-result';
import {moe} from '../../src/moe/moe-layer';

/** A router whose logits equal its input (d = E, identity kernel). */
function identityRouter(experts: number, args: Partial<SparseOTRouterArgs> = {}, make: (a: SparseOTRouterArgs) => SparseOTRouter = sparseOTRouter): SparseOTRouter {
  const router = make({numExperts: experts, ...args});
  router.build([null, null, experts]);
  const eye = tf.eye(experts);
  router.setWeights([eye, ...router.getWeights().slice(1)]);
  eye.dispose();
  return router;
}

function read(r: RoutingResult): {idx: number[][][]; m: Record<string, number | number[]>} {
  const out = {idx: r.tokenIndices.arraySync(), m: metricsToValues(r.metrics)};
  r.dispose();
  return out;
}

/** Per group: experts holding each token; throws on a duplicate inside one expert. */
function holders(idx: number[][], groupSize: number): number[] {
  const count = new Array(groupSize).fill(0);
  for (const slots of idx) {
    const filled = slots.filter((t) => t >= 0);
    expect(new Set(filled).size).toBe(filled.length);
    for (const t of filled) count[t]++;
  }
  return count;
}

const SOLVERS = ['auto', 'alternating', 'newton', 'adam'] as const;

describeBackends('rebalanceAssignment (hand-worked plans)', () => {
  it('free slots suffice: unserved tokens fill them by gate, nothing is given back', () => {
    // 3 tokens, 2 experts of capacity 2; both experts hold token 0 (plan 1 each).
    // Free slots 2, unserved tokens 2 (t1 top gate 0.9 -> e0, t2 top gate 0.8 -> e1): no give-back.
    const out = rebalanceAssignment(
      tf.tensor3d([[[0, -1], [0, -1]]], [1, 2, 2], 'int32'), tf.tensor3d([[[1, 1], [0, 0], [0, 0]]]),
      tf.tensor3d([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]), tf.ones([1, 3]));
    expect(out.arraySync()).toEqual([[[0, 1], [0, 2]]]);
  });

  it('ties: a token held by more experts than its mass gives its excess slots back', () => {
    // 4 tokens, 2 experts of capacity 2: each expert holds t0 and t1 with plan value 1 (rows 2, 2, 0, 0).
    // Unserved 2, free 0 -> release 2. t0's experts by plan value (ties: lower expert first): e0
    // reaches its mass 1, so e1 is excess; same for t1. Released: (t0, e1), (t1, e1).
    // Fill by largest gate: t2 (0.7, asks e1) before t3 (0.6, asks e0: full, then e1).
    const out = rebalanceAssignment(
      tf.tensor3d([[[0, 1], [0, 1]]], [1, 2, 2], 'int32'), tf.tensor3d([[[1, 1], [1, 1], [0, 0], [0, 0]]]),
      tf.tensor3d([[[0.5, 0.5], [0.5, 0.5], [0.3, 0.7], [0.6, 0.4]]]), tf.ones([1, 4]));
    // e1's slots: filled tokens by gate for e1: t2 (0.7) then t3 (0.4).
    expect(out.arraySync()).toEqual([[[0, 1], [2, 3]]]);
  });

  it('a split token keeps its secondary expert unless a dropped token needs the slot', () => {
    // 2 tokens, 2 experts of capacity 1; t0's plan row is split 0.6 / 0.4 (not excess: it needs
    // both to reach mass 1), t1 has none. Unserved 1, free 0: t0 gives back its weakest slot (e1).
    const gates = tf.tensor3d([[[0.6, 0.4], [0.7, 0.3]]]);
    const plan = tf.tensor3d([[[0.6, 0.4], [0, 0]]]);
    const out = rebalanceAssignment(tf.tensor3d([[[0], [0]]], [1, 2, 1], 'int32'), plan, gates, tf.ones([1, 2]));
    // t1 asks e0 (full), then e1 (free).
    expect(out.arraySync()).toEqual([[[0], [1]]]);
    // With a masked t1 nobody needs the slot: t0 keeps both experts.
    const kept = rebalanceAssignment(tf.tensor3d([[[0], [0]]], [1, 2, 1], 'int32'), plan, gates, tf.tensor2d([[1, 0]]));
    expect(kept.arraySync()).toEqual([[[0], [0]]]);
  });

  it('capacity below the group: fills what it can, never more than capacity per expert', () => {
    // 5 tokens, 2 experts of capacity 2 (4 slots): one token must stay dropped.
    const idx = tf.tensor3d([[[0, -1], [0, -1]]], [1, 2, 2], 'int32');
    const plan = tf.tensor3d([[[1, 1], [0, 0], [0, 0], [0, 0], [0, 0]]]);
    const gates = tf.tensor3d([[[0.5, 0.5], [0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]]);
    const out = rebalanceAssignment(idx, plan, gates, tf.ones([1, 5])).arraySync()[0];
    // Unserved 4, free 2, need 2 but t0 has one secondary slot: release (t0, e1). Free 3:
    // round 1: t1 (0.9) -> e0, t2 (0.8) -> e0 (full), t3 (0.7) -> e1, t4 (0.6) -> e1; round 2: t2 -> e1 (full).
    expect(out).toEqual([[0, 1], [3, 4]]);
  });
});

describeBackends('sparse-OT router: no needless drops', (backend) => {
  it.each(SOLVERS)('8 identical tokens (a blank image), 4 experts, capacity 2, solver %s: every token gets exactly one expert', (solver) => {
    expect(tf.getBackend()).toBe(backend);
    const router = identityRouter(4, {solver});
    const capacity = router.computeCapacity(8, 1.0); // 8 / 4 = 2: 8 slots for 8 tokens
    expect(capacity).toBe(2);
    const r = read(router.route(tf.zeros([1, 8, 4]) as tf.Tensor3D, {training: false, capacity}));
    expect(holders(r.idx[0], 8)).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect(r.m.droppedFraction).toBe(0);
    // The relaxation itself drops: the plan sends its mass to 2 of the 8 tokens.
    expect(r.m.planDroppedFraction).toBeCloseTo(0.75, 6);
  });

  it('the released router (paper settings) still drops on identical tokens: every expert takes tokens 0 and 1', () => {
    const router = identityRouter(4, {}, (a) => SparseOTRouter.paper(a));
    const r = read(router.route(tf.zeros([1, 8, 4]) as tf.Tensor3D, {training: false, capacity: 2}));
    // Identical columns: top-2 of each is the lowest two token indices.
    expect(r.idx[0]).toEqual([[0, 1], [0, 1], [0, 1], [0, 1]]);
    expect(r.m.droppedFraction).toBeCloseTo(0.75, 6);
  });

  for (const cf of [1.0, 1.25]) {
    it.each(SOLVERS)(`random logits, 64 tokens, 8 experts, capacity factor ${cf}, solver %s: dropped fraction 0`, (solver) => {
      const router = identityRouter(8, {solver});
      const capacity = router.computeCapacity(64, cf);
      const logits = tf.randomNormal([3, 64, 8], 0, 2, 'float32', 31) as tf.Tensor3D;
      const r = read(router.route(logits, {training: true, capacity}));
      logits.dispose();
      for (const group of r.idx) {
        for (const slots of group) expect(slots.length).toBe(capacity);
        expect(Math.min(...holders(group, 64))).toBeGreaterThanOrEqual(1);
      }
      expect(r.m.droppedFraction).toBe(0);
      expect(r.m.tokensPerExpertMax as number).toBeLessThanOrEqual(capacity);
    });
  }

  it('does not leak', async () => {
    const router = identityRouter(4);
    const x = tf.randomNormal([2, 8, 4], 0, 1, 'float32', 3) as tf.Tensor3D;
    await expectNoLeaks(() => router.route(x, {training: true, capacity: 2}).dispose(), 3);
    x.dispose();
  });
});

describeBackends('sparse-OT router: a group with no real token', (backend) => {
  for (const hostReads of [true, false]) {
    it(`routes nothing and leaves the other groups as they route alone (hostReads ${hostReads})`, () => {
      expect(tf.getBackend()).toBe(backend);
      const router = identityRouter(4, {hostReads});
      const logits = tf.randomNormal([3, 6, 4], 0, 1, 'float32', 12) as tf.Tensor3D;
      const mask = tf.tensor2d([[1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]]);
      const all = read(router.route(logits, {training: false, capacity: 2, mask}));
      expect(all.idx[1]).toEqual([[-1, -1], [-1, -1], [-1, -1], [-1, -1]]);
      for (const g of [0, 2]) {
        const alone = read(router.route(tf.slice(logits, [g, 0, 0], [1, -1, -1]) as tf.Tensor3D,
          {training: false, capacity: 2, mask: tf.slice(mask, [g, 0], [1, -1]) as tf.Tensor2D}));
        expect(all.idx[g]).toEqual(alone.idx[0]);
      }
      // 11 real tokens, 8 slots in each real group: group 0 (5 real) and group 2 (6 real) drop none.
      expect(all.m.droppedFraction).toBe(0);
      tf.dispose([logits, mask]);
    });
  }

  it('in the MoE layer: padding outputs 0, the other examples are unchanged', () => {
    const layer = moe({numExperts: 4, hiddenDim: 8, router: {name: 'sparse-ot'}, kernelInitializer: {className: 'GlorotUniform', config: {seed: 4}}});
    const x = tf.randomNormal([3, 5, 6], 0, 1, 'float32', 13) as tf.Tensor3D;
    const mask = tf.tensor2d([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 0, 1]]);
    const y = layer.apply([x, mask]) as tf.Tensor;
    expect(Array.from(tf.slice(y, [1, 0, 0], [1, -1, -1]).dataSync()).every((v) => v === 0)).toBe(true);
    for (const g of [0, 2]) {
      const yAlone = layer.apply([tf.slice(x, [g, 0, 0], [1, -1, -1]), tf.slice(mask, [g, 0], [1, -1])]) as tf.Tensor;
      expect(Array.from(yAlone.dataSync())).toEqual(Array.from(tf.slice(y, [g, 0, 0], [1, -1, -1]).dataSync()));
    }
  });
});
