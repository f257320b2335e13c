/**
 * The parts of a {@link SparseOTRouter} as small serializable config objects, in the
 * `{className, config}` form of tfjs initializers: the solver, the gradient mode and the
 * assignment direction. Each union admits only combinations that make sense (a learning rate only
 * for Adam, a rebalancing step only for support dispatch, experts per token only when tokens
 * choose), and each has a string shorthand (`'adam'`, `'implicit'`, `'tokens-choose-experts'`).
 * `resolve*` turn a user's value into the checked, complete form that `getConfig()` writes.
 */
import {assertOneOf, assertPositiveInt, ConfigError, InvalidArgumentError} from '../core/errors';
import {checkOptions} from '../core/options';
import type {ImplicitSolveSpace} from '../ot/support-graph';
import type {Formulation} from '../ot/types';

const CTX = 'SparseOTRouter';

/** Settings every solver takes. */
export interface OTSolverSettings {
  /** `'semidual'` (default) or `'dual'`. */
  formulation?: Formulation;
  /** Iteration budget. Default: the solver's own (20 for Adam, 30 for Newton, ...). */
  maxIterations?: number;
}

/**
 * The OT solver (see `ot/solve.ts`): `Auto` (the OT core's choice: alternating below k = m,
 * Newton at k >= m), `Alternating`, `Newton`, or `Adam` (the released router's, with its
 * learning rate).
 *
 * @example
 * ```ts
 * const solver: OTSolverConfig = {className: 'Adam', config: {learningRate: 1e-2, maxIterations: 20}};
 * ```
 */
export type OTSolverConfig =
  | {className: 'Auto' | 'Alternating' | 'Newton'; config?: OTSolverSettings}
  | {className: 'Adam'; config?: OTSolverSettings & {learningRate?: number}};

/**
 * How gradients reach the router logits, and which combine weights go with it:
 * - `SoftmaxCombine` (the reference): the plan only selects tokens; combine weights are the
 *   softmax gates of the dispatched pairs; gradients reach the router through the softmax only.
 * - `ImplicitDifferentiation`: combine weights are the plan's values (a token's weights sum to its
 *   row mass, about 1); gradients flow through the plan by implicit differentiation on its
 *   support, a conjugate-gradient solve over `space` (default `'experts'`).
 * - `Unrolled`: the same combine weights; autodiff through `iterations` (default 3) line-searched
 *   Newton iterations started from the solver's potentials (semi-dual only).
 *
 * @example
 * ```ts
 * const gradient: OTGradientConfig = {className: 'ImplicitDifferentiation', config: {space: 'tokens'}};
 * ```
 */
export type OTGradientConfig =
  | {className: 'SoftmaxCombine'; config?: Record<string, never>}
  | {className: 'ImplicitDifferentiation'; config?: {space?: ImplicitSolveSpace}}
  | {className: 'Unrolled'; config?: {iterations?: number}};

/**
 * Who chooses, and how a plan becomes slots:
 * - `ExpertsChooseTokens` (column-sparse plan, at most `capacity` tokens per expert), with
 *   `dispatch: 'support'` (each expert takes the tokens on its plan column's support; with
 *   `rebalance` (default true) the assignment then uses the capacity it has, see
 *   `rebalance.ts`) or `dispatch: 'top-capacity'` (exactly `capacity` tokens: the top of the plan
 *   column padded with zero-plan tokens, lowest index first, as the released router).
 * - `TokensChooseExperts` (row-sparse plan, at most `expertsPerToken` experts per token),
 *   followed by batch-prioritized capacity.
 *
 * @example
 * ```ts
 * const assignment: OTAssignmentConfig = {className: 'TokensChooseExperts', config: {expertsPerToken: 2}};
 * ```
 */
export type OTAssignmentConfig =
  | {className: 'ExpertsChooseTokens'; config?: {dispatch?: 'support'; rebalance?: boolean} | {dispatch: 'top-capacity'}}
  | {className: 'TokensChooseExperts'; config?: {expertsPerToken?: number}};

