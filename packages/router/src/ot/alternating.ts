/**
 * The `'alternating'` solver: exact block ascent on a lifted dual of k-sparse OT, in which the
 * row potentials have a closed-form best response.
 *
 * The lift. For any vector v, the sum of its k largest entries is
 * `min_lambda (k lambda + sum_i [v_i - lambda]_+)`. Applied to `v_i = [s_i]_+^2 / (2 gamma)`
 * this turns the dual `D(alpha, beta) = <alpha, a> + <beta, b> - sum_j f_k(alpha + beta_j - C[:, j])`
 * into a maximization over `(alpha, beta, lambda)` of
 *
 *   `L = <alpha, a> + <beta, b> - k sum_j lambda_j - sum_ij [[s_ij]_+^2 / (2 gamma) - lambda_j]_+`,
 *   `s_ij = alpha_i + beta_j - C_ij`,
 *
 * which is jointly concave and, for fixed column variables `(beta, lambda)`, SEPARABLE over rows.
 * Writing `ell_j = sqrt(2 gamma lambda_j)` (the smallest `s` column j admits), row i solves a
 * one-dimensional concave problem whose derivative `a_i - sum_{j : s_ij > ell_j} s_ij / gamma`
 * is piecewise linear and decreasing with downward jumps `ell_j / gamma` at the entry points
 * `e_ij = ell_j - beta_j + C_ij`. Sorting a row's n entry points gives its maximizer exactly:
 * with `R` the number of entry points at which the left derivative is still positive,
 * `alpha_i = max(e_(R), (gamma a_i - sum_{r <= R} (beta - C_i)_(r)) / R)`. See {@link rowBestResponseLifted}.
 *
 * For fixed alpha the best `(beta, lambda)` is what one semi-dual evaluation already yields:
 * `beta_j = -gamma b_j tau_j` (the projection threshold) and `lambda_j` between the (k+1)-th
 * and the k-th largest `[s_ij]_+^2 / (2 gamma)` when column j is full (k entries in its
 * support), 0 otherwise. See {@link columnBlock}.
 *
 * One iteration = one semi-dual evaluation (top-k over `[groups, n, m]`, as an Adam step) plus
 * one row best response (a sort of n entries per row and a few elementwise ops). Both blocks
 * are exact maximizations of `L`, so `L` never decreases. Why it is fast on routing problems:
 * at capacity the optimum is LP-like (at capacity factor 1 it is an assignment whose row
 * potentials are `alpha_i = min_j (C_ij - g_j)` for n column prices g), i.e. the hard part
 * lives in the 2n column variables, and every block step moves all m row potentials to their
 * exact response instead of by a step size. Block ascent on a non-smooth function can stop
 * short of the optimum: at a point optimal for each block but not jointly (the kink of
 * `[.]_+` couples alpha_i, beta_j and lambda_j). It does so at capacity factor 1.25 (numpy, one start: at 0.1 to
 * 0.8 of Adam-20's suboptimality; see bench/RESULTS-ot.md), and there neither gradient nor Newton
 * steps with a line search make progress from the stopping point. Mitigations, both measured
 * to help: two starts batched as extra groups (where the ascent stops depends on the start),
 * and Adam steps from the best iterate for the rest of the budget. The iterate with the best
 * semi-dual value is returned.
 */
import * as tf from '@tensorflow/tfjs';
import {selectEval} from './newton';
import {betaFromTau, evalSemidual, type SemidualEval} from './semidual';
import type {OTProblem} from './problem';

