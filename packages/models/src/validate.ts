/**
 * Argument checks for the models package: the router package's typed checks, with unknown
 * choices in a model configuration reported as {@link ConfigError}.
 */
import {assertOneOf as assertOneOfArgument, ConfigError} from '@tfjs-moe/router';

export {assertPositiveInt, assertPositiveNumber} from '@tfjs-moe/router';

/** Throws {@link ConfigError} unless `value` is one of `choices`. */
export function assertOneOf<T extends string>(argument: string, value: unknown, choices: readonly T[], context?: string): T {
  return assertOneOfArgument(argument, value, choices, context, ConfigError);
}
