/**
 * Index dispatch/combine against a dense one-hot einsum formulation (test-only reference),
 * forward and backward, on cpu and wasm; the row primitives on hand-worked cases.
 */
import * as tf from '@tensorflow/tfjs';
import {describeBackends, expectAllClose, expectNoLeaks} from '../helpers/backends';
import {
  combine,
  combineCompact,
  compactSlots,
  dispatch,
  dispatchCompact,
  gatherRows,
  gatherTokenExpertValues,
  normalizeCombineWeights,
  scatterAddRows,
  tokenExpertIndices,
  tokenWeightSums,
} from '../../src/moe/dispatch';
import {ShapeError} from '../../src/core/errors';

/** Dense reference: one-hot `[G, S, E, C]` from indices (built on the host). */
function oneHot(indices: number[][][], groupSize: number): tf.Tensor4D {
  const G = indices.length;
  const E = indices[0].length;
  const C = indices[0][0].length;
  const data = new Float32Array(G * groupSize * E * C);
  indices.forEach((g, gi) => g.forEach((e, ei) => e.forEach((t, ci) => {
    if (t >= 0) data[((gi * groupSize + t) * E + ei) * C + ci] = 1;
  })));
  return tf.tensor4d(data, [G, groupSize, E, C]);
}

/** einsum('gsec,gsd->gecd') with matMul. */
function denseDispatch(mask: tf.Tensor4D, x: tf.Tensor3D): tf.Tensor4D {
  const [G, S, E, C] = mask.shape;
  const d = x.shape[2];
  const m = tf.transpose(tf.reshape(mask, [G, S, E * C]), [0, 2, 1]); // [G, EC, S]
  return tf.reshape(tf.matMul(m, x), [G, E, C, d]) as tf.Tensor4D;
}

/** einsum('gsec,gecd->gsd') with matMul, combine tensor = mask * weights. */
function denseCombine(mask: tf.Tensor4D, w: tf.Tensor3D, y: tf.Tensor4D): tf.Tensor3D {
  const [G, S, E, C] = mask.shape;
  const d = y.shape[3];
  const comb = tf.mul(mask, tf.reshape(w, [G, 1, E, C]));
  return tf.matMul(tf.reshape(comb, [G, S, E * C]), tf.reshape(y, [G, E * C, d])) as tf.Tensor3D;
}

// Two groups of 4 tokens, 3 experts, capacity 2. Token 3 of group 0 is in no slot (dropped);
// token 0 of group 1 is taken by two experts; expert 2 of group 0 has an empty slot.
const INDICES = [
  [[0, 1], [2, 0], [1, -1]],
  [[0, 3], [1, 0], [-1, -1]],
];
const S = 4;

