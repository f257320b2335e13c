/**
 * Entropic optimal transport by log-domain Sinkhorn iterations (Cuturi 2013; stabilized as in
 * Schmitzer 2019 / ott-jax): potentials `f`, `g` with plan `P = exp((f_i + g_j - C_ij) / eps)`,
 * updated by `f = eps log a - eps LSE_j((g_j - C_ij) / eps)` then
 * `g = eps log b - eps LSE_i((f_i - C_ij) / eps)`. Every log-sum-exp subtracts its maximum, so
 * small epsilon neither overflows nor underflows. Batched over groups; nothing is read back
 * except the marginal error every `checkEvery` iterations (never with `hostReads: false`).
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError, assertPositiveInt, assertPositiveNumber} from '../core/errors';
import {checkMarginalSums, marginalPair, readInit, resolveHostReads, validateCost} from './problem';
import {LazyStats, marginalStatsTensor} from './result';
import type {SinkhornOptions, SinkhornResult} from './types';

const CONTEXT = 'sinkhorn';

/**
 * Entropy-regularized OT: `min <P, C> + epsilon * sum P (log P - 1)` over plans with marginals
 * `a`, `b`, solved in the log domain. The Sinkhorn (S-BASE) router calls it with
 * `cost = -logits` (or `-log_softmax(logits)`), `a = 1` per token and `b = tokens / experts`.
 *
 * Options: `epsilon` (default 0.05), `a` (default 1 per row), `b` (default m / n per column),
 * `maxIterations` (default 500), `tolerance` (largest relative row violation to stop at,
 * default 1e-4, checked every `checkEvery` = 10 iterations), `init` ({f, g} warm start).
 *
 * @param cost `<float32>[m, n]` or `[groups, m, n]`.
 * @returns A {@link SinkhornResult} (plan `<float32>[m, n]`, `f` `[m]`, `g` `[n]`, value, errors).
 *
 * @example
 * ```ts
 * const r = sinkhorn(tf.neg(logits), {epsilon: 0.1, maxIterations: 50}); // logits [tokens, experts]
 * const assignment = tf.argMax(r.plan, 1); // balanced token -> expert assignment
 * r.dispose();
 * ```
 */
export function sinkhorn(cost: tf.Tensor, options: SinkhornOptions = {}): SinkhornResult {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options', 'an object', options, CONTEXT);
  const hostReads = resolveHostReads(options.hostReads, CONTEXT);
  validateCost(cost, CONTEXT, hostReads);
  const eps = assertPositiveNumber('epsilon', options.epsilon ?? 0.05, CONTEXT);
  const maxIterations = assertPositiveInt('maxIterations', options.maxIterations ?? 500, CONTEXT);
  const checkEvery = assertPositiveInt('checkEvery', options.checkEvery ?? 10, CONTEXT);
  const tolerance = options.tolerance ?? 1e-4;
  if (typeof tolerance !== 'number' || !(tolerance >= 0) || !Number.isFinite(tolerance)) {
    throw new InvalidArgumentError('tolerance', 'a finite number >= 0', tolerance, CONTEXT);
  }
  const batched = cost.rank === 3;
  const groups = batched ? cost.shape[0] : 1;
  const m = cost.shape[cost.rank - 2];
  const n = cost.shape[cost.rank - 1];
  const aPair = marginalPair('a', options.a, groups, m, 1, batched, CONTEXT, hostReads);
  const bPair = marginalPair('b', options.b, groups, n, m / n, batched, CONTEXT, hostReads);
  if (aPair.host && bPair.host) checkMarginalSums(aPair.host, bPair.host, groups, CONTEXT);
  const init = options.init ?? {};
  const f0 = readInit('init.f', init.f, groups, m, batched, CONTEXT);
  const g0 = readInit('init.g', init.g, groups, n, batched, CONTEXT);

  const c = tf.tidy(() => tf.reshape(tf.cast(cost, 'float32'), [groups, m, n]) as tf.Tensor3D);
  const a = aPair.device();
  const b = bPair.device();
  // log of a zero marginal is -Infinity: that row or column gets potential -Infinity and no mass;
  // clamp so that the arithmetic stays finite (exp underflows to exactly 0).
  const logA = tf.tidy(() => tf.maximum(tf.log(a), -1e30));
  const logB = tf.tidy(() => tf.maximum(tf.log(b), -1e30));
  let f = f0 ?? (tf.zeros([groups, m]) as tf.Tensor2D);
  let g = g0 ?? (tf.zeros([groups, n]) as tf.Tensor2D);
  const updateF = (gg: tf.Tensor2D): tf.Tensor2D => tf.tidy(() =>
    tf.mul(tf.sub(logA, tf.logSumExp(tf.div(tf.sub(tf.reshape(gg, [groups, 1, n]), c), eps), 2)), eps) as tf.Tensor2D);
  const updateG = (ff: tf.Tensor2D): tf.Tensor2D => tf.tidy(() =>
    tf.mul(tf.sub(logB, tf.logSumExp(tf.div(tf.sub(tf.reshape(ff, [groups, m, 1]), c), eps), 1)), eps) as tf.Tensor2D);
  const planOf = (ff: tf.Tensor2D, gg: tf.Tensor2D): tf.Tensor3D => tf.tidy(() =>
    tf.exp(tf.div(tf.sub(tf.add(tf.reshape(ff, [groups, m, 1]), tf.reshape(gg, [groups, 1, n])), c), eps)) as tf.Tensor3D);
  let iterations = 0;
  let converged = false;
  for (let it = 1; it <= maxIterations; it++) {
    iterations = it;
    const fN = updateF(g);
    f.dispose();
    f = fN;
    const gN = updateG(f);
    g.dispose();
    g = gN;
    if (hostReads && (it % checkEvery === 0 || it === maxIterations)) {
      // After the g update the columns are exact; the row violation measures convergence.
      const err = tf.tidy(() => {
        const rows = tf.sum(planOf(f, g), 2);
        return tf.max(tf.div(tf.abs(tf.sub(rows, a)), tf.where(tf.greater(a, 0), a, tf.onesLike(a))));
      });
      const e = err.dataSync()[0];
      err.dispose();
      if (e <= tolerance) {
        converged = true;
        break;
      }
    }
  }
  const plan3 = planOf(f, g);
  const stats = new LazyStats(marginalStatsTensor(plan3, a, b), 'sinkhorn result');
  const value = tf.tidy(() => tf.add(
    tf.sub(tf.add(tf.sum(tf.mul(f, a), 1), tf.sum(tf.mul(g, b), 1)), tf.mul(eps, tf.sum(plan3, [1, 2]))),
    tf.mul(eps, tf.sum(a, 1)),
  ));
  tf.dispose([c, a, b, logA, logB]);
  const unbatch = (t: tf.Tensor, shape: number[]): tf.Tensor => {
    if (batched) return t;
    const r = tf.reshape(t, shape);
    t.dispose();
    return r;
  };
  const plan = unbatch(plan3, [m, n]);
  const fOut = unbatch(f, [m]);
  const gOut = unbatch(g, [n]);
  const vOut = unbatch(value, []);
  return {
    plan, f: fOut, g: gOut, value: vOut, iterations, converged,
    get marginalError() {
      return stats.get().marginalError;
    },
    get meanRowError() {
      return stats.get().meanRowError;
    },
    dispose: () => {
      stats.dispose();
      tf.dispose([plan, fOut, gOut, vOut]);
    },
  };
}
