/**
 * The routers' input checks that need a value: no NaN or Infinity in what is routed. Every router
 * runs the same check, on its logits (one fused reduction over `[groups, groupSize, E]`, E times
 * smaller than the tokens, and one read of a flag); only when it fails are the tokens read to say
 * whether they or the router's own weights hold the bad value.
 *
 * When it runs (`'auto'`, the default): on the synchronous backends (`cpu`, `wasm`), where a read
 * only copies a value the kernels have already computed; and on any backend for a router that
 * reads back anyway in that call (Sinkhorn and sparse-OT with host reads); never for a router
 * built with `hostReads: false`, which promises no read at all. On `webgl` and
 * `webgpu` a top-k or expert-choice router would otherwise read nothing per step, and a read
 * there waits for the whole queued pipeline, so it is skipped: there `train()` still stops at the
 * first non-finite loss, and `setRouterInputChecks('always')` turns the check on as a debug check.
 * Measured (`bench/router-input-checks.ts`, shared 2-core machine at load ~12): the check
 * alone takes 0.01-0.11 ms on cpu and wasm for logits of 8 x 197 tokens x 8 experts, under
 * 0.01% of that MoE layer's forward pass (the whole-forward difference is lost in the noise).
 */
import * as tf from '@tensorflow/tfjs';
import {assertOneOf, NonFiniteError} from '../core/errors';
import {firstNonFinite} from '../ot/validate';

/** When the routers check their input for NaN / Infinity (see the module docs). */
export type RouterInputChecks = 'auto' | 'always' | 'never';

let mode: RouterInputChecks = 'auto';

/** Backends whose kernels run synchronously: a read there costs no pipeline flush. */
const SYNCHRONOUS_BACKENDS = new Set(['cpu', 'wasm']);

/**
 * Whether the active backend runs its kernels synchronously (cpu, wasm): a synchronous read of a
 * computed value there costs only the copy, no pipeline flush.
 *
 * @example
 * ```ts
 * if (synchronousBackend()) counts = tokenIndices.dataSync();
 * ```
 */
export function synchronousBackend(): boolean {
  return SYNCHRONOUS_BACKENDS.has(tf.getBackend());
}

/** Depth of {@link withoutHostReads} scopes. */
let noReadScopes = 0;

/**
 * Whether index bookkeeping (slot rows, capacity assignment) may run on the host from a
 * synchronous read: on the synchronous backends (cpu, wasm), except inside
 * {@link withoutHostReads} (a router built with `hostReads: false`, which promises no read).
 *
 * @example
 * ```ts
 * const rows = hostIndexReads() ? hostRows(tokenIndices) : tensorRows(tokenIndices);
 * ```
 */
export function hostIndexReads(): boolean {
  return noReadScopes === 0 && synchronousBackend();
}

/**
 * Runs `fn` with {@link hostIndexReads} false (the routers' call for `hostReads: false`).
 *
 * @example
 * ```ts
 * const result = withoutHostReads(() => routeLogits(logits));
 * ```
 */
export function withoutHostReads<T>(fn: () => T): T {
  noReadScopes++;
  try {
    return fn();
  } finally {
    noReadScopes--;
  }
}

/**
 * Sets when every router checks what it routes for NaN / Infinity: `'auto'` (default; on cpu and
 * wasm, and wherever the router reads back anyway), `'always'` (a debug check on webgl / webgpu:
 * one extra synchronous read per call; on webgpu in Node synchronous reads fail), `'never'`.
 * Returns the previous setting.
 *
 * @throws {InvalidArgumentError} for another value
 *
 * @example
 * ```ts
 * const before = setRouterInputChecks('always'); // debugging NaN on webgl
 * // ... train a few steps ...
 * setRouterInputChecks(before);
 * ```
 */
export function setRouterInputChecks(value: RouterInputChecks): RouterInputChecks {
  const previous = mode;
  mode = assertOneOf('value', value, ['auto', 'always', 'never'] as const, 'setRouterInputChecks');
  return previous;
}

/**
 * Whether a router's call checks its input now: `readsAnyway` says whether that call reads values
 * back from the device in any case (Sinkhorn, sparse-OT with host reads), null that the router
 * was told to read nothing (`hostReads: false`: no check unless `'always'`).
 */
export function routerInputChecksOn(readsAnyway: boolean | null): boolean {
  if (mode !== 'auto') return mode === 'always';
  if (readsAnyway === null) return false;
  return readsAnyway || synchronousBackend();
}

/**
 * Throws a {@link NonFiniteError} unless `logits` are finite: naming `tokens` (with the first
 * bad value) when the router's input holds NaN or Infinity, else `router logits` (the router's
 * kernel or bias holds one, or the tokens overflow float32 through it).
 *
 * @param logits `<float32>[groups, groupSize, E]` computed from `tokens`
 * @param tokens `<float32>[groups, groupSize, d]`, the router's input
 * @param context the router's class name, for the message
 *
 * @example
 * ```ts
 * assertFiniteRouting(logits, tokens, 'TopKRouter');
 * // NonFiniteError: TopKRouter: Expected tokens to be finite (no NaN or Infinity), but got NaN.
 * ```
 */
export function assertFiniteRouting(logits: tf.Tensor, tokens: tf.Tensor, context: string): void {
  const flag = tf.tidy(() => tf.all(tf.isFinite(logits)));
  const ok = flag.dataSync()[0];
  flag.dispose();
  if (ok) return;
  const bad = firstNonFinite(tokens);
  if (bad !== null) throw new NonFiniteError('tokens', 'finite (no NaN or Infinity)', bad, context);
  throw new NonFiniteError(
    'router logits', 'finite (the tokens are finite: the router kernel or bias holds NaN or Infinity, or the logits overflow float32)',
    firstNonFinite(logits) ?? NaN, context);
}
