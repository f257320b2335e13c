/**
 * The `alternating` solver: exact block ascent on a lifted dual of k-sparse OT (see
 * lifted-dual.ts), the default at capacity (k below the bounded side's size).
 *
 * One iteration = one semi-dual evaluation (top-k over `[groups, n, m]`, as an Adam step) plus
 * one row best response (a sort of n entries per row and a few elementwise ops). Both blocks
 * are exact maximizations of the lifted dual, so it never decreases. Why it is fast on routing
 * problems: at capacity the optimum is LP-like (at capacity factor 1 it is an assignment whose
 * row potentials are `alpha_i = min_j (C_ij - g_j)` for n column prices g), i.e. the hard part
 * lives in the 2n column variables, and every block step moves all m row potentials to their
 * exact response instead of by a step size. Block ascent on a non-smooth function can stop
 * short of the optimum: at a point optimal for each block but not jointly (the kink of `[.]_+`
 * couples alpha_i, beta_j and lambda_j). It does so at capacity factor 1.25 (numpy, one start:
 * at 0.1 to 0.8 of Adam-20's suboptimality; see bench/RESULTS-ot.md). Mitigations, both
 * measured to help: two starts (where the ascent stops depends on the start; not for groups
 * with many columns at capacity factor 1, where the zero start is the better one, see
 * {@link AlternatingSolverConfig.multiStart}), and Adam steps from the best iterate once the
 * block ascent stalls. The iterate with the best semi-dual value is
 * returned.
 *
 * Every decision is taken per group and per start, on the device (never over the batch): how
 * many starts a group runs and which, when a start's block ascent stalls, which start wins, the
 * polish steps' sizes. A group's result is the same, bit for bit on one backend, whatever the
 * other groups of the batch and whether host reads are allowed. (The tensor path batches both
 * starts of every group when groups are small and keeps the first start of a one-start group,
 * which is that group's one-start run bit for bit; the host path runs only the starts a group
 * uses.)
 *
 * Two paths run this algorithm: the tensor path below (webgl, webgpu, `hostReads: false`), and
 * on cpu / wasm / tensorflow the host path (host-alternating.ts), which reads the problem once
 * and iterates on host arrays group by group: one iteration is ~60 tiny kernels on the tensor
 * path, and the problems are small (routing: 17-256 tokens x 4-32 experts per group). Both agree
 * to float32 rounding; `setHostSolvers(false)` forces the tensor path.
 */
import * as tf from '@tensorflow/tfjs';
import {assertPositiveNumber, InvalidArgumentError} from '../../core/errors';
import type {SparseOTOutput} from '../output';
import type {SparseOTProblem} from '../problem';
import {disposeEval, evalSemidual, selectEval, type SemidualEval} from '../semidual';
import type {Formulation} from '../types';
import {adamStep} from './adam';
import {allGroups, valueSettled, whereGroups} from './convergence';
import {solveAlternatingHost, zeroStartOnly} from './host-alternating';
import {useHostPath} from './host';
import {columnBlock, rowBestResponseLifted} from './lifted-dual';
import {iterationConfig, readStart, semidualOutput, SolverBase, startingAlpha, type SolverInit} from './solver';

/**
 * Configuration of the {@link alternating} solver.
 *
 * @example
 * ```ts
 * const config: AlternatingSolverConfig = {maxIterations: 10, multiStart: true};
 * ```
 */
