/**
 * The fast default solver of the semi-dual: damped Newton (Levenberg-Marquardt) ascent on the
 * supports of the k-sparse projections.
 *
 * The semi-dual is concave and piecewise quadratic: while every column's support stays fixed,
 * `S` is a quadratic with Hessian `-H`, `H v = (1/gamma) sum_j P_j(v)`,
 * `P_j(v) = mask_j * (v - mean of v over the support of column j)` (implicit-gradients.md).
 * Each iteration solves `(H + mu I) d = grad S` matrix-free with a few steps of Jacobi-
 * preconditioned conjugate gradients (`H v` costs two batched mat-vecs with the support mask:
 * `H v = (deg * v - M^T ((M v) / s)) / gamma`, `deg` = supports per row, `s` = support sizes),
 * tries `alpha + d`, and keeps it only where the objective increased (per group, on the
 * device; near the optimum also where the value holds to float32 rounding and the gradient
 * shrinks); the damping `mu` shrinks after a success and grows after a failure. Ascent is
 * therefore monotone; the `mu I` term also moves rows that sit in no support (their row of `H`
 * is zero) along the gradient. Nothing is read back except one scalar every `checkEvery`
 * iterations to test convergence (relative change of the value).
 */
import * as tf from '@tensorflow/tfjs';
import {evalSemidual, type SemidualEval} from './semidual';
import type {OTProblem} from './problem';

/** Settings of {@link newtonSemidual}. */
export interface NewtonConfig {
  /** Newton iterations at most. Default 30. */
  maxIterations?: number;
  /** Stop when the value changed by less than `tolerance * max(1, |value|)` since the last check. */
  tolerance?: number;
  /** Conjugate-gradient steps per Newton step. Default 10. */
  cgIterations?: number;
  /** Read back every this many iterations. Default 5. Never read when `problem.hostReads` is false. */
  checkEvery?: number;
}

/**
 * `(H + mu I) v` batched over groups.
 * @param support `<float32>[groups, n, m]` @param deg `<float32>[groups, m, 1]`
 * @param invSize `<float32>[groups, n, 1]`: 1 / support size (0 for an empty column)
 * @param v `<float32>[groups, m, 1]` @param mu `<float32>[groups, 1, 1]`
 */
function applyH(support: tf.Tensor3D, deg: tf.Tensor3D, invSize: tf.Tensor3D, v: tf.Tensor3D, mu: tf.Tensor3D, gamma: number): tf.Tensor3D {
  return tf.tidy(() => {
    const means = tf.mul(tf.matMul(support, v), invSize);
    const hv = tf.div(tf.sub(tf.mul(deg, v), tf.matMul(support, means, true, false)), gamma);
    return tf.add(hv, tf.mul(mu, v)) as tf.Tensor3D;
  });
}

/** Solves `(H + mu I) d = g` approximately by `iters` steps of Jacobi-preconditioned CG from 0. */
function pcg(ev: SemidualEval, mu: tf.Tensor3D, gamma: number, iters: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [groups, , m] = ev.support.shape;
    const support = ev.support;
    const deg = tf.reshape(tf.sum(support, 1), [groups, m, 1]) as tf.Tensor3D;
    const size = tf.sum(support, 2, true);
    const invSize = tf.div(tf.greater(size, 0).cast('float32'), tf.maximum(size, 1)) as tf.Tensor3D;
    // diag(H)_i = (deg_i - sum_j M_ji / s_j) / gamma
    const diag = tf.add(
      tf.div(tf.sub(deg, tf.reshape(tf.sum(tf.mul(support, invSize), 1), [groups, m, 1])), gamma), mu);
    const invDiag = tf.div(1, diag);
    let x = tf.zeros([groups, m, 1]) as tf.Tensor3D;
    let r = tf.reshape(ev.grad, [groups, m, 1]) as tf.Tensor3D;
    let z = tf.mul(r, invDiag) as tf.Tensor3D;
    let p = z;
    let rz = tf.sum(tf.mul(r, z), 1, true);
    for (let i = 0; i < iters; i++) {
      const ap = applyH(support, deg, invSize, p, mu, gamma);
      const pap = tf.sum(tf.mul(p, ap), 1, true);
      const ok = tf.greater(pap, 1e-30);
      const step = tf.where(ok, tf.div(rz, tf.where(ok, pap, tf.onesLike(pap))), tf.zerosLike(pap));
      x = tf.add(x, tf.mul(step, p)) as tf.Tensor3D;
      r = tf.sub(r, tf.mul(step, ap)) as tf.Tensor3D;
      z = tf.mul(r, invDiag) as tf.Tensor3D;
      const rzNew = tf.sum(tf.mul(r, z), 1, true);
      const okB = tf.greater(rz, 1e-30);
      const beta = tf.where(okB, tf.div(rzNew, tf.where(okB, rz, tf.onesLike(rz))), tf.zerosLike(rz));
      p = tf.add(z, tf.mul(beta, p)) as tf.Tensor3D;
      rz = rzNew;
    }
    return tf.reshape(x, [groups, m]) as tf.Tensor2D;
  });
}

