/** Learning-rate schedule: linear warmup, then cosine decay. */
import {InvalidArgumentError} from '@tfjs-moe/router';

/** Options of {@link warmupCosine}. */
export interface WarmupCosineOptions {
  /** Peak learning rate, reached at the end of warmup. */
  peak: number;
  /** Total number of steps (the cosine reaches `end` at this step). */
  totalSteps: number;
  /** Linear warmup steps from `peak / warmupSteps` up to `peak`. Default 0. */
  warmupSteps?: number;
  /** Final learning rate. Default 0. */
  end?: number;
}

/**
 * The learning rate of step `step` (0-based): during warmup `peak * (step + 1) / warmupSteps`;
 * afterwards `end + (peak - end) * (1 + cos(pi * p)) / 2` with `p = (step - warmup) /
 * (totalSteps - warmup)` clamped to [0, 1].
 *
 * @example
 * ```ts
 * warmupCosine(0, {peak: 1e-3, totalSteps: 100, warmupSteps: 10}); // 1e-4
 * warmupCosine(55, {peak: 1e-3, totalSteps: 100, warmupSteps: 10}); // 5e-4 (half way down)
 * ```
 */
export function warmupCosine(step: number, options: WarmupCosineOptions): number {
  const {peak, totalSteps} = options;
  const warmup = options.warmupSteps ?? 0;
  const end = options.end ?? 0;
  if (!(peak > 0) || !Number.isFinite(peak)) throw new InvalidArgumentError('learningRate', 'a finite number > 0', peak);
  if (!Number.isInteger(totalSteps) || totalSteps < 1) throw new InvalidArgumentError('totalSteps', 'a positive integer', totalSteps);
  if (!Number.isInteger(warmup) || warmup < 0) throw new InvalidArgumentError('warmupSteps', 'an integer >= 0', warmup);
  if (step < warmup) return (peak * (step + 1)) / warmup;
  const span = Math.max(1, totalSteps - warmup);
  const p = Math.min(1, Math.max(0, (step - warmup) / span));
  return end + ((peak - end) * (1 + Math.cos(Math.PI * p))) / 2;
}