export interface AlternatingSolverConfig {
  /**
   * Iterations: block iterations, then (per start, once its block ascent stalls) Adam steps
   * for the rest. Default 3 (about Adam-20's wall time; 10 iterations cost ~2.7x that and leave
   * a median 16x less suboptimality on routing problems, see bench/RESULTS-ot.md).
   */
  maxIterations?: number;
  /** A start's block ascent stalls when its best value changed by at most `tolerance * max(1, |value|)` since the last check. Default 1e-5. */
  tolerance?: number;
  /** Check for a stall every this many iterations. Default 2. */
  checkEvery?: number;
  /** Adam step after the block ascent stalls, in units of `gamma * mean(a)` (per group). Default 3e-3. */
  polishRate?: number;
  /**
   * Run the block ascent from the starting potentials and from `alpha_i = min_j C_ij` and keep
   * the better per group (`true`), or from the starting potentials only (`false`). Default
   * `'auto'`, per group: both when the group is small (`m * n <= 65536`), unless it has at least
   * 32 columns (n) and is at capacity factor 1 (k within 0.1% of the group's mean column
   * marginal) and `maxIterations >= 3`, where the zero start was measured to be the better one
   * (bench/RESULTS-ot.md);
   * otherwise one: the starting potentials when they are a warm start or when k is below 1.125
   * times the mean column marginal, else the cheapest-column start.
   */
  multiStart?: boolean | 'auto';
  /** `'semidual'` (default) or `'dual'`: the plan and value reported at the implied dual pair. */
  formulation?: Formulation;
}

const ALTERNATING_KEYS = ['maxIterations', 'tolerance', 'checkEvery', 'polishRate', 'multiStart', 'formulation'] as const;

/** Groups of at most this many entries (`m * n`) may run two starts under `multiStart: 'auto'`. */
const MULTI_START_ENTRIES = 65536;

/** The rows `[i * groups, (i + 1) * groups)` of a tensor whose first axis holds `starts * groups`. */
function startRows<T extends tf.Tensor>(t: T, i: number, groups: number): T {
  return tf.slice(t, [i * groups], [groups]) as T;
}

/**
 * `<bool>[groups]`: the groups whose k is at least 1.125 times their mean column marginal
 * (`b <float32>[groups, n]`): capacity factor above ~1.125, where `multiStart: 'auto'` with one
 * start takes the cheapest-column start. host-alternating.ts computes the same in float32.
 */
function aboveOne(k: number, b: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.greaterEqual(tf.scalar(k), tf.mul(tf.mean(b, 1), 1.125)) as tf.Tensor1D);
}

/**
 * `<bool>[groups]`: the groups at capacity factor 1, k within 0.1% of their mean column marginal
 * (`b <float32>[groups, n]`; every column exactly full: the assignment case). host-alternating.ts
 * computes the same in float32.
 */
function atOne(k: number, b: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => {
    const mean = tf.mean(b, 1);
    return tf.logicalAnd(tf.greaterEqual(tf.scalar(k), tf.mul(mean, 0.999)), tf.lessEqual(tf.scalar(k), tf.mul(mean, 1.001))) as tf.Tensor1D;
  });
}

/** `<bool>[rows]`: the rows whose block ascent stalled (`stallAt <float32>[rows, 1]` finite). */
function isStalled(stallAt: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.reshape(tf.isFinite(stallAt), [-1]) as tf.Tensor1D);
}

/**
 * The alternating solver. Use {@link alternating} to create one.
 *
 * @example
 * ```ts
 * const out = new AlternatingSolver({maxIterations: 10}).solve(sparseOTProblem(cost, {k: 10}));
 * ```
 */
export class AlternatingSolver extends SolverBase<Required<AlternatingSolverConfig>> {
  readonly name = 'alternating' as const;

  constructor(config: AlternatingSolverConfig = {}) {
    const context = 'alternating';
    const shared = iterationConfig(config, ALTERNATING_KEYS, {maxIterations: 3, tolerance: 1e-5, checkEvery: 2}, context);
    const multiStart = config.multiStart ?? 'auto';
    if (multiStart !== 'auto' && typeof multiStart !== 'boolean') {
      throw new InvalidArgumentError('multiStart', "a boolean or 'auto'", multiStart, context);
    }
    super({...shared, polishRate: assertPositiveNumber('polishRate', config.polishRate ?? 3e-3, context), multiStart});
  }