/**
 * Per group, the evaluation `t` where `acc` (`<bool>[groups]`) holds and `f` elsewhere (new
 * tensors; the inputs stay the caller's).
 *
 * @example
 * ```ts
 * const chosen = selectEval(tf.greater(evT.value, ev.value), evT, ev);
 * ```
 */
export function selectEval(acc: tf.Tensor, t: SemidualEval, f: SemidualEval): SemidualEval {
  return tf.tidy(() => {
    const g = acc.shape[0];
    const a1 = acc;
    const a2 = tf.reshape(acc, [g, 1]);
    const a3 = tf.reshape(acc, [g, 1, 1]);
    return {
      planT: tf.where(tf.broadcastTo(a3, t.planT.shape), t.planT, f.planT) as tf.Tensor3D,
      support: tf.where(tf.broadcastTo(a3, t.support.shape), t.support, f.support) as tf.Tensor3D,
      tau: tf.where(tf.broadcastTo(a2, t.tau.shape), t.tau, f.tau) as tf.Tensor2D,
      grad: tf.where(tf.broadcastTo(a2, t.grad.shape), t.grad, f.grad) as tf.Tensor2D,
      value: tf.where(a1, t.value, f.value) as tf.Tensor1D,
    };
  });
}

function disposeEval(e: SemidualEval): void {
  tf.dispose([e.planT, e.support, e.tau, e.grad, e.value]);
}

/**
 * Maximizes the semi-dual of `problem` from `alpha0` (`<float32>[groups, m]`, not consumed).
 * Returns the final potentials with their evaluation (the caller owns both), the iterations
 * run and whether the value converged.
 */
export function newtonSemidual(
  problem: OTProblem, alpha0: tf.Tensor2D, config: NewtonConfig = {},
): {alpha: tf.Tensor2D; ev: SemidualEval; iterations: number; converged: boolean} {
  const {costT, a, b, k, gamma, groups} = problem;
  const maxIterations = config.maxIterations ?? 30;
  const tolerance = config.tolerance ?? 1e-5;
  const cgIterations = config.cgIterations ?? 10;
  const checkEvery = config.checkEvery ?? 5;
  let alpha = tf.clone(alpha0);
  let ev = evalSemidual(alpha, costT, a, b, k, gamma);
  // Initial damping: a tenth of the mean diagonal of H (about (supports per row) / gamma).
  let mu = tf.tidy(() => tf.reshape(tf.maximum(tf.mul(tf.div(tf.mean(tf.sum(ev.support, 1), 1), gamma), 0.1), 1e-6 / gamma), [groups, 1, 1])) as tf.Tensor3D;
  let checkValue = tf.clone(ev.value);
  let iterations = 0;
  let converged = false;
  for (let it = 1; it <= maxIterations; it++) {
    iterations = it;
    const d = pcg(ev, mu, gamma, cgIterations);
    const trial = tf.add(alpha, d) as tf.Tensor2D;
    d.dispose();
    const evT = evalSemidual(trial, costT, a, b, k, gamma);
    // Accept an increase of the value; near the optimum, where float32 cannot resolve the value's
    // change any more, also accept a step that keeps the value (to rounding) and shrinks the gradient.
    const acc = tf.tidy(() => {
      const slack = tf.mul(tf.maximum(tf.abs(ev.value), 1), 5e-7);
      const flat = tf.greaterEqual(evT.value, tf.sub(ev.value, slack));
      const shrinks = tf.less(tf.sum(tf.square(evT.grad), 1), tf.sum(tf.square(ev.grad), 1));
      return tf.logicalOr(tf.greater(evT.value, ev.value), tf.logicalAnd(flat, shrinks));
    });
    const next = selectEval(acc, evT, ev);
    const alphaN = tf.tidy(() => tf.where(tf.broadcastTo(tf.reshape(acc, [groups, 1]), alpha.shape), trial, alpha)) as tf.Tensor2D;
    const muN = tf.tidy(() => {
      const acc3 = tf.reshape(acc, [groups, 1, 1]);
      return tf.where(acc3, tf.maximum(tf.mul(mu, 0.3), 1e-8 / gamma), tf.minimum(tf.mul(mu, 5), 1e8 / gamma));
    }) as tf.Tensor3D;
    disposeEval(evT);
    disposeEval(ev);
    tf.dispose([trial, alpha, mu, acc]);
    ev = next;
    alpha = alphaN;
    mu = muN;
    if (problem.hostReads && it % checkEvery === 0) {
      const rel = tf.tidy(() => tf.max(tf.div(tf.abs(tf.sub(ev.value, checkValue)), tf.maximum(tf.abs(ev.value), 1))));
      const change = rel.dataSync()[0];
      rel.dispose();
      checkValue.dispose();
      checkValue = tf.clone(ev.value);
      if (change <= tolerance) {
        converged = true;
        break;
      }
    }
  }
  tf.dispose([mu, checkValue]);
  return {alpha, ev, iterations, converged};
}
