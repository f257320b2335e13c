/**
 * A float64 re-implementation of the column-sparse semi-dual (uniform routing marginals a = 1,
 * b = m / n) and a long decaying Adam ascent on it: an oracle for routing-sized problems that
 * does not share code or float32 rounding with the tfjs solvers.
 */

/** Semi-dual value and gradient at `alpha` for the row-major cost `C` `[m * n]`. */
export function semidual64(alpha: ArrayLike<number>, C: number[][], k: number, gamma: number): {value: number; grad: Float64Array} {
  const m = C.length;
  const n = C[0].length;
  const b = m / n;
  const grad = new Float64Array(m).fill(1);
  let value = 0;
  for (let i = 0; i < m; i++) value += alpha[i];
  const x = new Float64Array(m);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < m; i++) x[i] = (alpha[i] - C[i][j]) / (gamma * b);
    const idx = Array.from({length: m}, (_, i) => i).sort((p, q) => x[q] - x[p]);
    // Sparsemax of the k largest: rho = largest r with x_(r) > (sum_{l<=r} x_(l) - 1) / r.
    let cs = 0;
    let rho = 0;
    let csRho = 0;
    for (let r = 0; r < k; r++) {
      cs += x[idx[r]];
      if (x[idx[r]] - (cs - 1) / (r + 1) > 0) {
        rho = r + 1;
        csRho = cs;
      }
    }
    const tau = (csRho - 1) / rho;
    for (let r = 0; r < rho; r++) {
      const i = idx[r];
      const t = b * (x[i] - tau);
      grad[i] -= t;
      value -= t * (alpha[i] - C[i][j]) - (gamma / 2) * t * t;
    }
  }
  return {value, grad};
}

/** The best semi-dual value seen by `steps` Adam steps from `alpha0` with a step decaying from `lr0` to `lr0 / 100`. */
export function ascent64(C: number[][], k: number, gamma: number, alpha0: ArrayLike<number>, steps: number, lr0: number): number {
  const m = C.length;
  const alpha = Float64Array.from(alpha0);
  const mo = new Float64Array(m);
  const v = new Float64Array(m);
  let best = -Infinity;
  for (let t = 1; t <= steps; t++) {
    const lr = lr0 * Math.pow(0.01, t / steps);
    const {value, grad} = semidual64(alpha, C, k, gamma);
    best = Math.max(best, value);
    for (let i = 0; i < m; i++) {
      mo[i] = 0.9 * mo[i] + 0.1 * grad[i];
      v[i] = 0.999 * v[i] + 0.001 * grad[i] * grad[i];
      alpha[i] += (lr * (mo[i] / (1 - 0.9 ** t))) / (Math.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8);
    }
  }
  return Math.max(best, semidual64(alpha, C, k, gamma).value);
}
