/**
 * Load-balance measurement of one MoE layer's routing: how many tokens each expert takes, how
 * even that is, how many tokens are dropped, how many experts a token gets, how confident the
 * router is, and which classes each expert serves. Pure JavaScript on values read back once;
 * nothing here runs inside a training step.
 */
import {InvalidArgumentError, ShapeError} from '@tfjs-moe/router';

/** Load statistics of one MoE layer, for one batch or accumulated over several. */
export interface LoadBalanceStats {
  /** Number of experts. */
  numExperts: number;
  /** Real tokens measured (when known); {@link mergeStats} weights by it. */
  tokens?: number;
  /** Tokens kept by each expert, per group (mean over groups), `[experts]`. */
  tokensPerExpert: number[];
  /** Smallest entry of `tokensPerExpert`. */
  min: number;
  /** Mean of `tokensPerExpert`. */
  mean: number;
  /** Largest entry of `tokensPerExpert`. */
  max: number;
  /** `max / mean`: 1 is perfect balance; `experts` means one expert takes everything. 0 when nothing is routed. */
  maxOverMean: number;
  /** Coefficient of variation `std / mean` of `tokensPerExpert` (population std). 0 when nothing is routed. */
  cv: number;
  /** How many experts fall in each load bin; bins are `LOAD_BIN_EDGES` times the mean load. */
  loadHistogram: number[];
  /** Fraction of (real) tokens that no expert took. */
  droppedFraction: number;
  /** Experts per token: smallest, mean and largest over (real) tokens. */
  expertsPerToken: {min: number; mean: number; max: number};
  /** `expertsPerTokenHistogram[k]`: fraction of tokens taken by exactly k experts (when known). */
  expertsPerTokenHistogram?: number[];
  /** Mean router probability of each expert over tokens, `[experts]` (when gates are known). */
  importance?: number[];
  /** Mean entropy (nats) of the router's per-token distribution over experts (when gates are known). */
  routerEntropy?: number;
  /** `routerEntropy / ln(experts)`, in [0, 1]. */
  normalizedEntropy?: number;
  /** OT routers: mean row-marginal violation of the transport plan. */
  otMarginalError?: number;
  /** OT routers: solver iterations. */
  solverIterations?: number;
  /** OT routers: suboptimality of the solver's dual value, where known. */
  suboptimality?: number;
  /** Expert specialization: `classExpert[c][e]` counts tokens of class c that expert e processed. */
  classExpert?: number[][];
}

/**
 * Edges of the load histogram, as multiples of the mean load: bins [0, 0.5), [0.5, 0.8),
 * [0.8, 1.2), [1.2, 1.5), [1.5, 2), [2, inf). A balanced layer has every expert in the middle bin.
 *
 * @example
 * ```ts
 * LOAD_BIN_EDGES.length - 1; // 6 bins
 * ```
 */
export const LOAD_BIN_EDGES = [0, 0.5, 0.8, 1.2, 1.5, 2, Infinity] as const;

/**
 * Counts experts per load bin ({@link LOAD_BIN_EDGES}).
 *
 * @example
 * ```ts
 * loadHistogram([0, 0.5, 1, 2.5]); // [1, 1, 1, 0, 0, 1] (mean 1)
 * ```
 */
export function loadHistogram(tokensPerExpert: readonly number[]): number[] {
  const mean = tokensPerExpert.reduce((a, b) => a + b, 0) / Math.max(1, tokensPerExpert.length);
  const counts = new Array<number>(LOAD_BIN_EDGES.length - 1).fill(0);
  if (!(mean > 0)) {
    counts[0] = tokensPerExpert.length;
    return counts;
  }
  for (const t of tokensPerExpert) {
    const r = t / mean;
    let b = 0;
    while (b < counts.length - 1 && r >= LOAD_BIN_EDGES[b + 1]) b++;
    counts[b]++;
  }
  return counts;
}

/**
 * min, mean, max, max/mean and coefficient of variation of per-expert loads.
 *
 * @example
 * ```ts
 * loadSummary([3, 1]); // {min: 1, mean: 2, max: 3, maxOverMean: 1.5, cv: 0.5}
 * ```
 */
export function loadSummary(tokensPerExpert: readonly number[]): Pick<LoadBalanceStats, 'min' | 'mean' | 'max' | 'maxOverMean' | 'cv'> {
  const n = tokensPerExpert.length;
  const mean = tokensPerExpert.reduce((a, b) => a + b, 0) / Math.max(1, n);
  const min = n ? Math.min(...tokensPerExpert) : 0;
  const max = n ? Math.max(...tokensPerExpert) : 0;
  const variance = tokensPerExpert.reduce((s, t) => s + (t - mean) ** 2, 0) / Math.max(1, n);
  return {min, mean, max, maxOverMean: mean > 0 ? max / mean : 0, cv: mean > 0 ? Math.sqrt(variance) / mean : 0};
}