/** Settings of {@link alternatingSemidual}. */
export interface AlternatingConfig {
  /** Iterations at most: block iterations, then Adam steps for the rest once the block ascent stalls. Default 10 (`solveSparseOT` passes its own default, 3). */
  maxIterations?: number;
  /** Stop when the best value changed by less than `tolerance * max(1, |value|)` since the last check. */
  tolerance?: number;
  /** Read the best value back every this many block iterations. Default 2. Never read when `problem.hostReads` is false (the whole budget runs). */
  checkEvery?: number;
  /** Adam step after the block ascent stalls, in units of `gamma * mean(a)`. Default 3e-3. */
  polishRate?: number;
  /**
   * Run the block ascent from `alpha0` and from `alpha_i = min_j C_ij` together (batched as extra
   * groups) and keep the better per group. Default `'auto'`: both when the problem is small
   * (`groups * m * n <= 65536`, where per-op overhead dominates and the extra groups are nearly
   * free); otherwise one: `alpha0` when it is a warm start (`warmStart`) or when k is below 1.125
   * times the mean column marginal (capacity factor ~1, where zero wins), else the cheapest-column start.
   */
  multiStart?: boolean | 'auto';
  /** Whether `alpha0` is a warm start (see `multiStart`). Default false. */
  warmStart?: boolean;
}

/**
 * The column block of the lifted dual at given row potentials, from their semi-dual evaluation:
 * `beta_j = -gamma b_j tau_j` and the entry level `ell_j` (in units of `s = alpha + beta - C`).
 * For a full column (k entries in its support) every `lambda_j` between the (k+1)-th and the
 * k-th largest `[s_ij]_+^2 / (2 gamma)` maximizes the lifted dual, i.e. every `ell_j` between
 * `[s_(k+1)]_+` and `s_(k)`; the midpoint is taken (in numpy it stopped the block ascent at
 * better points than either end on routing problems). A column that is not full has `ell_j = 0`.
 *
 * @param ev The evaluation at `alpha` (internal layout).
 * @param alpha `<float32>[groups, m]` @param costT `<float32>[groups, n, m]` @param b `<float32>[groups, n]`
 * @returns `beta`, `ell`: `<float32>[groups, n]` each.
 *
 * @example
 * ```ts
 * const ev = evalSemidual(alpha, costT, a, b, k, gamma);      // alpha <float32>[groups, m]
 * const {beta, ell} = columnBlock(ev, alpha, costT, b, k, gamma); // <float32>[groups, n] each
 * ```
 */
export function columnBlock(
  ev: SemidualEval, alpha: tf.Tensor2D, costT: tf.Tensor3D, b: tf.Tensor2D, k: number, gamma: number,
): {beta: tf.Tensor2D; ell: tf.Tensor2D} {
  return tf.tidy(() => {
    const [groups, , m] = costT.shape;
    const beta = betaFromTau(ev.tau, b, gamma);
    const count = tf.sum(ev.support, 2);
    // s_(k): gamma * the smallest positive plan entry of the column.
    const minPos = tf.min(tf.add(ev.planT, tf.mul(tf.cast(tf.lessEqual(ev.planT, 0), 'float32'), 3.0e38)), 2);
    // s_(k+1): the largest alpha_i - C_ij off the support, plus beta_j.
    const z = tf.sub(tf.reshape(alpha, [groups, 1, m]), costT);
    const offMax = tf.add(tf.max(tf.sub(z, tf.mul(ev.support, 3.0e38)), 2), beta);
    const full = tf.logicalAnd(tf.greaterEqual(count, k - 0.5), tf.less(minPos, 1e38));
    const upper = tf.mul(minPos, gamma);
    const lower = tf.minimum(tf.relu(offMax), upper);
    const ell = tf.where(full, tf.mul(tf.add(upper, lower), 0.5), tf.zerosLike(minPos)) as tf.Tensor2D;
    return {beta, ell};
  });
}

/**
 * Rows active in fewer than this many columns get the exact best response (see
 * {@link rowBestResponseLifted}).
 *
 * @example
 * ```ts
 * rowBestResponseLifted(beta, ell, costTT, a, gamma, MAX_ACTIVE); // the default
 * ```
 */
export const MAX_ACTIVE = 16;