/** Solver names accepted as shorthand for `{className}`. */
export type OTSolverName = 'auto' | 'alternating' | 'newton' | 'adam';
/** Gradient modes accepted as shorthand for `{className}`. */
export type OTGradientMode = 'softmax' | 'implicit' | 'unrolled';
/** Directions accepted as shorthand for `{className}`. */
export type OTRoutingDirection = 'experts-choose-tokens' | 'tokens-choose-experts';

/** A solver: its config object or its name. */
export type OTSolverLike = OTSolverConfig | OTSolverName;
/** A gradient mode: its config object or its name. */
export type OTGradientLike = OTGradientConfig | OTGradientMode;
/** An assignment: its config object or its direction's name. */
export type OTAssignmentLike = OTAssignmentConfig | OTRoutingDirection;

/** A resolved solver: every field present. */
export interface ResolvedSolver {
  className: 'Auto' | 'Alternating' | 'Newton' | 'Adam';
  config: {formulation: Formulation; maxIterations: number | null; learningRate: number | null};
}
/** A resolved gradient mode. */
export interface ResolvedGradient {
  className: 'SoftmaxCombine' | 'ImplicitDifferentiation' | 'Unrolled';
  config: {space?: ImplicitSolveSpace; iterations?: number};
}
/** A resolved assignment. */
export interface ResolvedAssignment {
  className: 'ExpertsChooseTokens' | 'TokensChooseExperts';
  config: {dispatch?: 'support' | 'top-capacity'; rebalance?: boolean; expertsPerToken?: number};
}

const SOLVERS: Record<OTSolverName, ResolvedSolver['className']> = {auto: 'Auto', alternating: 'Alternating', newton: 'Newton', adam: 'Adam'};
const GRADIENTS: Record<OTGradientMode, ResolvedGradient['className']> = {softmax: 'SoftmaxCombine', implicit: 'ImplicitDifferentiation', unrolled: 'Unrolled'};
const DIRECTIONS: Record<OTRoutingDirection, ResolvedAssignment['className']> = {
  'experts-choose-tokens': 'ExpertsChooseTokens', 'tokens-choose-experts': 'TokensChooseExperts',
};

/** `{className, config}` from a shorthand name or an object; checks the object's keys. */
function split(value: unknown, names: Record<string, string>, argument: string): {className: string; config: Record<string, unknown>} {
  const classes = Object.values(names);
  if (typeof value === 'string') {
    const className = names[value] ?? (classes.includes(value) ? value : undefined);
    if (!className) throw new InvalidArgumentError(argument, `one of ${Object.keys(names).map((n) => `'${n}'`).join(', ')}`, value, CTX);
    return {className, config: {}};
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(argument, 'a name or {className, config}', value, CTX);
  }
  checkOptions(value, ['className', 'config'], `${CTX}.${argument}`);
  const {className, config} = value as {className?: unknown; config?: unknown};
  const resolved = assertOneOf(`${argument}.className`, className, classes, CTX);
  if (config != null && (typeof config !== 'object' || Array.isArray(config))) throw new ConfigError(`${argument}.config`, 'an object', config, CTX);
  return {className: resolved, config: {...(config as Record<string, unknown> | undefined)}};
}

/** Checks a solver and fills its defaults (`maxIterations: null` = the solver's own). */
export function resolveSolver(value: OTSolverLike): ResolvedSolver {
  const {className, config} = split(value, SOLVERS, 'solver');
  const adam = className === 'Adam';
  checkOptions(config, adam ? ['formulation', 'maxIterations', 'learningRate'] : ['formulation', 'maxIterations'], `${CTX}.solver (${className})`);
  const maxIterations = config.maxIterations == null ? null : assertPositiveInt('solver.maxIterations', config.maxIterations, CTX);
  const learningRate = adam ? positive('solver.learningRate', config.learningRate ?? 1e-2) : null;
  return {
    className: className as ResolvedSolver['className'],
    config: {formulation: assertOneOf('solver.formulation', config.formulation ?? 'semidual', ['semidual', 'dual'] as const, CTX), maxIterations, learningRate},
  };
}

