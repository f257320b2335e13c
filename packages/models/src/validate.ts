/**
 * Argument checks for the models package, throwing the router package's typed errors with the
 * same messages as its own checks (`Expected depth to be a positive integer, but got 0.`).
 * Local because the router barrel exports the error classes but not its assert helpers.
 */
import {ConfigError, InvalidArgumentError} from '@tfjs-moe/router';

/** Throws {@link InvalidArgumentError} unless `value` is an integer >= `min` (default 1). */
export function assertPositiveInt(argument: string, value: unknown, context?: string, min = 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new InvalidArgumentError(argument, min === 1 ? 'a positive integer' : `an integer >= ${min}`, value, context);
  }
  return value;
}

/** Throws {@link InvalidArgumentError} unless `value` is a finite number > 0. */
export function assertPositiveNumber(argument: string, value: unknown, context?: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(argument, 'a finite number > 0', value, context);
  }
  return value;
}

/** Throws {@link ConfigError} unless `value` is one of `choices`. */
export function assertOneOf<T extends string>(argument: string, value: unknown, choices: readonly T[], context?: string): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    throw new ConfigError(argument, `one of ${choices.map((c) => `'${c}'`).join(', ')}`, value, context);
  }
  return value as T;
}
