/**
 * Typed errors for tfjs-moe. Every error about an argument names the argument and echoes the
 * value it got, in the style of tfjs: `Expected k to be a positive integer, but got 2.5.`
 *
 * @example
 * ```ts
 * try {
 *   solveSparseOT(cost, {k: 0});
 * } catch (e) {
 *   if (e instanceof InvalidArgumentError) console.log(e.argument, e.value); // 'k', 0
 * }
 * ```
 */

/** Base class of every error that tfjs-moe throws on purpose. */
export class TfjsMoeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/** Renders a value for an error message: numbers, strings, arrays (shortened) and shapes. */
export function formatValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : String(value);
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (Array.isArray(value) || ArrayBuffer.isView(value)) {
    const arr = Array.from(value as ArrayLike<unknown>);
    const shown = arr.slice(0, 8).map(formatValue).join(',');
    return `[${shown}${arr.length > 8 ? `,... (${arr.length} items)` : ''}]`;
  }
  if (typeof value === 'object') {
    try {
      const s = JSON.stringify(value);
      return s.length > 200 ? `${s.slice(0, 200)}...` : s;
    } catch {
      return String(value);
    }
  }
  return String(value);
}

/**
 * An argument has a bad value. `argument` names it and `value` holds what was passed.
 * Message: `[context: ]Expected <argument> to be <expected>, but got <value>.`
 */
export class InvalidArgumentError extends TfjsMoeError {
  readonly argument: string;
  readonly value: unknown;
  constructor(argument: string, expected: string, value: unknown, context?: string) {
    super(`${context ? `${context}: ` : ''}Expected ${argument} to be ${expected}, but got ${formatValue(value)}.`);
    this.argument = argument;
    this.value = value;
  }
}

/** A tensor argument has the wrong shape or rank; `value` is the shape that was passed. */
export class ShapeError extends InvalidArgumentError {}

/** A tensor argument holds NaN or Infinity; `value` is the first offending entry. */
export class NonFiniteError extends InvalidArgumentError {}

/** A layer or model configuration cannot be used (unknown names, bad sizes, mismatched weights). */
export class ConfigError extends InvalidArgumentError {}

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

/**
 * Throws {@link InvalidArgumentError} (or the subclass `errorClass`, e.g. {@link ConfigError})
 * unless `value` is one of `choices`.
 */
export function assertOneOf<T extends string>(
  argument: string,
  value: unknown,
  choices: readonly T[],
  context?: string,
  errorClass: typeof InvalidArgumentError = InvalidArgumentError,
): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    throw new errorClass(argument, `one of ${choices.map((c) => `'${c}'`).join(', ')}`, value, context);
  }
  return value as T;
}
