/**
 * The one Adam ascent step of the host path (see host.ts), in the float32 steps of adam.ts's
 * `adamStep`: used by the `adam` solver's host path and by the polish phase of the
 * `alternating` solver's host path, each passing the bias corrections as its tensor path
 * computes them.
 */

const f32 = Math.fround;

/** Adam's constants as float32 values, as the tensor path uploads them. */
export interface HostAdamConstants {
  b1: number;
  b1c: number;
  b2: number;
  b2c: number;
  eps: number;
}

/**
 * The float32 constants of moment decays `beta1`, `beta2` and `epsilon`.
 *
 * @example
 * ```ts
 * const k = hostAdamConstants(0.9, 0.999, 1e-8);
 * ```
 */
export function hostAdamConstants(beta1: number, beta2: number, epsilon: number): HostAdamConstants {
  return {b1: f32(beta1), b1c: f32(1 - beta1), b2: f32(beta2), b2c: f32(1 - beta2), eps: f32(epsilon)};
}

/**
 * One Adam ascent step `out = p + lr * m_hat / (sqrt(v_hat) + eps)` with bias corrections `c1 =
 * 1 - beta1^t`, `c2 = 1 - beta2^t` (float32 values): updates the moments `m`, `v` in place and
 * writes `out` (which may be `p`).
 *
 * @example
 * ```ts
 * adamStepHost(alpha, alpha, m, v, grad, lr, f32(1 - 0.9 ** t), f32(1 - 0.999 ** t), k);
 * ```
 */
export function adamStepHost(
  out: Float32Array, p: ArrayLike<number>, m: Float32Array, v: Float32Array, grad: ArrayLike<number>, lr: number, c1: number, c2: number, k: HostAdamConstants,
): void {
  for (let i = 0; i < out.length; i++) {
    const g = grad[i];
    m[i] = f32(f32(m[i] * k.b1) + f32(g * k.b1c));
    v[i] = f32(f32(v[i] * k.b2) + f32(f32(g * g) * k.b2c));
    out[i] = p[i] + f32(lr * f32(f32(m[i] / c1) / f32(f32(Math.sqrt(f32(v[i] / c2))) + k.eps)));
  }
}
