/**
 * Routers whose expert capacity follows google-research/vmoe's `compute_capacity` exactly, for
 * models imported from (or exported to) vmoe checkpoints. They are the top-k and sparse-OT routers
 * of `@tfjs-moe/router` with only the capacity rule replaced; importing `@tfjs-moe/models`
 * registers them, so saved models that use them load with `tf.loadLayersModel`.
 */
import * as tf from '@tensorflow/tfjs';
import {
  assertOneOf,
  ConfigError,
  InvalidArgumentError,
  registerRouter,
  SparseOTRouter,
  SparseOTRouterArgs,
  TopKRouter,
  TopKRouterArgs,
} from '@tfjs-moe/router';

/** How vmoe turns the raw capacity into an integer: `Math.ceil` or Python's `round` (half to even). */
export type CapacityRounding = 'ceil' | 'round';

/** The capacity options of vmoe's dispatchers (`capacity`, `capacity_ceil_or_round`, `capacity_multiple_of`). */
export interface VMoECapacityArgs {
  /** `capacity_ceil_or_round`: `'ceil'` (default) or `'round'` (half to even, as Python's `round`). */
  capacityRounding?: CapacityRounding;
  /**
   * `capacity_multiple_of`: round the capacity up to a multiple of this. Default 4 (vmoe's
   * default); `null` or 0 for no rounding.
   */
  capacityMultipleOf?: number | null;
  /** `capacity`: slots per expert, used instead of the capacity factor when given. Default null. */
  fixedCapacity?: number | null;
  /** Smallest capacity (after rounding). Default 1 (vmoe raises an error below 1 instead). */
  minCapacity?: number;
}

interface ResolvedCapacityArgs {
  capacityRounding: CapacityRounding;
  capacityMultipleOf: number | null;
  fixedCapacity: number | null;
  minCapacity: number;
}

const CAPACITY_KEYS = ['capacityRounding', 'capacityMultipleOf', 'fixedCapacity', 'minCapacity'] as const;

function optionalPositiveInt(name: string, value: unknown, context: string, allowZero = false): number | null {
  if (value == null) return null;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < (allowZero ? 0 : 1)) {
    throw new ConfigError(name, allowZero ? 'a non-negative integer or null' : 'a positive integer or null', value, context);
  }
  return value === 0 ? null : value;
}

function resolveCapacityArgs(args: VMoECapacityArgs, context: string): ResolvedCapacityArgs {
  const minCapacity = args.minCapacity ?? 1;
  if (typeof minCapacity !== 'number' || !Number.isInteger(minCapacity) || minCapacity < 1) {
    throw new ConfigError('minCapacity', 'a positive integer', minCapacity, context);
  }
  return {
    capacityRounding: assertOneOf('capacityRounding', args.capacityRounding ?? 'ceil', ['ceil', 'round'] as const, context, ConfigError),
    capacityMultipleOf: args.capacityMultipleOf === undefined ? 4 : optionalPositiveInt('capacityMultipleOf', args.capacityMultipleOf, context, true),
    fixedCapacity: optionalPositiveInt('fixedCapacity', args.fixedCapacity, context),
    minCapacity,
  };
}

/** Splits the capacity options off a router's arguments (the base router must not see them). */
function splitCapacityArgs<T extends object>(args: T & VMoECapacityArgs): [T, VMoECapacityArgs] {
  const rest = {...args} as Record<string, unknown>;
  const capacity: Record<string, unknown> = {};
  for (const k of CAPACITY_KEYS) {
    if (k in rest) capacity[k] = rest[k];
    delete rest[k];
  }
  return [rest as T, capacity as VMoECapacityArgs];
}

/** Python 3's `round` of a float to an integer: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * vmoe's expert capacity (`vmoe.moe.compute_capacity`): `raw = numTokens * capacityFactor /
 * numExperts` in float64, in that order and without an epsilon; `ceil(raw)` (or `round`, half to
 * even); then rounded up to a multiple of `capacityMultipleOf` (default 4). `numTokens` is
 * `groupSize * k` for token-choice routers and `groupSize` for expert-choice and OT routers.
 * Throws `InvalidArgumentError` when the capacity is below 1 (as vmoe does) and `minCapacity` is 1.
 *
 * @example
 * ```ts
 * vmoeCapacity(200, 4, 1.1); // raw 55.00000000000001 -> ceil 56 -> 56
 * vmoeCapacity(40, 4, 1.0);  // 10 -> 12 (multiple of 4)
 * vmoeCapacity(40, 4, 1.0, {capacityMultipleOf: null}); // 10
 * ```
 */