/** Inputs of {@link measureRouting}: one routing call, read back as plain arrays. */
export interface RoutingArrays {
  /** `<int32>[groups, experts, capacity]`, token index within its group, -1 in empty slots. */
  tokenIndices: ArrayLike<number>;
  /** `[groups, experts, capacity]`. */
  shape: [number, number, number];
  /** Tokens per group. */
  groupSize: number;
  /** `<float32>[groups * groupSize, experts]` router probabilities (softmax gates), optional. */
  gates?: ArrayLike<number>;
  /** `[groups * groupSize]`: 1 for real tokens, 0 for padding (default: all real). */
  tokenMask?: ArrayLike<number>;
  /** `[groups * groupSize]`: the class of each token (its image's label), for specialization. */
  tokenClasses?: ArrayLike<number>;
  /** Number of classes (required with `tokenClasses`). */
  numClasses?: number;
}

/**
 * Measures load balance from a routing assignment (see {@link LoadBalanceStats}). Token `t` of
 * group `g` is flat token `g * groupSize + t`; an expert slot holding index -1 is empty.
 *
 * @example
 * ```ts
 * // 1 group of 4 tokens, 2 experts of capacity 2: expert 0 takes tokens 0 and 1, expert 1 takes 1.
 * const s = measureRouting({tokenIndices: [0, 1, 1, -1], shape: [1, 2, 2], groupSize: 4});
 * s.tokensPerExpert; // [2, 1]
 * s.droppedFraction; // 0.5 (tokens 2 and 3)
 * ```
 */
export function measureRouting(r: RoutingArrays): LoadBalanceStats {
  const [groups, experts, capacity] = r.shape;
  if (r.tokenIndices.length !== groups * experts * capacity) {
    throw new ShapeError('tokenIndices', `${groups * experts * capacity} entries for shape [${r.shape}]`, r.tokenIndices.length);
  }
  const tokens = groups * r.groupSize;
  const mask = r.tokenMask ?? new Array<number>(tokens).fill(1);
  const perToken = new Int32Array(tokens);
  const kept = new Array<number>(experts).fill(0);
  const classExpert = r.tokenClasses
    ? Array.from({length: r.numClasses ?? 0}, () => new Array<number>(experts).fill(0))
    : undefined;
  if (r.tokenClasses && !(r.numClasses! > 0)) throw new InvalidArgumentError('numClasses', 'a positive integer with tokenClasses', r.numClasses);
  for (let g = 0; g < groups; g++) {
    for (let e = 0; e < experts; e++) {
      for (let c = 0; c < capacity; c++) {
        const t = r.tokenIndices[(g * experts + e) * capacity + c];
        if (t < 0) continue;
        if (t >= r.groupSize) throw new InvalidArgumentError('tokenIndices', `token indices < groupSize ${r.groupSize}`, t);
        const flat = g * r.groupSize + t;
        perToken[flat]++;
        kept[e]++;
        if (classExpert) classExpert[r.tokenClasses![flat]][e]++;
      }
    }
  }
  let real = 0;
  let dropped = 0;
  let sum = 0;
  let minK = Infinity;
  let maxK = 0;
  for (let t = 0; t < tokens; t++) {
    if (!mask[t]) continue;
    real++;
    const k = perToken[t];
    if (k === 0) dropped++;
    sum += k;
    minK = Math.min(minK, k);
    maxK = Math.max(maxK, k);
  }
  const hist = new Array<number>(maxK + 1).fill(0);
  for (let t = 0; t < tokens; t++) if (mask[t]) hist[perToken[t]] += 1 / Math.max(1, real);
  const tokensPerExpert = kept.map((k) => k / Math.max(1, groups));
  const stats: LoadBalanceStats = {
    numExperts: experts,
    tokens: real,
    tokensPerExpert,
    ...loadSummary(tokensPerExpert),
    loadHistogram: loadHistogram(tokensPerExpert),
    droppedFraction: real ? dropped / real : 0,
    expertsPerToken: {min: real ? minK : 0, mean: real ? sum / real : 0, max: maxK},
    expertsPerTokenHistogram: hist,
  };
  if (classExpert) stats.classExpert = classExpert;
  if (r.gates) {
    if (r.gates.length !== tokens * experts) throw new ShapeError('gates', `${tokens * experts} entries [tokens, experts]`, r.gates.length);
    const importance = new Array<number>(experts).fill(0);
    let entropy = 0;
    for (let t = 0; t < tokens; t++) {
      if (!mask[t]) continue;
      for (let e = 0; e < experts; e++) {
        const p = r.gates[t * experts + e];
        importance[e] += p;
        if (p > 0) entropy -= p * Math.log(p);
      }
    }
    stats.importance = importance.map((s) => s / Math.max(1, real));
    stats.routerEntropy = entropy / Math.max(1, real);
    stats.normalizedEntropy = experts > 1 ? stats.routerEntropy / Math.log(experts) : 0;
  }
  return stats;
}

/**
 * Load statistics from a router's metric values (the standard names of `RoutingResult.metrics`
 * in `@tfjs-moe/router`: `tokensPerExpert`, `droppedFraction`, `expertsPerTokenMin/Mean/Max`,
 * `importance`, and for OT routers `meanRowViolation`, `solverIterations`, `suboptimality`;
 * `routerEntropy` when the router reports it).
 *
 * @example
 * ```ts
 * const s = statsFromMetrics({tokensPerExpert: [3, 1], droppedFraction: 0.25});
 * s.maxOverMean; // 1.5
 * ```
 */
