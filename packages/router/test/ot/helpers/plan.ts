/** Small checks on plans read back from the device, shared by the OT tests. */

/** Largest number of nonzeros in any column of a row-major `[m, n]` plan. */
export function maxColumnNnz(plan: ArrayLike<number>, m: number, n: number): number {
  let worst = 0;
  for (let j = 0; j < n; j++) {
    let c = 0;
    for (let i = 0; i < m; i++) if (plan[i * n + j] > 0) c++;
    worst = Math.max(worst, c);
  }
  return worst;
}