export function vmoeCapacity(numTokens: number, numExperts: number, capacityFactor: number, options: VMoECapacityArgs = {}): number {
  const ctx = 'vmoeCapacity';
  const o = resolveCapacityArgs(options, ctx);
  if (o.fixedCapacity != null) return Math.max(o.fixedCapacity, o.minCapacity);
  if (typeof capacityFactor !== 'number' || !Number.isFinite(capacityFactor) || capacityFactor <= 0) {
    throw new InvalidArgumentError('capacityFactor', 'a finite number > 0', capacityFactor, ctx);
  }
  const raw = (numTokens * capacityFactor) / numExperts;
  let c = o.capacityRounding === 'ceil' ? Math.ceil(raw) : roundHalfEven(raw);
  if (c < 1 && o.minCapacity <= 1) {
    throw new InvalidArgumentError('capacity', `>= 1 (tokens ${numTokens}, experts ${numExperts}, capacity factor ${capacityFactor})`, c, ctx);
  }
  c = Math.max(c, o.minCapacity);
  const m = o.capacityMultipleOf;
  if (m != null && m > 0) c += (m - (c % m)) % m;
  return c;
}

function capacityConfig(o: ResolvedCapacityArgs): tf.serialization.ConfigDict {
  return {
    capacityRounding: o.capacityRounding,
    capacityMultipleOf: o.capacityMultipleOf,
    fixedCapacity: o.fixedCapacity,
    minCapacity: o.minCapacity,
  };
}

/** Arguments of {@link VMoETopKRouter}: those of `TopKRouter` plus vmoe's capacity options. */
export interface VMoETopKRouterArgs extends TopKRouterArgs, VMoECapacityArgs {}

/**
 * vmoe's `NoisyTopExpertsPerItemRouter` at evaluation: the top-k router of `@tfjs-moe/router`
 * (softmax gates as combine weights, all first choices before second choices, optional
 * batch-prioritized routing by the top-1 gate) with vmoe's capacity,
 * `min(groupSize, vmoeCapacity(groupSize * k, E, capacityFactor))` (the clamp to the group
 * never changes which tokens a token-choice router keeps). Registered as `'vmoe-topk'`.
 * Training noise and auxiliary losses are those of `TopKRouter`, not vmoe's.
 *
 * @example
 * ```ts
 * const layer = moe({numExperts: 8, hiddenDim: 3072, router: {name: 'vmoe-topk', k: 2, batchPrioritizedRouting: true}});
 * ```
 */
export class VMoETopKRouter extends TopKRouter {
  static override className = 'VMoETopKRouter';
  /** The resolved capacity options. */
  readonly capacityOptions: Readonly<ResolvedCapacityArgs>;

  constructor(args: VMoETopKRouterArgs) {
    const [rest, capacity] = splitCapacityArgs(args);
    super(rest);
    this.capacityOptions = resolveCapacityArgs(capacity, 'VMoETopKRouter');
  }

  override computeCapacity(groupSize: number, capacityFactor: number): number {
    return Math.min(groupSize, vmoeCapacity(groupSize * this.k, this.numExperts, capacityFactor, this.capacityOptions));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), ...capacityConfig(this.capacityOptions)};
  }
}
tf.serialization.registerClass(VMoETopKRouter);
registerRouter('vmoe-topk', VMoETopKRouter as never);

/** Arguments of {@link VMoESparseOTRouter}: those of `SparseOTRouter` plus vmoe's capacity options. */
export interface VMoESparseOTRouterArgs extends Omit<SparseOTRouterArgs, 'capacityMultipleOf'>, VMoECapacityArgs {}

/**
 * The sparse-OT router of `@tfjs-moe/router` (use `preset: 'paper'` for vmoe's
 * `KSparseProjectionTransportTopItemsPerExpertRouter`) with vmoe's capacity: experts choose
 * tokens with `k = C = vmoeCapacity(groupSize, E, capacityFactor)`, clamped to the group.
 * Registered as `'vmoe-sparse-ot'`.
 *
 * @example
 * ```ts
 * const layer = moe({numExperts: 8, hiddenDim: 3072, router: {name: 'vmoe-sparse-ot', preset: 'paper'}});
 * ```
 */
export class VMoESparseOTRouter extends SparseOTRouter {
  static override className = 'VMoESparseOTRouter';
  /** The resolved capacity options. */
  readonly capacityOptions: Readonly<ResolvedCapacityArgs>;

  constructor(args: VMoESparseOTRouterArgs) {
    const [rest, capacity] = splitCapacityArgs(args);
    super(rest as SparseOTRouterArgs);
    this.capacityOptions = resolveCapacityArgs(capacity, 'VMoESparseOTRouter');
  }

  override computeCapacity(groupSize: number, capacityFactor: number): number {
    return Math.min(groupSize, vmoeCapacity(groupSize * this.expertsPerToken, this.numExperts, capacityFactor, this.capacityOptions));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), ...capacityConfig(this.capacityOptions)};
  }
}
tf.serialization.registerClass(VMoESparseOTRouter);
registerRouter('vmoe-sparse-ot', VMoESparseOTRouter as never);
