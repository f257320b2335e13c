/** Validation of the solvers' `tolerance` settings. */
import {InvalidArgumentError} from '../../core/errors';

/**
 * Returns `value` when it is a finite number >= 0; throws an `InvalidArgumentError` naming
 * `tolerance` otherwise.
 *
 * @example
 * ```ts
 * checkTolerance(1e-5, 'newton'); // 1e-5
 * ```
 */
export function checkTolerance(value: unknown, context: string, name = 'tolerance'): number {
  if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) {
    throw new InvalidArgumentError(name, 'a finite number >= 0', value, context);
  }
  return value;
}