/**
 * The row best response of the lifted dual (see the file comment): for each row i the
 * maximizer over `alpha_i` of
 * `a_i alpha_i - sum_j [[alpha_i + beta_j - C_ij]_+^2 / (2 gamma) - ell_j^2 / (2 gamma)]_+`.
 * Only the `K = min(n, maxActive)` smallest entry points of each row are sorted (a per-row sort
 * of all n is the slowest op of an iteration on wasm): the result is exact for every row active
 * in fewer than K columns (all rows when n <= maxActive); a row whose left derivative is still
 * positive at its K-th entry point gets the stationary point of those K columns, an
 * approximation. Rows with `a_i = 0` are put one unit (`gamma`) below their first entry point.
 *
 * @param beta `<float32>[groups, n]` @param ell `<float32>[groups, n]`, >= 0
 * @param costTT `<float32>[groups, m, n]`: the cost, token-major (the caller's layout; the
 *   solvers keep a copy so that no transpose runs per iteration).
 * @param a `<float32>[groups, m]`
 * @returns `<float32>[groups, m]`
 *
 * @example
 * ```ts
 * // one block-ascent iteration, from the evaluation `ev` at `alpha`:
 * const {beta, ell} = columnBlock(ev, alpha, costT, b, k, gamma);
 * const next = rowBestResponseLifted(beta, ell, tf.transpose(costT, [0, 2, 1]), a, gamma);
 * ```
 */
export function rowBestResponseLifted(
  beta: tf.Tensor2D, ell: tf.Tensor2D, costTT: tf.Tensor3D, a: tf.Tensor2D, gamma: number, maxActive = MAX_ACTIVE,
): tf.Tensor2D {
  return tf.tidy(() => {
    const [groups, m, n] = costTT.shape;
    const K = Math.min(n, maxActive);
    // Negated entry points -e_ij = beta_j - ell_j - C_ij, one row per token: [groups * m, n]
    // (broadcast along rows, fast on wasm); top-k of -e = the K smallest entry points, ascending.
    const negEntry = tf.reshape(tf.sub(tf.reshape(tf.sub(beta, ell), [groups, 1, n]), costTT), [groups * m, n]);
    const sorted = tf.topk(negEntry, K, true);
    const nes = tf.reshape(sorted.values, [groups, m, K]); // -e_(r)
    // ell at the sorted positions: W = beta_j - C_ij = ell_j - e_ij. A flat 1-D gather (a batched
    // gather, or an int32 broadcast add, is several times slower on wasm); groups get an offset.
    const flatIdx = groups === 1 ? sorted.indices : tf.cast(tf.add(tf.cast(sorted.indices, 'float32'), tf.reshape(
      tf.tile(tf.reshape(tf.range(0, groups * n, n, 'float32'), [groups, 1, 1]), [1, m, K]), [groups * m, K])), 'int32');
    const w = tf.add(tf.reshape(tf.gather(tf.reshape(ell, [groups * n]), flatIdx), [groups, m, K]), nes);
    const csIncl = tf.cumsum(w, 2);
    const ga = tf.mul(tf.reshape(a, [groups, m, 1]), gamma);
    // Left derivative (times gamma) at the r-th entry point, with r - 1 columns active:
    // gamma a_i - (r - 1) e_(r) - sum_{l < r} W_(l). Positive on a prefix r <= R.
    const dLeft = tf.sub(tf.add(ga, tf.mul(tf.range(0, K, 1, 'float32'), nes)), tf.sub(csIncl, w));
    const active = tf.step(dLeft);
    const count = tf.sum(active, 2, true);
    // e_(R) = the largest active entry point; sum_{r <= R} W_(r) = the sum of W over the active prefix.
    const eR = tf.neg(tf.min(tf.add(nes, tf.mul(tf.sub(1, active), 3.0e38)), 2, true));
    const csR = tf.sum(tf.mul(w, active), 2, true);
    const stationary = tf.div(tf.sub(ga, csR), tf.maximum(count, 1));
    const firstMinus = tf.sub(tf.neg(tf.slice(nes, [0, 0, 0], [groups, m, 1])), gamma);
    const alpha = tf.where(tf.greater(count, 0), tf.maximum(eR, stationary), firstMinus);
    return tf.reshape(alpha, [groups, m]) as tf.Tensor2D;
  });
}