/** Checks a gradient mode and fills its defaults. */
export function resolveGradient(value: OTGradientLike): ResolvedGradient {
  const {className, config} = split(value, GRADIENTS, 'gradient');
  if (className === 'ImplicitDifferentiation') {
    checkOptions(config, ['space'], `${CTX}.gradient (${className})`);
    return {className, config: {space: assertOneOf('gradient.space', config.space ?? 'experts', ['experts', 'tokens'] as const, CTX)}};
  }
  if (className === 'Unrolled') {
    checkOptions(config, ['iterations'], `${CTX}.gradient (${className})`);
    return {className, config: {iterations: assertPositiveInt('gradient.iterations', config.iterations ?? 3, CTX)}};
  }
  checkOptions(config, [], `${CTX}.gradient (${className})`);
  return {className: 'SoftmaxCombine', config: {}};
}

/** Checks an assignment and fills its defaults (support dispatch with rebalancing). */
export function resolveAssignment(value: OTAssignmentLike, numExperts: number): ResolvedAssignment {
  const {className, config} = split(value, DIRECTIONS, 'assignment');
  if (className === 'TokensChooseExperts') {
    checkOptions(config, ['expertsPerToken'], `${CTX}.assignment (${className})`);
    const k = assertPositiveInt('assignment.expertsPerToken', config.expertsPerToken ?? 1, CTX);
    if (k > numExperts) throw new InvalidArgumentError('expertsPerToken', `an integer in [1, numExperts = ${numExperts}]`, k, CTX);
    return {className, config: {expertsPerToken: k}};
  }
  const dispatch = assertOneOf('assignment.dispatch', config.dispatch ?? 'support', ['support', 'top-capacity'] as const, CTX);
  if (dispatch === 'top-capacity') {
    checkOptions(config, ['dispatch'], `${CTX}.assignment (${className}, dispatch 'top-capacity' takes no rebalancing)`);
    return {className: 'ExpertsChooseTokens', config: {dispatch}};
  }
  checkOptions(config, ['dispatch', 'rebalance'], `${CTX}.assignment (${className})`);
  const rebalance = config.rebalance ?? true;
  if (typeof rebalance !== 'boolean') throw new InvalidArgumentError('assignment.rebalance', 'a boolean', rebalance, CTX);
  return {className: 'ExpertsChooseTokens', config: {dispatch, rebalance}};
}

function positive(argument: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new InvalidArgumentError(argument, 'a finite number > 0', value, CTX);
  return value;
}

/**
 * The flat arguments of the router before it became a composition (commit 9e28d44 and earlier).
 * Saved models carry them; they are read as aliases of the config objects.
 */
export interface LegacySparseOTArgs {
  /** @deprecated `SparseOTRouter.paper(...)`. */
  preset?: 'paper';
  /** @deprecated `assignment` (its className). */
  direction?: OTRoutingDirection;
  /** @deprecated `assignment: {className: 'TokensChooseExperts', config: {expertsPerToken}}`. */
  expertsPerToken?: number;
  /** @deprecated `solver: {config: {formulation}}`. */
  formulation?: Formulation;
  /** @deprecated `solver: {config: {maxIterations}}`. */
  maxIterations?: number | null;
  /** @deprecated `solver: {className: 'Adam', config: {learningRate}}`. */
  learningRate?: number;
  /** @deprecated `assignment: {className: 'ExpertsChooseTokens', config: {dispatch}}`. */
  dispatch?: 'support' | 'top-capacity';
  /** @deprecated `gradient: {className: 'ImplicitDifferentiation', config: {space}}`. */
  implicitSpace?: ImplicitSolveSpace;
  /** @deprecated `gradient: {className: 'Unrolled', config: {iterations}}`. */
  unrolledIterations?: number;
}

/** The names of {@link LegacySparseOTArgs}. */
export const LEGACY_ARG_NAMES = [
  'preset', 'direction', 'expertsPerToken', 'formulation', 'maxIterations', 'learningRate', 'dispatch', 'implicitSpace', 'unrolledIterations',
] as const;

