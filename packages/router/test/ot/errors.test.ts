/** Bad input to the OT core: typed errors that name the argument and echo the value (pinned text). */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, NonFiniteError, ShapeError} from '../../src/core/errors';
import {isFeasible, minFeasibleK, feasibleForMarginals, sinkhorn, solveSparseOT} from '../../src/ot';

describe('solveSparseOT input validation', () => {
  const C = tf.tensor2d([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]);
  afterAll(() => C.dispose());

  it('NaN or Infinity in the cost', () => {
    const bad = tf.tensor2d([[0.1, NaN], [0.3, 0.4]]);
    expect(() => solveSparseOT(bad, {k: 1})).toThrow(NonFiniteError);
    expect(() => solveSparseOT(bad, {k: 1})).toThrow('solveSparseOT: Expected cost to be finite (no NaN or Infinity), but got NaN.');
    const inf = tf.tensor2d([[0.1, 1], [Infinity, 0.4]]);
    expect(() => solveSparseOT(inf, {k: 1})).toThrow('solveSparseOT: Expected cost to be finite (no NaN or Infinity), but got Infinity.');
    tf.dispose([bad, inf]);
  });

  it('shape mismatches', () => {
    const c1 = tf.tensor1d([1, 2]);
    expect(() => solveSparseOT(c1, {k: 1})).toThrow(ShapeError);
    expect(() => solveSparseOT(c1, {k: 1})).toThrow('solveSparseOT: Expected cost to be of shape [m, n] or [groups, m, n], but got [2].');
    expect(() => solveSparseOT(C, {k: 1, a: [1, 1]})).toThrow('solveSparseOT: Expected a to be of shape [3], but got [2].');
    expect(() => solveSparseOT(C, {k: 1, b: tf.ones([3])})).toThrow('solveSparseOT: Expected b to be of shape [2], but got [3].');
    expect(() => solveSparseOT(C, {k: 1, init: {alpha: tf.zeros([2])}})).toThrow('solveSparseOT: Expected init.alpha to be of shape [3], but got [2].');
    c1.dispose();
  });

  it('k not a positive integer, or larger than the dimension it bounds', () => {
    expect(() => solveSparseOT(C, {k: 0})).toThrow('solveSparseOT: Expected k to be a positive integer, but got 0.');
    expect(() => solveSparseOT(C, {k: 1.5})).toThrow('solveSparseOT: Expected k to be a positive integer, but got 1.5.');
    expect(() => solveSparseOT(C, {k: 4})).toThrow(
      'solveSparseOT: Expected k to be at most the number of rows m = 3 (k bounds the nonzeros per column), but got 4.');
    expect(() => solveSparseOT(C, {k: 3, sparsity: 'row'})).toThrow(
      'solveSparseOT: Expected k to be at most the number of columns n = 2 (k bounds the nonzeros per row), but got 3.');
  });

  it('gamma <= 0', () => {
    expect(() => solveSparseOT(C, {k: 1, gamma: 0})).toThrow('solveSparseOT: Expected gamma to be a finite number > 0, but got 0.');
    expect(() => solveSparseOT(C, {k: 1, gamma: -2})).toThrow(InvalidArgumentError);
  });

  it('negative marginals, or marginals whose sums differ', () => {
    expect(() => solveSparseOT(C, {k: 1, a: [1, -1, 3]})).toThrow('solveSparseOT: Expected a to be non-negative, but got [1,-1,3].');
    expect(() => solveSparseOT(C, {k: 1, a: [1, 1, 1], b: [1, 1]})).toThrow(
      'solveSparseOT: Expected b to be a marginal whose sum equals the sum of a (3), but got 2.');
  });

  it('unknown solver or formulation', () => {
    expect(() => solveSparseOT(C, {k: 1, solver: 'lbfgs' as never})).toThrow(
      "solveSparseOT: Expected solver to be one of 'auto', 'alternating', 'newton', 'adam', but got \"lbfgs\".");
    expect(() => solveSparseOT(C, {k: 1, formulation: 'primal' as never})).toThrow(
      "solveSparseOT: Expected formulation to be one of 'semidual', 'dual', but got \"primal\".");
  });

  it('sinkhorn validates too', () => {
    expect(() => sinkhorn(C, {epsilon: 0})).toThrow('sinkhorn: Expected epsilon to be a finite number > 0, but got 0.');
    expect(() => sinkhorn(C, {a: [1, 1, 1], b: [2, 2]})).toThrow('sinkhorn: Expected b to be a marginal whose sum equals the sum of a (3), but got 4.');
  });
});

describe('feasibility', () => {
  it('uniform marginals: k >= ceil((m + n - gcd(m, n)) / n)', () => {
    expect(minFeasibleK(5, 3)).toBe(3); // ceil(7 / 3); ceil(m / n) = 2 is not enough
    expect(isFeasible(5, 3, 2)).toBe(false);
    expect(isFeasible(256, 8, 32)).toBe(true); // (256 + 8 - 8) / 8 = 32
    expect(minFeasibleK(6, 4)).toBe(2); // ceil((6 + 4 - 2) / 4) = 2
  });
  it('general marginals: a necessary condition', () => {
    expect(feasibleForMarginals([1, 1, 1, 1], [3, 1], 2)).toBe(false); // column 0 needs 3 from 2 rows of 1
    expect(feasibleForMarginals([2, 1, 1], [2, 2], 1)).toBe(false); // 3 positive rows, 2 columns of 1
    expect(feasibleForMarginals([2, 1, 1], [2, 2], 2)).toBe(true);
  });
});