/** Row-wise `where`: rows of `x` where `mask` (`[rows]`) holds, rows of `y` elsewhere. */
function whereRows(mask: tf.Tensor1D, x: tf.Tensor2D, y: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.where(tf.broadcastTo(tf.reshape(mask, [-1, 1]), x.shape), x, y) as tf.Tensor2D);
}

/**
 * Maximizes the semi-dual of `problem` from `alpha0` (`<float32>[groups, m]`, not consumed).
 *
 * 1. Exact block ascent on the lifted dual from `alpha0` and/or `alpha_i = min_j C_ij` (each
 *    row at its cheapest column), both batched as extra groups for small problems (see
 *    `multiStart`). Block ascent stops at a point that is optimal for each block but not
 *    jointly, and where it stops depends on the start: from zero it is best at capacity factor 1,
 *    from the cheapest-column start mostly better at 1.25 (measured in numpy, see
 *    bench/RESULTS-ot.md). The phase ends when the best value stalls (changes by at most
 *    `tolerance` relative over `checkEvery` iterations) or the budget is spent.
 * 2. For the rest of the iteration budget, Adam steps on the semi-dual from the best iterate of
 *    each group, with a cosine-decaying step `polishRate * gamma * mean(a)`.
 *
 * Returns the row potentials with the best semi-dual value seen (per group) and their
 * evaluation (the caller owns both), the iterations run (block and Adam) and whether the best
 * value converged. Nothing is read back except one scalar every `checkEvery` block iterations
 * and one at the end.
 *
 * @example
 * ```ts
 * const problem = buildProblem(cost, {k}, 'example');    // cost <float32>[m, n]
 * const run = alternatingSemidual(problem, tf.zeros([problem.groups, problem.mi]));
 * run.ev.value;  // <float32>[groups]: the semi-dual value at run.alpha
 * ```
 */
