/**
 * Routers that would read values back synchronously (`dataSync`) at inference on webgpu, which
 * tfjs-backend-webgpu cannot do here: it reads through a WebGPU canvas context, which in Chromium
 * on SwiftShader destroys the device, and in Node there is no OffscreenCanvas at all. See
 * bench/RESULTS-browser.md.
 *
 * The sparse-OT router and the Sinkhorn router with `balanceInference` solve without synchronous
 * reads on webgpu by default (their `hostReads` option defaults to `tf.getBackend() !== 'webgpu'`):
 * only a model saved with `hostReads: true` in such a router's config still reads synchronously.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Names the router of an MoE layer if it reads back synchronously at inference on webgpu: the
 * sparse-OT router, and the Sinkhorn router when it balances at inference, when their config
 * forces `hostReads: true`. `undefined` otherwise (the default).
 *
 * @example
 * ```ts
 * syncReadingRouter(sparseOTRouter({numExperts: 4}));                   // undefined
 * syncReadingRouter(sparseOTRouter({numExperts: 4, hostReads: true}));  // 'the sparse-OT router with hostReads: true'
 * ```
 */
export function syncReadingRouter(router: tf.layers.Layer): string | undefined {
  const cls = router.getClassName?.();
  const config = (router.getConfig?.() ?? {}) as {balanceInference?: boolean; hostReads?: boolean};
  // hostReads is a run-time choice that routers no longer write into their config: read the instance.
  const hostReads = (router as {hostReads?: boolean | null}).hostReads ?? config.hostReads;
  if (hostReads !== true) return undefined;
  if (cls === 'SparseOTRouter') return 'the sparse-OT router with hostReads: true';
  if (cls === 'SinkhornRouter' && config.balanceInference) return 'the Sinkhorn router with balanceInference and hostReads: true';
  return undefined;
}

/**
 * The message for a model whose MoE layers (`layers`: name and router) cannot run on webgpu, or
 * `undefined` when all can.
 *
 * @example
 * ```ts
 * webgpuSyncReadProblem(moeLayers(model).map((l) => ({name: l.name, router: l.router})));
 * // undefined, or 'the sparse-OT router with hostReads: true (in block1_moe, block3_moe) cannot run on webgpu: ...'
 * ```
 */
export function webgpuSyncReadProblem(layers: Array<{name: string; router: unknown}>): string | undefined {
  const found = new Map<string, string[]>();
  for (const l of layers) {
    const what = syncReadingRouter(l.router as tf.layers.Layer);
    if (what) found.set(what, [...(found.get(what) ?? []), l.name]);
  }
  for (const [what, names] of found) {
    return `${what} (in ${names.join(', ')}) cannot run on webgpu: it reads values back synchronously, ` +
      'which tfjs-backend-webgpu cannot do here. Remove hostReads from its config, or pick wasm or webgl.';
  }
  return undefined;
}