/** The three parts of a router, as given (before {@link resolveSolver} and friends). */
export interface OTRouterParts {
  solver?: OTSolverLike;
  gradient?: OTGradientLike;
  assignment?: OTAssignmentLike;
}

/**
 * Reads the flat arguments of the old format as config objects, over `base` (the paper's parts
 * for `preset: 'paper'`, else none). `solver` and `gradient` may be given as names beside them
 * (as the old format did). The old routers never rebalanced, so an assignment given through
 * `direction` or `dispatch` keeps `rebalance: false`: a model saved by the old code predicts as
 * it did.
 *
 * @throws {ConfigError} when a flat argument is mixed with the config object it stands for
 */
export function readLegacy(args: LegacySparseOTArgs & OTRouterParts, base: OTRouterParts = {}): OTRouterParts {
  const has = (k: keyof LegacySparseOTArgs): boolean => args[k] !== undefined;
  const mixed = (flat: string, object: string): never => {
    throw new ConfigError(flat, `absent when ${object} is given as {className, config} (it is the old flat form of ${object})`, (args as Record<string, unknown>)[flat], CTX);
  };
  const first = (keys: string[]): string => keys.find((k) => has(k as keyof LegacySparseOTArgs)) as string;
  let solver = args.solver ?? base.solver;
  const solverFlags = ['formulation', 'maxIterations', 'learningRate'];
  if (first(solverFlags)) {
    if (typeof args.solver === 'object') mixed(first(solverFlags), 'solver');
    const from = split(solver ?? 'auto', SOLVERS, 'solver');
    const inherited = typeof args.solver === 'string' ? {} : from.config; // a named solver starts from its defaults
    const config: Record<string, unknown> = {...inherited};
    if (args.formulation !== undefined) config.formulation = args.formulation;
    if (args.maxIterations != null) config.maxIterations = args.maxIterations;
    // The old format wrote a learning rate for every solver; only Adam reads it.
    if (from.className === 'Adam' && args.learningRate !== undefined) config.learningRate = args.learningRate;
    solver = {className: from.className, config} as OTSolverConfig;
  }
  let gradient = args.gradient ?? base.gradient;
  if (has('implicitSpace') || has('unrolledIterations')) {
    if (typeof args.gradient === 'object') mixed(first(['implicitSpace', 'unrolledIterations']), 'gradient');
    const className = split(gradient ?? 'softmax', GRADIENTS, 'gradient').className;
    // The old format wrote both settings whatever the mode; each mode reads its own.
    if (className === 'ImplicitDifferentiation') gradient = {className, config: args.implicitSpace === undefined ? {} : {space: args.implicitSpace}};
    else if (className === 'Unrolled') gradient = {className, config: args.unrolledIterations === undefined ? {} : {iterations: args.unrolledIterations}};
  }
  let assignment = args.assignment ?? base.assignment;
  const assignmentFlags = ['direction', 'expertsPerToken', 'dispatch'];
  if (first(assignmentFlags)) {
    if (args.assignment !== undefined) mixed(first(assignmentFlags), 'assignment');
    const direction = args.direction ?? 'experts-choose-tokens';
    if (split(direction, DIRECTIONS, 'direction').className === 'TokensChooseExperts') {
      assignment = {className: 'TokensChooseExperts', config: args.expertsPerToken === undefined ? {} : {expertsPerToken: args.expertsPerToken}};
    } else {
      // The old format wrote expertsPerToken 1 beside experts-choose-tokens; any other value there is a mistake.
      if (args.expertsPerToken !== undefined && args.expertsPerToken !== 1) {
        throw new ConfigError('expertsPerToken', "1 (or absent) unless direction is 'tokens-choose-experts'", args.expertsPerToken, CTX);
      }
      const baseDispatch = typeof base.assignment === 'object' ? (base.assignment.config as {dispatch?: 'support' | 'top-capacity'} | undefined)?.dispatch : undefined;
      const dispatch = args.dispatch ?? baseDispatch ?? 'support';
      assignment = {className: 'ExpertsChooseTokens', config: dispatch === 'top-capacity' ? {dispatch} : {dispatch, rebalance: false}};
    }
  }
  return {solver, gradient, assignment};
}
