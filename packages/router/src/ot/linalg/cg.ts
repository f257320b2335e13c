/**
 * The one conjugate-gradient solver of the OT core: batched, matrix-free, Jacobi-preconditioned
 * CG for symmetric positive semi-definite systems, run entirely on the device (a fixed number of
 * iterations; a group freezes once its residual is small). Used by the Newton solver (the damped
 * semi-dual Hessian), the implicit gradient and the unrolled solver (the support Laplacians).
 */
import * as tf from '@tensorflow/tfjs';
import {assertPositiveInt} from '../../core/errors';
import {checkOptions} from '../../core/options';
import {noGrad} from '../../core/stop-gradient';

/**
 * Floor of `r^T r`, `r^T z` and `p^T A p` (for a right-hand side scaled to unit norm) below
 * which CG freezes: under autodiff the squares of smaller denominators underflow in float32
 * (tfjs differentiates `a / b` as `-a / b^2`), and `0 * inf` turns a frozen step into NaN.
 */
const CG_ABS_FLOOR = 1e-18;

/** 1 where CG should keep stepping: residual above its floor and positive curvature. */
const cgActive = noGrad((rr: tf.Tensor, stopAt: tf.Tensor, pap: tf.Tensor) =>
  tf.cast(tf.logicalAnd(tf.greater(rr, tf.maximum(stopAt, CG_ABS_FLOOR)), tf.greater(pap, CG_ABS_FLOOR)), 'float32'));


/** Per-group inner product of `<float32>[g, d]` vectors, kept as `[g, 1]`. */
function dot(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return tf.sum(tf.mul(a, b), 1, true) as tf.Tensor2D;
}

/**
 * Options of {@link conjugateGradient}.
 *
 * @example
 * ```ts
 * const options: ConjugateGradientOptions = {iterations: 20, tolerance: 1e-6};
 * ```
 */
export interface ConjugateGradientOptions {
  /** Number of iterations, run in full (frozen groups take zero steps). */
  iterations: number;
  /** Relative residual at which a group freezes. Default 1e-6. */
  tolerance?: number;
  /**
   * Diagonal preconditioner `<float32>[g, d]`: the inverse of the operator's diagonal, with 0 on
   * the operator's null rows (which keeps the iterates off them).
   */
  preconditioner?: tf.Tensor2D;
  /**
   * Orthogonal projection onto the complement of the operator's known null space, applied to the
   * right-hand side and to every preconditioned residual. Keeps float32 round-off from feeding
   * a null direction (which CG would otherwise amplify without bound on a singular system).
   */
  project?: (v: tf.Tensor2D) => tf.Tensor2D;
  /**
   * `<float32>[g, 1]`: a group freezes once the Rayleigh quotient `p^T A p / p^T p` of its search
   * direction falls below this. On a singular operator whose null space is not fully projected
   * out (a support graph with several connected components), round-off leaves a residual in
   * the null space that CG cannot reduce; its search directions then have almost no curvature,
   * and the step `r^T z / p^T A p` would be astronomically large. Default: no floor.
   */
  minCurvature?: tf.Tensor2D;
}

/**
 * Batched, matrix-free (preconditioned) conjugate gradients for symmetric positive semi-definite
 * systems `A x = rhs` with a consistent right-hand side, started from 0. Every iteration stays
 * on the device: a group whose residual fell below `tolerance * ||rhs||` (or whose curvature
 * `p^T A p` vanished) takes zero-length steps from then on, so nothing is read back.
 *
 * @param apply the operator: maps `<float32>[g, d]` to `<float32>[g, d]`.
 * @param rhs `<float32>[g, d]`, one system per group (row).
 * @returns `<float32>[g, d]` the approximate solution (in the range of A when rhs is).
 *
 * @example
 * ```ts
 * // A = diag(2, 4): x = [1, 0.5] solves A x = [2, 2].
 * const d = tf.tensor2d([[2, 4]]);
 * const x = conjugateGradient((v) => tf.mul(d, v), tf.tensor2d([[2, 2]]), {iterations: 3});
 * ```
 */
export function conjugateGradient(
  apply: (v: tf.Tensor2D) => tf.Tensor2D,
  rhs: tf.Tensor2D,
  options: ConjugateGradientOptions,
): tf.Tensor2D {
  checkOptions(options, ['iterations', 'tolerance', 'preconditioner', 'project', 'minCurvature'], 'conjugateGradient');
  const iterations = assertPositiveInt('iterations', options.iterations, 'conjugateGradient', 0);
  const tol = options.tolerance ?? 1e-6;
  const precond = options.preconditioner;
  const project = options.project ?? ((v: tf.Tensor2D) => v.clone());
  const applyPrecond = (r: tf.Tensor2D): tf.Tensor2D => project((precond ? tf.mul(precond, r) : r) as tf.Tensor2D);
  return tf.tidy(() => {
    // CG's iterates are homogeneous of degree 1 in the right-hand side: solve for rhs / |rhs|
    // and scale back, so that the floors below are relative and nothing underflows.
    const norm = tf.sqrt(tf.add(tf.sum(tf.square(rhs), 1, true), 1e-30));
    const unit = tf.div(rhs, norm) as tf.Tensor2D;
    let x = tf.zerosLike(rhs) as tf.Tensor2D;
    let r = project(unit);
    let p = applyPrecond(r);
    let rz = dot(r, p);
    const stopAt = tf.mul(dot(unit, unit), tol * tol);
    for (let it = 0; it < iterations; it++) {
      const next = tf.tidy(() => {
        const ap = apply(p);
        const pap = dot(p, ap);
        // The freeze decision is a constant for autodiff (CG may run inside a taped solver), and
        // the arithmetic below avoids tf.where so that no comparison lies on a taped path.
        let active = cgActive(dot(r, r), stopAt, pap);
        if (options.minCurvature) {
          active = tf.mul(active, cgActive(pap, tf.mul(options.minCurvature, dot(p, p)), tf.onesLike(pap)));
        }
        const inactive = tf.sub(1, active);
        const step = tf.div(tf.mul(active, rz), tf.add(tf.mul(active, pap), inactive));
        const x1 = tf.add(x, tf.mul(step, p)) as tf.Tensor2D;
        const r1 = tf.sub(r, tf.mul(step, ap)) as tf.Tensor2D;
        const z1 = applyPrecond(r1);
        const rz1 = dot(r1, z1);
        const rzPos = cgActive(rz, tf.zerosLike(rz), tf.onesLike(rz)); // 1 where rz > floor
        const safeRz = tf.add(tf.mul(rzPos, rz), tf.sub(1, rzPos));
        const beta = tf.div(tf.mul(active, rz1), safeRz);
        const p1 = tf.add(z1, tf.mul(beta, p)) as tf.Tensor2D;
        return {x1, r1, p1, rz1};
      });
      tf.dispose([x, r, p, rz]);
      x = next.x1;
      r = next.r1;
      p = next.p1;
      rz = next.rz1;
    }
    return tf.mul(x, norm) as tf.Tensor2D;
  });
}
