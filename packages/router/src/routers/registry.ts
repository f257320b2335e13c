/**
 * Routers by name. The routers are tfjs serializable classes (`tf.serialization.registerClass`),
 * so a router is rebuilt from `{className, config}` through tf.serialization like any layer; this
 * module only adds short names for them (`'topk'` -> `'TopKRouter'`) and the lookups the MoE
 * layer uses for `router: 'topk'` and `router: {name: 'topk', k: 2}`.
 */
import * as tf from '@tensorflow/tfjs';
import {ConfigError} from '../core/errors';
import {Router, type RouterArgs} from './router';

/** The short names of the built-in routers. */
export type RouterName = 'topk' | 'expert-choice' | 'sinkhorn' | 'sparse-ot';

/** Short name -> tfjs class name of the built-in routers. */
export const ROUTER_ALIASES: Readonly<Record<RouterName, string>> = {
  'topk': 'TopKRouter',
  'expert-choice': 'ExpertChoiceRouter',
  'sinkhorn': 'SinkhornRouter',
  'sparse-ot': 'SparseOTRouter',
};

/** Short names added by other packages (e.g. `'vmoe-topk'`), see {@link registerRouter}. */
const extraAliases = new Map<string, string>();

/**
 * Adds a short name for a router class. The class itself is found through tf.serialization, so
 * it must be registered there too (`tf.serialization.registerClass(MyRouter)`); this only maps
 * the name to its `className`.
 *
 * @example
 * ```ts
 * tf.serialization.registerClass(MyRouter);
 * registerRouter('my-router', MyRouter);
 * moe({numExperts: 8, hiddenDim: 64, router: 'my-router'});
 * ```
 */
export function registerRouter(name: string, cls: {className: string}): void {
  extraAliases.set(name, cls.className);
}

/** A router class: constructible from its args, with the tfjs `className`. */
export interface RouterClass {
  new (args: never): Router;
  className: string;
}

/**
 * A router given by short name, by name with arguments, in serialized form
 * (`{className, config}`, the form `getConfig()` writes), or as an instance. A name may also be
 * the `className` of a router class registered with `tf.serialization.registerClass`.
 */
export type RouterSpec =
  | RouterName
  | (string & {})
  | ({name: RouterName | (string & {})} & Partial<RouterArgs> & Record<string, unknown>)
  | {className: string; config: tf.serialization.ConfigDict}
  | Router;

/** The short names: the built-in `['topk', 'expert-choice', 'sinkhorn', 'sparse-ot']`, then any added with {@link registerRouter}. */
export function routerNames(): string[] {
  return [...Object.keys(ROUTER_ALIASES), ...extraAliases.keys()];
}

/**
 * The router class for a short name or a registered router `className`.
 *
 * @throws {ConfigError} naming `router` for an unknown name or a class that is not a router
 *
 * @example
 * ```ts
 * getRouterClass('topk') === TopKRouter; // true
 * getRouterClass('TopKRouter') === TopKRouter; // true
 * ```
 */
export function getRouterClass(name: string): RouterClass {
  const className = (ROUTER_ALIASES as Record<string, string>)[name] ?? extraAliases.get(name) ?? name;
  const entry = typeof className === 'string' ? tf.serialization.SerializationMap.getMap().classNameMap[className] : undefined;
  const cls = entry?.[0] as unknown as RouterClass | undefined;
  if (!cls || !(cls.prototype instanceof Router)) {
    throw new ConfigError('router', `one of ${routerNames().map((n) => `'${n}'`).join(', ')}`, name);
  }
  return cls;
}

/** Rebuilds a router through tf.serialization: the class's `fromConfig`, as tfjs deserializes layers. */
function deserializeRouter(className: string, config: Record<string, unknown>): Router {
  const cls = getRouterClass(className);
  const [ctor, fromConfig] = tf.serialization.SerializationMap.getMap().classNameMap[cls.className];
  return fromConfig(ctor, config as tf.serialization.ConfigDict) as unknown as Router;
}

/**
 * Builds a router from a {@link RouterSpec}; `defaults` (e.g. `numExperts` from the MoE layer)
 * fill arguments the spec leaves out. A given `Router` instance is returned as is.
 *
 * @throws {ConfigError} for an unknown router name or a spec of another form
 * @throws {UnknownOptionError} for an argument the router does not know (`{name: 'topk', kk: 2}`)
 *
 * @example
 * ```ts
 * const r = createRouter({name: 'topk', k: 2}, {numExperts: 8});
 * const same = createRouter({className: 'TopKRouter', config: r.getConfig()});
 * ```
 */
export function createRouter(spec: RouterSpec, defaults: Partial<RouterArgs> = {}): Router {
  if (spec instanceof Router) return spec;
  if (typeof spec === 'string') return deserializeRouter(spec, {...defaults});
  if (spec && typeof spec === 'object' && typeof (spec as {className?: unknown}).className === 'string' && 'config' in spec) {
    const s = spec as {className: string; config: tf.serialization.ConfigDict};
    return deserializeRouter(s.className, {...defaults, ...s.config});
  }
  if (spec && typeof spec === 'object' && typeof (spec as {name?: unknown}).name === 'string') {
    const {name, ...args} = spec as {name: string} & Record<string, unknown>;
    return deserializeRouter(name, {...defaults, ...args});
  }
  throw new ConfigError('router', 'a router name, {name, ...args}, {className, config} or a Router', spec);
}