export function alternatingSemidual(
  problem: OTProblem, alpha0: tf.Tensor2D, config: AlternatingConfig = {},
): {alpha: tf.Tensor2D; ev: SemidualEval; iterations: number; converged: boolean} {
  const {costT, a, b, k, gamma, groups, hostReads} = problem;
  const maxIterations = config.maxIterations ?? 10;
  const tolerance = config.tolerance ?? 1e-5;
  const checkEvery = config.checkEvery ?? 2;
  const {mi, ni, meanA, meanB} = problem;
  const multi = config.multiStart ?? 'auto';
  const both = multi === true || (multi === 'auto' && groups * mi * ni <= 65536);
  // With one start: alpha0 (zero or a warm start) at capacity factor ~1, the cheapest column above.
  const useCheapest = !both && multi === 'auto' && !config.warmStart && k >= 1.125 * meanB;
  const starts = both ? 2 : 1;
  const lr0 = (config.polishRate ?? 3e-3) * gamma * meanA;
  // The (possibly) multi-start problem: the groups repeated once per start.
  const [cX, aX, bX] = starts === 1 ? [costT, a, b] : tf.tidy(() => [
    tf.concat([costT, costT], 0) as tf.Tensor3D, tf.concat([a, a], 0) as tf.Tensor2D, tf.concat([b, b], 0) as tf.Tensor2D,
  ] as const);
  // Token-major copy of the cost for the row best response (no transpose per iteration).
  const cTT = tf.transpose(cX, [0, 2, 1]) as tf.Tensor3D;
  let alpha = tf.tidy(() => (starts === 2 ? tf.concat([alpha0, tf.min(costT, 1)], 0) : useCheapest ? tf.min(costT, 1) : tf.clone(alpha0)) as tf.Tensor2D);
  let ev = evalSemidual(alpha, cX, aX, bX, k, gamma);
  let bestAlpha = tf.clone(alpha);
  let bestValue = tf.clone(ev.value);
  let checkValue = tf.clone(ev.value);
  const keepBest = (): void => {
    const better = tf.greater(ev.value, bestValue) as tf.Tensor1D;
    const bestAlphaN = whereRows(better, alpha, bestAlpha);
    const bestValueN = tf.where(better, ev.value, bestValue) as tf.Tensor1D;
    tf.dispose([better, bestAlpha, bestValue]);
    bestAlpha = bestAlphaN;
    bestValue = bestValueN;
  };
  const disposeEv = (): void => tf.dispose([ev.planT, ev.support, ev.tau, ev.grad, ev.value]);
  let iterations = 0;
  let stalled = false;
  // Phase 1: exact block ascent.
  while (iterations < maxIterations && !stalled) {
    iterations++;
    const {beta, ell} = columnBlock(ev, alpha, cX, bX, k, gamma);
    const next = rowBestResponseLifted(beta, ell, cTT, aX, gamma);
    tf.dispose([beta, ell, alpha]);
    disposeEv();
    alpha = next;
    ev = evalSemidual(alpha, cX, aX, bX, k, gamma);
    keepBest();
    if (hostReads && (iterations % checkEvery === 0 || iterations === maxIterations)) {
      const rel = tf.tidy(() => tf.max(tf.div(tf.abs(tf.sub(bestValue, checkValue)), tf.maximum(tf.abs(bestValue), 1))));
      const change = rel.dataSync()[0];
      rel.dispose();
      checkValue.dispose();
      checkValue = tf.clone(bestValue);
      stalled = change <= tolerance;
    }
  }
  tf.dispose([checkValue, cTT]);
  let converged = stalled;
  const polish = maxIterations - iterations;
  // One read-back: is the last iterate the best of every group (and start)? Then its evaluation
  // is the result's and no final evaluation is needed.
  const lastIsBest = (): boolean => {
    const t = tf.tidy(() => tf.all(tf.greaterEqual(ev.value, bestValue)));
    const r = t.dataSync()[0] === 1;
    t.dispose();
    return r;
  };
  // Without host reads (then polish = 0: nothing stalls): per row of the (multi-start) problem,
  // the last iterate where it is the best, else the best iterate, evaluated; chosen on the device.
  const lastOrBest = (): {alpha: tf.Tensor2D; ev: SemidualEval} => {
    const evBest = evalSemidual(bestAlpha, cX, aX, bX, k, gamma);
    const lastOk = tf.greaterEqual(ev.value, bestValue) as tf.Tensor1D;
    const chosen = {alpha: whereRows(lastOk, alpha, bestAlpha), ev: selectEval(lastOk, ev, evBest)};
    tf.dispose([lastOk, evBest.planT, evBest.support, evBest.tau, evBest.grad, evBest.value]);
    return chosen;
  };
  if (!hostReads) {
    const chosen = lastOrBest();
    tf.dispose([bestAlpha, bestValue, alpha]);
    disposeEv();
    if (starts === 1) return {alpha: chosen.alpha, ev: chosen.ev, iterations, converged};
    const firstWins = tf.tidy(() => {
      const v = tf.reshape(chosen.ev.value, [starts, groups]);
      return tf.reshape(tf.greaterEqual(tf.slice(v, [0, 0], [1, groups]), tf.slice(v, [1, 0], [1, groups])), [groups]) as tf.Tensor1D;
    });
    const half = <T extends tf.Tensor>(t: T, i: number): T => tf.slice(t, [i * groups], [groups]) as T;
    const pick = <T extends tf.Tensor>(t: T): T => tf.tidy(() => {
      const mask = tf.reshape(firstWins, [groups, ...t.shape.slice(1).map(() => 1)]);
      return tf.where(tf.broadcastTo(mask, [groups, ...t.shape.slice(1)]), half(t, 0), half(t, 1)) as T;
    });
    const e = chosen.ev;
    const out = {alpha: pick(chosen.alpha), ev: {planT: pick(e.planT), support: pick(e.support), tau: pick(e.tau), grad: pick(e.grad), value: pick(e.value)}};
    tf.dispose([chosen.alpha, e.planT, e.support, e.tau, e.grad, e.value, firstWins, cX, aX, bX]);
    return {...out, iterations, converged};
  }
  if (starts > 1) {
    // The better start per group.
    const firstWins = tf.tidy(() => {
      const v = tf.reshape(bestValue, [starts, groups]);
      return tf.reshape(tf.greaterEqual(tf.slice(v, [0, 0], [1, groups]), tf.slice(v, [1, 0], [1, groups])), [groups]) as tf.Tensor1D;
    });
    const half = <T extends tf.Tensor>(t: T, i: number): T => tf.slice(t, [i * groups], [groups]) as T;
    const pickRows = <T extends tf.Tensor>(t: T): T => tf.tidy(() => {
      const mask = tf.reshape(firstWins, [groups, ...t.shape.slice(1).map(() => 1)]);
      return tf.where(tf.broadcastTo(mask, [groups, ...t.shape.slice(1)]), half(t, 0), half(t, 1)) as T;
    });
    const reuse = polish === 0 && lastIsBest();
    const picked = {alpha: pickRows(bestAlpha), value: pickRows(bestValue)};
    const pickedEv = reuse ? {planT: pickRows(ev.planT), support: pickRows(ev.support), tau: pickRows(ev.tau), grad: pickRows(ev.grad), value: pickRows(ev.value)} : null;
    tf.dispose([bestAlpha, bestValue, cX, aX, bX, alpha, firstWins]);
    disposeEv();
    bestAlpha = picked.alpha;
    bestValue = picked.value;
    if (pickedEv) {
      bestValue.dispose();
      return {alpha: bestAlpha, ev: pickedEv, iterations, converged};
    }
  } else if (polish === 0 && lastIsBest()) {
    tf.dispose([bestAlpha, bestValue]);
    return {alpha, ev, iterations, converged};
  } else {
    alpha.dispose();
    disposeEv();
  }
  // Phase 2: Adam from the best iterate for the rest of the budget (original problem).
  if (polish > 0) {
    alpha = tf.clone(bestAlpha);
    ev = evalSemidual(alpha, costT, a, b, k, gamma);
    const before = tf.clone(bestValue);
    let m1 = tf.zerosLike(alpha);
    let m2 = tf.zerosLike(alpha);
    for (let t = 1; t <= polish; t++) {
      iterations++;
      const lr = lr0 * 0.5 * (1 + Math.cos((Math.PI * (t - 1)) / polish));
      const c1 = 1 - 0.9 ** t;
      const c2 = 1 - 0.999 ** t;
      const g = ev.grad;
      const next = tf.tidy(() => {
        const m1N = tf.add(tf.mul(m1, 0.9), tf.mul(g, 0.1)) as tf.Tensor2D;
        const m2N = tf.add(tf.mul(m2, 0.999), tf.mul(tf.square(g), 0.001)) as tf.Tensor2D;
        const step = tf.div(tf.div(m1N, c1), tf.add(tf.sqrt(tf.div(m2N, c2)), 1e-8));
        return {m1N, m2N, alphaN: tf.add(alpha, tf.mul(step, lr)) as tf.Tensor2D};
      });
      tf.dispose([m1, m2, alpha]);
      disposeEv();
      m1 = next.m1N;
      m2 = next.m2N;
      alpha = next.alphaN;
      ev = evalSemidual(alpha, costT, a, b, k, gamma);
      keepBest();
    }
    tf.dispose([m1, m2]);
    const rel = tf.tidy(() => tf.max(tf.div(tf.abs(tf.sub(bestValue, before)), tf.maximum(tf.abs(bestValue), 1))));
    converged = stalled && rel.dataSync()[0] <= tolerance;
    tf.dispose([rel, before]);
    if (lastIsBest()) {
      tf.dispose([bestAlpha, bestValue]);
      return {alpha, ev, iterations, converged};
    }
    alpha.dispose();
    disposeEv();
  }
  bestValue.dispose();
  return {alpha: bestAlpha, ev: evalSemidual(bestAlpha, costT, a, b, k, gamma), iterations, converged};
}
