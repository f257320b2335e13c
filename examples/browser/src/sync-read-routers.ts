/**
 * Routers whose solver reads values back synchronously (`dataSync`) at inference, which WebGPU
 * cannot do here: tfjs-backend-webgpu reads through a WebGPU canvas context, which in Chromium on
 * SwiftShader destroys the device (the sparse-OT solver then reports a bogus "NaN cost"), and in
 * Node there is no OffscreenCanvas at all. See bench/RESULTS-browser.md.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Names the router of an MoE layer if it reads back synchronously at inference: the sparse-OT
 * router, and the Sinkhorn router when it balances at inference. `undefined` otherwise.
 *
 * @example
 * ```ts
 * syncReadingRouter(moeLayer.router);  // 'the sparse-OT router'
 * ```
 */
export function syncReadingRouter(router: tf.layers.Layer): string | undefined {
  const cls = router.getClassName?.();
  if (cls === 'SparseOTRouter') return 'the sparse-OT router';
  if (cls === 'SinkhornRouter' && (router.getConfig() as {balanceInference?: boolean}).balanceInference) {
    return 'the Sinkhorn router with balanceInference';
  }
  return undefined;
}

/**
 * The message for a model whose MoE layers (`layers`: name and router) cannot run on webgpu, or
 * `undefined` when all can.
 *
 * @example
 * ```ts
 * webgpuSyncReadProblem(moeLayers(model).map((l) => ({name: l.name, router: l.router})));
 * // 'the sparse-OT router (in block1_moe, block3_moe) cannot run on webgpu yet: ...'
 * ```
 */
export function webgpuSyncReadProblem(layers: Array<{name: string; router: unknown}>): string | undefined {
  const found = new Map<string, string[]>();
  for (const l of layers) {
    const what = syncReadingRouter(l.router as tf.layers.Layer);
    if (what) found.set(what, [...(found.get(what) ?? []), l.name]);
  }
  for (const [what, names] of found) {
    return `${what} (in ${names.join(', ')}) cannot run on webgpu yet: its solver reads values ` +
      'back synchronously, which tfjs-backend-webgpu cannot do here. Pick wasm or webgl, or a model with another router.';
  }
  return undefined;
}
