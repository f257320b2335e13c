/**
 * Router registry: routing rules by name (`'topk'`, `'expert-choice'`, `'sinkhorn'`,
 * `'sparse-ot'`) so that the MoE layer can be configured with `router: 'topk'` or
 * `router: {name: 'topk', k: 2}`. Each router module registers itself when imported
 * (`registerRouter('topk', TopKRouter)` after the class); `routers/index.ts` imports them all.
 */
import * as tf from '@tensorflow/tfjs';
import {ConfigError} from '../core/errors';
import type {Router, RouterArgs} from './router';

/** A router class: constructible from its args, with the tfjs `className`. */
export interface RouterClass {
  new (args: never): Router;
  className: string;
}

/** A router given by name, by name with arguments, by serialized form, or as an instance. */
export type RouterSpec =
  | string
  | ({name: string} & Partial<RouterArgs> & Record<string, unknown>)
  | {className: string; config: tf.serialization.ConfigDict}
  | Router;

const byName = new Map<string, RouterClass>();

/**
 * Registers a router class under `name` (also reachable by its `className`).
 *
 * @example
 * ```ts
 * registerRouter('my-router', MyRouter);
 * moe({numExperts: 8, hiddenDim: 64, router: 'my-router'});
 * ```
 */
export function registerRouter(name: string, cls: RouterClass): void {
  byName.set(name, cls);
}

/** Names of the registered routers, e.g. `['topk', 'expert-choice', 'sinkhorn', 'sparse-ot']`. */
export function routerNames(): string[] {
  return [...byName.keys()];
}

/**
 * The router class registered as `name` (or with that `className`).
 * Unknown names throw {@link ConfigError} naming `router`.
 *
 * @example
 * ```ts
 * getRouterClass('topk') === TopKRouter; // true
 * ```
 */
export function getRouterClass(name: string): RouterClass {
  const cls = byName.get(name) ?? [...byName.values()].find((c) => c.className === name);
  if (!cls) {
    throw new ConfigError('router', `one of ${routerNames().map((n) => `'${n}'`).join(', ')}`, name);
  }
  return cls;
}

/**
 * Builds a router from a {@link RouterSpec}; `defaults` (e.g. `numExperts` from the MoE layer)
 * fill arguments the spec leaves out. A given `Router` instance is returned as is.
 *
 * @example
 * ```ts
 * const r = createRouter({name: 'topk', k: 2}, {numExperts: 8});
 * ```
 */
export function createRouter(spec: RouterSpec, defaults: Partial<RouterArgs> = {}): Router {
  if (spec instanceof tf.layers.Layer) return spec as Router;
  if (typeof spec === 'string') return new (getRouterClass(spec) as unknown as new (a: RouterArgs) => Router)({...defaults} as RouterArgs);
  if (spec && typeof spec === 'object' && typeof (spec as {className?: unknown}).className === 'string' && 'config' in spec) {
    const s = spec as {className: string; config: tf.serialization.ConfigDict};
    const cls = getRouterClass(s.className) as unknown as typeof tf.layers.Layer;
    return tf.serialization.SerializationMap.getMap().classNameMap[(cls as unknown as RouterClass).className][1](
      cls as unknown as tf.serialization.SerializableConstructor<tf.serialization.Serializable>,
      {...defaults, ...s.config} as tf.serialization.ConfigDict,
    ) as unknown as Router;
  }
  if (spec && typeof spec === 'object' && typeof (spec as {name?: unknown}).name === 'string') {
    const {name, ...args} = spec as {name: string} & Record<string, unknown>;
    return new (getRouterClass(name) as unknown as new (a: RouterArgs) => Router)({...defaults, ...args} as RouterArgs);
  }
  throw new ConfigError('router', "a router name, {name, ...args}, {className, config} or a Router", spec);
}
