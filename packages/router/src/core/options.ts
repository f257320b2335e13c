/**
 * Strict options objects: every public options object of tfjs-moe rejects keys it does not know,
 * naming the key and suggesting the nearest known one (`moe({router: 'topk', kk: 2})` is an error,
 * never a silently ignored setting).
 */
import {InvalidArgumentError} from './errors';

/**
 * An options object holds a key that the function or layer does not know. `argument` is the key
 * (with the object's name, e.g. `'moe.kk'`), `value` its value, `suggestion` the nearest known key
 * or `undefined` when none is close.
 *
 * Message: `[context: ]Unknown option 'kk' (value 2). Did you mean 'k'? Known options: ...`
 */
export class UnknownOptionError extends InvalidArgumentError {
  readonly key: string;
  readonly suggestion: string | undefined;
  constructor(key: string, value: unknown, known: readonly string[], context?: string) {
    super(key, 'a known option', value, context);
    const suggestion = nearestKey(key, known);
    this.key = key;
    this.suggestion = suggestion;
    this.message =
      `${context ? `${context}: ` : ''}Unknown option '${key}'` +
      `${suggestion === undefined ? '.' : `. Did you mean '${suggestion}'?`}` +
      ` Known options: ${[...known].sort().join(', ')}.`;
  }
}

/** Levenshtein distance, case-insensitive (`capacityFacter` -> `capacityFactor` is 1). */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  let prev = Array.from({length: t.length + 1}, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const cur = [i];
    for (let j = 1; j <= t.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (s[i - 1] === t[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[t.length];
}

/**
 * The known key nearest to `key`: within edit distance max(2, a third of its length), or one that
 * contains it or is contained in it (`topK` -> `k`); `undefined` when none is close.
 */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  const lower = key.toLowerCase();
  for (const candidate of known) {
    const c = candidate.toLowerCase();
    let score = editDistance(lower, c);
    if (score > Math.max(2, Math.floor(key.length / 3))) {
      score = c.length > 0 && (lower.includes(c) || c.includes(lower)) ? 100 + Math.abs(c.length - lower.length) : Infinity;
    }
    if (score < bestScore) {
      bestScore = score;
      best = candidate;
    }
  }
  return best;
}

/**
 * Throws {@link UnknownOptionError} for the first key of `options` that is not in `known`
 * (keys whose value is `undefined` count too: a misspelt key is wrong whatever its value).
 * `options` may be `undefined` or `null` (nothing to check). Returns `options` for chaining.
 *
 * @param options the user's options object, e.g. the args of `moe(args)`
 * @param known every key the callee reads
 * @param context names the callee in the message, e.g. `'moe'`
 * @throws {InvalidArgumentError} when `options` is not a plain object (an array, a number, ...)
 * @throws {UnknownOptionError} naming the key, its value and the nearest known key
 *
 * @example
 * ```ts
 * checkOptions({k: 2, capacityFacter: 2}, ['k', 'capacityFactor'], 'moe');
 * // UnknownOptionError: moe: Unknown option 'capacityFacter'. Did you mean 'capacityFactor'? ...
 * ```
 */
export function checkOptions<T>(options: T, known: readonly string[], context?: string): T {
  if (options === undefined || options === null) return options;
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidArgumentError('options', 'an object', options, context);
  }
  const knownSet = new Set(known);
  for (const [key, value] of Object.entries(options as Record<string, unknown>)) {
    if (!knownSet.has(key)) throw new UnknownOptionError(key, value, known, context);
  }
  return options;
}