export function statsFromMetrics(values: Record<string, number | number[] | undefined>): LoadBalanceStats {
  const tpe = values.tokensPerExpert;
  if (!Array.isArray(tpe)) throw new InvalidArgumentError('metrics.tokensPerExpert', 'a per-expert array', tpe);
  const num = (k: string): number | undefined => (typeof values[k] === 'number' ? (values[k] as number) : undefined);
  const summary = loadSummary(tpe);
  const stats: LoadBalanceStats = {
    numExperts: tpe.length,
    tokensPerExpert: [...tpe],
    ...summary,
    loadHistogram: loadHistogram(tpe),
    droppedFraction: num('droppedFraction') ?? 0,
    expertsPerToken: {
      min: num('expertsPerTokenMin') ?? 0,
      mean: num('expertsPerTokenMean') ?? 0,
      max: num('expertsPerTokenMax') ?? 0,
    },
  };
  if (Array.isArray(values.importance)) stats.importance = [...values.importance];
  const entropy = num('routerEntropy') ?? num('entropy');
  if (entropy !== undefined) {
    stats.routerEntropy = entropy;
    stats.normalizedEntropy = tpe.length > 1 ? entropy / Math.log(tpe.length) : 0;
  }
  const mrv = num('meanRowViolation');
  if (mrv !== undefined) stats.otMarginalError = mrv;
  const it = num('solverIterations');
  if (it !== undefined) stats.solverIterations = it;
  const sub = num('suboptimality');
  if (sub !== undefined) stats.suboptimality = sub;
  return stats;
}

/**
 * Averages several {@link LoadBalanceStats} of one layer (e.g. the batches of an epoch), weighted
 * by their token counts when every entry has one (then the result equals measuring all batches at
 * once), else equally; class x expert counts are summed. OT fields are averaged where present.
 *
 * @example
 * ```ts
 * const epoch = mergeStats(batches.map((b) => b['block1_moe']));
 * ```
 */
export function mergeStats(list: readonly LoadBalanceStats[]): LoadBalanceStats {
  if (list.length === 0) throw new InvalidArgumentError('stats', 'a non-empty list', list);
  const E = list[0].numExperts;
  const weighted = list.every((s) => s.tokens !== undefined);
  const w = list.map((s) => (weighted ? s.tokens! : 1));
  const wSum = w.reduce((a, b) => a + b, 0) || 1;
  const avg = (f: (s: LoadBalanceStats) => number): number => list.reduce((a, s, i) => a + w[i] * f(s), 0) / wSum;
  const avgVec = (f: (s: LoadBalanceStats) => number[] | undefined): number[] | undefined =>
    list.every((s) => f(s)) ? Array.from({length: E}, (_, e) => list.reduce((a, s, i) => a + w[i] * f(s)![e], 0) / wSum) : undefined;
  const avgOpt = (f: (s: LoadBalanceStats) => number | undefined): number | undefined => {
    let num = 0;
    let den = 0;
    list.forEach((s, i) => {
      const v = f(s);
      if (v !== undefined) {
        num += w[i] * v;
        den += w[i];
      }
    });
    return den > 0 ? num / den : undefined;
  };
  const tokensPerExpert = avgVec((s) => s.tokensPerExpert)!;
  const out: LoadBalanceStats = {
    numExperts: E,
    ...(weighted ? {tokens: wSum} : {}),
    tokensPerExpert,
    ...loadSummary(tokensPerExpert),
    loadHistogram: loadHistogram(tokensPerExpert),
    droppedFraction: avg((s) => s.droppedFraction),
    expertsPerToken: {
      min: Math.min(...list.map((s) => s.expertsPerToken.min)),
      mean: avg((s) => s.expertsPerToken.mean),
      max: Math.max(...list.map((s) => s.expertsPerToken.max)),
    },
  };
  const importance = avgVec((s) => s.importance);
  if (importance) out.importance = importance;
  for (const key of ['routerEntropy', 'normalizedEntropy', 'otMarginalError', 'solverIterations', 'suboptimality'] as const) {
    const v = avgOpt((s) => s[key]);
    if (v !== undefined) out[key] = v;
  }
  const withClasses = list.filter((s) => s.classExpert);
  if (withClasses.length) {
    const C = withClasses[0].classExpert!.length;
    out.classExpert = Array.from({length: C}, (_, c) =>
      Array.from({length: E}, (_, e) => withClasses.reduce((a, s) => a + s.classExpert![c][e], 0)),
    );
  }
  return out;
}

/**
 * A one-line summary for terminals: `max/mean 1.12 cv 0.08 drop 1.6%`.
 *
 * @example
 * ```ts
 * console.log(formatBalance(stats)); // 'max/mean 1.12 cv 0.08 drop 1.6%'
 * ```
 */
export function formatBalance(s: LoadBalanceStats): string {
  return `max/mean ${s.maxOverMean.toFixed(2)} cv ${s.cv.toFixed(2)} drop ${(100 * s.droppedFraction).toFixed(1)}%`;
}