  solve(problem: SparseOTProblem, init?: SolverInit): SparseOTOutput {
    const {costT, costRows, a, b, k, gamma, groups, mi, ni, hostReads} = problem;
    const {maxIterations, tolerance, checkEvery, polishRate, multiStart} = this.config;
    const starts = multiStart === true || (multiStart === 'auto' && mi * ni <= MULTI_START_ENTRIES) ? 2 : 1;
    if (useHostPath(problem)) return solveAlternatingHost(problem, init, {...this.config, starts});
    const start = readStart(problem, init);
    const warm = start.alpha !== undefined || start.beta !== undefined;
    const alpha0 = startingAlpha(problem, start);
    tf.dispose([start.alpha, start.beta].filter((t): t is tf.Tensor2D => t !== undefined));
    // The (possibly) two-start problem: the groups repeated once per start; R rows in all.
    const rep = <T extends tf.Tensor>(t: T): T => (starts === 1 ? tf.clone(t) : tf.concat([t, t], 0) as T);
    const [cX, rX, aX, bX] = tf.tidy(() => [rep(costT), rep(costRows), rep(a), rep(b)] as const);
    let alpha = tf.tidy(() => {
      const cheapest = tf.min(costT, 1) as tf.Tensor2D; // each row at its cheapest column
      if (starts === 2) return tf.concat([alpha0, cheapest], 0) as tf.Tensor2D;
      if (multiStart !== 'auto' || warm) return tf.clone(alpha0);
      // One start: zero (or the given one) at capacity factor ~1, the cheapest column above; per group.
      return whereGroups(aboveOne(k, b), cheapest, alpha0);
    });
    alpha0.dispose();
    const rows = starts * groups;
    const lr0 = tf.tidy(() => tf.mul(tf.mean(aX, 1, true), polishRate * gamma)); // [R, 1]
    let ev = evalSemidual(alpha, cX, aX, bX, k, gamma);
    let bestAlpha = tf.clone(alpha);
    let bestValue = tf.clone(ev.value);
    let checkValue = tf.clone(ev.value); // best value at the last check (at the stall, once stalled)
    let stallAt = tf.fill([rows, 1], Infinity) as tf.Tensor2D; // iteration of each row's stall
    let m1 = tf.zerosLike(alpha);
    let m2 = tf.zerosLike(alpha);
    let settled = tf.zeros([rows], 'bool') as tf.Tensor1D;
    let anyStalled = false; // host knowledge: false until a check may have stalled a row
    let allStalled = false; // host knowledge (host reads only)
    for (let t = 1; t <= maxIterations; t++) {
      let next: tf.Tensor2D;
      if (anyStalled) {
        // Rows whose block ascent stalled take Adam steps (cosine-decayed over the rest of the budget).
        const polish = tf.tidy(() => {
          const inPolish = tf.reshape(tf.less(stallAt, t), [rows]);
          const tp = tf.maximum(tf.sub(t, stallAt), 1);
          const span = tf.maximum(tf.sub(maxIterations, stallAt), 1);
          const lr = tf.mul(lr0, tf.mul(0.5, tf.add(1, tf.cos(tf.mul(Math.PI, tf.div(tf.sub(tp, 1), span))))));
          const step = adamStep({params: [alpha], m: [m1], v: [m2]}, [ev.grad], lr, tp);
          return {inPolish, alpha: step.params[0] as tf.Tensor2D, m1: step.m[0] as tf.Tensor2D, m2: step.v[0] as tf.Tensor2D};
        });
        const block = allStalled ? polish.alpha : this.blockStep(ev, alpha, cX, rX, bX, aX, k, gamma);
        next = whereGroups(polish.inPolish, polish.alpha, block);
        const m1N = whereGroups(polish.inPolish, polish.m1, m1);
        const m2N = whereGroups(polish.inPolish, polish.m2, m2);
        tf.dispose([m1, m2, polish.inPolish, polish.alpha, polish.m1, polish.m2, ...(block === polish.alpha ? [] : [block])]);
        m1 = m1N;
        m2 = m2N;
      } else {
        next = this.blockStep(ev, alpha, cX, rX, bX, aX, k, gamma);
      }
      alpha.dispose();
      disposeEval(ev);
      alpha = next;
      ev = evalSemidual(alpha, cX, aX, bX, k, gamma);
      // Keep each row's best iterate.
      const better = tf.greater(ev.value, bestValue);
      const bestAlphaN = whereGroups(better, alpha, bestAlpha);
      const bestValueN = whereGroups(better, ev.value, bestValue);
      tf.dispose([better, bestAlpha, bestValue]);
      bestAlpha = bestAlphaN;
      bestValue = bestValueN;
      if (t % checkEvery === 0 || t === maxIterations) {
        const stalled = isStalled(stallAt);
        settled.dispose();
        settled = valueSettled(bestValue, checkValue, tolerance);
        const checkValueN = whereGroups(stalled, checkValue, bestValue);
        tf.dispose(checkValue);
        checkValue = checkValueN;
        if (t < maxIterations) {
          // Rows that stall now restart from their best iterate with fresh Adam moments.
          const fresh = tf.tidy(() => tf.logicalAnd(settled, tf.logicalNot(stalled)));
          const stallAtN = tf.tidy(() => whereGroups(fresh, tf.fill([rows, 1], t) as tf.Tensor2D, stallAt));
          stallAt.dispose();
          stallAt = stallAtN;
          const evBest = evalSemidual(bestAlpha, cX, aX, bX, k, gamma);
          const alphaN = whereGroups(fresh, bestAlpha, alpha);
          const evN = selectEval(fresh, evBest, ev);
          disposeEval(evBest);
          disposeEval(ev);
          alpha.dispose();
          alpha = alphaN;
          ev = evN;
          anyStalled = true;
          if (hostReads) allStalled = allGroups(isStalled(stallAt), true);
          fresh.dispose();
        }
        stalled.dispose();
      }
    }
    disposeEval(ev);
    tf.dispose([alpha, m1, m2, stallAt, checkValue, lr0, cX, rX, aX, bX]);
    // Converged: the last check found the best value settled (since the stall for stalled rows).
    let best = bestAlpha;
    let conv = settled;
    if (starts === 2) {
      // The better start per group; under 'auto' a one-start group (capacity factor 1, many columns) keeps its first start.
      [best, conv] = tf.tidy(() => {
        const better = tf.greaterEqual(startRows(bestValue, 0, groups), startRows(bestValue, 1, groups));
        const firstWins = zeroStartOnly(multiStart, ni, maxIterations) ? tf.logicalOr(better, atOne(k, b)) : better;
        const pick = <T extends tf.Tensor>(x: T): T => whereGroups(firstWins, startRows(x, 0, groups), startRows(x, 1, groups));
        return [pick(bestAlpha), pick(settled)] as const;
      });
      tf.dispose([bestAlpha, settled]);
    }
    bestValue.dispose();
    const finalEv: SemidualEval = evalSemidual(best, costT, a, b, k, gamma);
    const converged = allGroups(conv, hostReads);
    return semidualOutput(problem, best, finalEv, maxIterations, converged, this.config.formulation);
  }

  /** One block iteration: the column block at `alpha`, then the rows' exact best response. */
  private blockStep(
    ev: SemidualEval, alpha: tf.Tensor2D, cX: tf.Tensor3D, rX: tf.Tensor3D, bX: tf.Tensor2D, aX: tf.Tensor2D, k: number, gamma: number,
  ): tf.Tensor2D {
    return tf.tidy(() => {
      const {beta, ell} = columnBlock(ev, alpha, cX, bX, k, gamma);
      return rowBestResponseLifted(beta, ell, rX, aX, gamma);
    });
  }
}

/**
 * Creates an {@link AlternatingSolver}: exact block ascent on the lifted dual, the fast solver at
 * capacity (k below the bounded side's size).
 *
 * @example
 * ```ts
 * const out = alternating({maxIterations: 10}).solve(sparseOTProblem(tf.neg(gates), {k: 10}));
 * ```
 */
export function alternating(config: AlternatingSolverConfig = {}): AlternatingSolver {
  return new AlternatingSolver(config);
}
