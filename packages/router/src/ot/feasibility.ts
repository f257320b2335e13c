/**
 * When can a k-sparse plan meet both marginals? Exact for uniform marginals, a documented
 * necessary condition otherwise (the general question is NP-hard: k = 1 is number partitioning).
 */
import {InvalidArgumentError, assertPositiveInt} from '../core/errors';

function gcd(x: number, y: number): number {
  while (y !== 0) [x, y] = [y, x % y];
  return x;
}

/**
 * The smallest per-column cardinality k for which an `m x n` plan with uniform marginals
 * (every row sums to the same value, every column to the same value) and at most k nonzeros
 * per column exists: `ceil((m + n - gcd(m, n)) / n)`. `ceil(m / n)` alone is not enough
 * (m = 5, n = 3 needs k = 3, not 2).
 *
 * @param m Number of rows (tokens), a positive integer.
 * @param n Number of columns (experts), a positive integer.
 * @returns The smallest feasible k.
 *
 * @example
 * ```ts
 * minFeasibleK(5, 3); // ceil((5 + 3 - 1) / 3) = 3
 * minFeasibleK(256, 8); // ceil((256 + 8 - 8) / 8) = 32 = m / n
 * ```
 */
export function minFeasibleK(m: number, n: number): number {
  assertPositiveInt('m', m, 'minFeasibleK');
  assertPositiveInt('n', n, 'minFeasibleK');
  return Math.ceil((m + n - gcd(m, n)) / n);
}

/**
 * Whether a plan with uniform marginals and at most `k` nonzeros per column exists (exact):
 * `k >= ceil((m + n - gcd(m, n)) / n)`.
 *
 * @param m Rows (tokens). @param n Columns (experts). @param k Nonzeros allowed per column.
 * @returns true when a k-sparse plan meeting both marginals exists.
 *
 * @example
 * ```ts
 * isFeasible(5, 3, 2); // false
 * isFeasible(5, 3, 3); // true
 * ```
 */
export function isFeasible(m: number, n: number, k: number): boolean {
  assertPositiveInt('k', k, 'isFeasible');
  return k >= minFeasibleK(m, n);
}

/**
 * A necessary condition for a plan with marginals `a` (rows) and `b` (columns) and at most k
 * nonzeros per column to exist (exact question NP-hard). It checks that
 * 1. the columns can reach every row with positive mass: `n * k >= #{i : a_i > 0}`, and
 * 2. each column can collect its mass from k rows: `b_j <= sum of the k largest a_i` (each row
 *    gives at most `a_i` to a column).
 * When both `a` and `b` are uniform it falls back to the exact {@link isFeasible}.
 *
 * @param a Row marginal `[m]` (non-negative). @param b Column marginal `[n]` (non-negative).
 * @param k Nonzeros allowed per column.
 * @returns false when no k-sparse plan can exist; true when the condition holds.
 *
 * @example
 * ```ts
 * feasibleForMarginals([1, 1, 1, 1], [3, 1], 2); // false: column 0 needs 3 from 2 rows of 1
 * ```
 */
export function feasibleForMarginals(a: ArrayLike<number>, b: ArrayLike<number>, k: number): boolean {
  assertPositiveInt('k', k, 'feasibleForMarginals');
  const m = a.length;
  const n = b.length;
  if (m === 0 || n === 0) throw new InvalidArgumentError('a, b', 'non-empty marginals', [m, n], 'feasibleForMarginals');
  const rel = (x: ArrayLike<number>): boolean => {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < x.length; i++) {
      lo = Math.min(lo, x[i]);
      hi = Math.max(hi, x[i]);
    }
    return hi - lo <= 1e-6 * Math.max(Math.abs(hi), 1e-30);
  };
  if (rel(a) && rel(b) && a[0] > 0) return isFeasible(m, n, k);
  let positive = 0;
  for (let i = 0; i < m; i++) if (a[i] > 0) positive++;
  if (n * k < positive) return false;
  const sorted = Array.from(a).sort((x, y) => y - x);
  let topK = 0;
  for (let i = 0; i < Math.min(k, m); i++) topK += sorted[i];
  let bMax = 0;
  for (let j = 0; j < n; j++) bMax = Math.max(bMax, b[j]);
  return bMax <= topK * (1 + 1e-6);
}