describeBackends('row primitives', () => {
  it('gatherRows / scatterAddRows on a hand-worked case, with adjoint gradients', () => {
    const x = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    const idx = tf.tensor1d([2, 0, 2], 'int32');
    // rows 2, 0, 2 of x
    expectAllClose(gatherRows(x, idx).arraySync(), [[5, 6], [1, 2], [5, 6]]);
    // row 2 receives updates 0 and 2: [1+5, 2+6]; row 0 receives update 1: [3, 4]; row 1 nothing.
    const u = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    expectAllClose(scatterAddRows(u, idx, 3).arraySync(), [[3, 4], [0, 0], [6, 8]]);
    // d/dx sum(gather(x) * W) = scatter-add of W: row 0 gets W[1], row 2 gets W[0] + W[2].
    const W = tf.tensor2d([[1, 10], [100, 1000], [2, 20]]);
    const gx = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(gatherRows(xx as tf.Tensor2D, idx), W)))(x);
    expectAllClose(gx.dataSync(), [[100, 1000], [0, 0], [3, 30]]);
    // d/du sum(scatter(u) * V) = V gathered at each update's row.
    const V = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    const gu = tf.grad((uu: tf.Tensor) => tf.sum(tf.mul(scatterAddRows(uu as tf.Tensor2D, idx, 3), V)))(u);
    expectAllClose(gu.dataSync(), [[5, 6], [1, 2], [5, 6]]);
    tf.dispose([x, idx, u, W, gx, V, gu]);
  });

  it('dispatch and combine equal the dense einsum formulation, forward and backward', () => {
    const x = tf.randomNormal([2, S, 5], 0, 1, 'float32', 1) as tf.Tensor3D;
    const y = tf.randomNormal([2, 3, 2, 5], 0, 1, 'float32', 2) as tf.Tensor4D;
    const w = tf.mul(tf.randomUniform([2, 3, 2], 0.1, 1, 'float32', 3), tf.tensor3d(INDICES.map((g) => g.map((e) => e.map((t) => (t >= 0 ? 1 : 0)))))) as tf.Tensor3D;
    const idx = tf.tensor3d(INDICES, undefined, 'int32');
    const mask = oneHot(INDICES, S);
    expectAllClose(dispatch(x, idx).dataSync(), denseDispatch(mask, x).dataSync(), 1e-6);
    expectAllClose(combine(y, idx, w, S).arraySync(), denseCombine(mask, w, y).arraySync(), 1e-5);
    // Dropped token 3 of group 0 gets exactly 0.
    expectAllClose((combine(y, idx, w, S).arraySync() as number[][][])[0][3], [0, 0, 0, 0, 0]);

    // Backward: a loss through dispatch -> (elementwise "expert") -> combine.
    const R = tf.randomNormal([2, S, 5], 0, 1, 'float32', 4);
    const lossIdx = (xx: tf.Tensor, ww: tf.Tensor) =>
      tf.sum(tf.mul(combine(tf.tanh(dispatch(xx as tf.Tensor3D, idx)), idx, ww as tf.Tensor3D, S), R));
    const lossDense = (xx: tf.Tensor, ww: tf.Tensor) =>
      tf.sum(tf.mul(denseCombine(mask, ww as tf.Tensor3D, tf.tanh(denseDispatch(mask, xx as tf.Tensor3D)) as tf.Tensor4D), R));
    const [gx1, gw1] = tf.grads(lossIdx)([x, w]);
    const [gx2, gw2] = tf.grads(lossDense)([x, w]);
    expectAllClose(gx1.arraySync() as number[][][], gx2.arraySync() as number[][][], 1e-5);
    expectAllClose(gw1.arraySync() as number[][][], gw2.arraySync() as number[][][], 1e-5);
    // Expert-major layout: same numbers, laid out [E, G * C, d].
    const em = dispatch(x, idx, 'expert-major');
    expect(em.shape).toEqual([3, 4, 5]);
    expectAllClose(combine(em, idx, w, S, 'expert-major').arraySync(), denseCombine(mask, w, denseDispatch(mask, x)).arraySync(), 1e-5);
    tf.dispose([x, y, w, idx, mask, R, gx1, gw1, gx2, gw2, em]);
  });

  it('compactSlots packs each expert\'s filled slots in expert-major order on a hand-worked case', () => {
    const idx = tf.tensor3d(INDICES, undefined, 'int32');
    const c = compactSlots(idx, S);
    // Filled slots: expert 0: g0 (0, 1), g1 (0, 3) = 4; expert 1: g0 (2, 0), g1 (1, 0) = 4; expert 2: g0 (1) = 1.
    expect(c.filled).toEqual([4, 4, 1]);
    expect(c.rowsPerExpert).toBe(4);
    // Token rows g * S + t, padding -> row G * S = 8.
    expect(Array.from(c.tokenRows.dataSync())).toEqual([0, 1, 4, 7, 2, 0, 5, 4, 1, 8, 8, 8]);
    // Slots (g * E + e) * C + c in [G, E, C] = [2, 3, 2], padding -> 12.
    expect(Array.from(c.slots.dataSync())).toEqual([0, 1, 6, 7, 2, 3, 8, 9, 4, 12, 12, 12]);
    tf.dispose([idx, c.tokenRows, c.slots]);
  });

  it('compactSlots pads a multiple of 128 rows (>= 256) by 16 rows; an all-empty routing keeps 1 row', () => {
    // 64 groups, 1 expert, capacity 4, every slot filled: 256 filled rows -> 272.
    const full = tf.tensor3d(Array.from({length: 64}, () => [[0, 1, 2, 3]]), undefined, 'int32');
    const c = compactSlots(full, 4);
    expect(c.filled).toEqual([256]);
    expect(c.rowsPerExpert).toBe(272);
    const rows = Array.from(c.tokenRows.dataSync());
    expect(rows.slice(0, 256)).toEqual(Array.from({length: 256}, (_, i) => i));
    expect(rows.slice(256)).toEqual(new Array(16).fill(256));
    const empty = tf.fill([2, 3, 2], -1, 'int32') as tf.Tensor3D;
    const e = compactSlots(empty, 4);
    expect(e.rowsPerExpert).toBe(1);
    expect(Array.from(e.tokenRows.dataSync())).toEqual([8, 8, 8]);
    tf.dispose([full, c.tokenRows, c.slots, empty, e.tokenRows, e.slots]);
  });

  it('dispatchCompact / combineCompact equal the dense einsum formulation, forward and backward', () => {
    const x = tf.randomNormal([2, S, 5], 0, 1, 'float32', 11) as tf.Tensor3D;
    const w = tf.mul(tf.randomUniform([2, 3, 2], 0.1, 1, 'float32', 13), tf.tensor3d(INDICES.map((g) => g.map((e) => e.map((t) => (t >= 0 ? 1 : 0)))))) as tf.Tensor3D;
    const idx = tf.tensor3d(INDICES, undefined, 'int32');
    const mask = oneHot(INDICES, S);
    const c = compactSlots(idx, S);
    const xe = dispatchCompact(x, c);
    expect(xe.shape).toEqual([3, 4, 5]);
    // Expert 2's rows past its one filled slot are zero rows.
    expectAllClose((xe.arraySync() as number[][][])[2].slice(1).flat(), new Array(15).fill(0));
    expectAllClose(combineCompact(xe, c, w, S).arraySync(), denseCombine(mask, w, denseDispatch(mask, x)).arraySync(), 1e-5);
    // Backward through an elementwise "expert" (tanh(v) + 0.5, nonzero on padding rows).
    const R = tf.randomNormal([2, S, 5], 0, 1, 'float32', 14);
    const lossCompact = (xx: tf.Tensor, ww: tf.Tensor) =>
      tf.sum(tf.mul(combineCompact(tf.add(tf.tanh(dispatchCompact(xx as tf.Tensor3D, c)), 0.5) as tf.Tensor3D, c, ww as tf.Tensor3D, S), R));
    const lossDense = (xx: tf.Tensor, ww: tf.Tensor) =>
      tf.sum(tf.mul(denseCombine(mask, ww as tf.Tensor3D, tf.add(tf.tanh(denseDispatch(mask, xx as tf.Tensor3D)), 0.5) as tf.Tensor4D), R));
    const [gx1, gw1] = tf.grads(lossCompact)([x, w]);
    const [gx2, gw2] = tf.grads(lossDense)([x, w]);
    expectAllClose(gx1.arraySync() as number[][][], gx2.arraySync() as number[][][], 1e-5);
    // Empty slots' weights get the dense formulation's gradient too (0 contributions there).
    expectAllClose(gw1.arraySync() as number[][][], gw2.arraySync() as number[][][], 1e-5);
    tf.dispose([x, w, idx, mask, c.tokenRows, c.slots, xe, R, gx1, gw1, gx2, gw2]);
  });

  it('gatherTokenExpertValues reads values[g, token, e] per slot with a gradient', () => {
    const v = tf.tensor3d([[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9], [1, 1.1, 1.2]]]);
    const idx = tf.tensor3d([INDICES[0]], undefined, 'int32');
    // expert 0 slots: tokens 0, 1 -> v[0,0]=0.1, v[1,0]=0.4; expert 1: tokens 2, 0 -> 0.8, 0.2;
    // expert 2: token 1 -> 0.6, empty -> 0.
    expectAllClose(gatherTokenExpertValues(v, idx).arraySync(), [[[0.1, 0.4], [0.8, 0.2], [0.6, 0]]]);
    const g = tf.grad((vv: tf.Tensor) => tf.sum(gatherTokenExpertValues(vv as tf.Tensor3D, idx)))(v);
    expectAllClose(g.dataSync(), [[[1, 1, 0], [1, 0, 1], [0, 1, 0], [0, 0, 0]]]);
    tf.dispose([v, idx, g]);
  });

  it('tokenExpertIndices: the host path and the tensor path give the hand-worked rows', () => {
    const idx = tf.tensor3d(INDICES, undefined, 'int32');
    // (g * S + t) * E + e with S 4, E 3; empty slots -> G * S * E = 24.
    const expected = [0, 3, 7, 1, 5, 24, 12, 21, 16, 13, 24, 24];
    for (const host of [true, false]) {
      const flat = tokenExpertIndices(idx, S, host);
      expect(Array.from(flat.dataSync())).toEqual(expected);
      flat.dispose();
    }
    idx.dispose();
  });

  it('normalizeCombineWeights makes each kept token sum to 1 and leaves dropped tokens at 0', () => {
    const idx = tf.tensor3d([INDICES[1]], undefined, 'int32');
    // group 1: token 0 in expert 0 (0.2) and expert 1 (0.6): sum 0.8 -> 0.25, 0.75;
    // token 3 in expert 0 (0.5) alone -> 1; token 1 in expert 1 (0.4) alone -> 1; token 2 dropped.
    const w = tf.tensor3d([[[0.2, 0.5], [0.4, 0.6], [0, 0]]]);
    expectAllClose(tokenWeightSums(idx, w, S).arraySync(), [[0.8, 0.4, 0, 0.5]], 1e-6);
    expectAllClose(normalizeCombineWeights(idx, w, S).arraySync(), [[[0.25, 1], [1, 0.75], [0, 0]]], 1e-6);
    tf.dispose([idx, w]);
  });

  it('does not leak tensors', async () => {
    const x = tf.randomNormal([2, S, 5]) as tf.Tensor3D;
    const w = tf.ones([2, 3, 2]) as tf.Tensor3D;
    const idx = tf.tensor3d(INDICES, undefined, 'int32');
    await expectNoLeaks(() => {
      const g = tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.sum(combine(dispatch(xx as tf.Tensor3D, idx), idx, normalizeCombineWeights(idx, ww as tf.Tensor3D, S), S)))([x, w]);
      tf.dispose(g);
    }, 5);
    await expectNoLeaks(() => {
      const c = compactSlots(idx, S);
      const g = tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.sum(combineCompact(dispatchCompact(xx as tf.Tensor3D, c), c, ww as tf.Tensor3D, S)))([x, w]);
      tf.dispose([...g, c.tokenRows, c.slots]);
    }, 5);
    tf.dispose([x, w, idx]);
  });

  it('rejects bad shapes with named errors', () => {
    const x = tf.zeros([4, 5]);
    const idx = tf.zeros([1, 2, 2], 'int32');
    expect(() => dispatch(x as unknown as tf.Tensor3D, idx as tf.Tensor3D)).toThrow(ShapeError);
    expect(() => dispatch(x as unknown as tf.Tensor3D, idx as tf.Tensor3D)).toThrow(
      'dispatch: Expected tokens to be a rank-3 tensor [groups, groupSize, d], but got [4,5].',
    );
    expect(() => dispatch(tf.zeros([2, 4, 5]) as tf.Tensor3D, idx as tf.Tensor3D)).toThrow(
      'dispatch: Expected tokenIndices to be a rank-3 tensor [2, experts, capacity], but got [1,2,2].',
    );
    expect(() => compactSlots(tf.zeros([2, 3]) as unknown as tf.Tensor3D, 4)).toThrow(
      'compactSlots: Expected tokenIndices to be an int32 rank-3 tensor [groups, experts, capacity], but got "float32 [2, 3]".',
    );
    tf.dispose([x, idx]);
  });
});
