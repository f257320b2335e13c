/**
 * The k-sparse optimal-transport router (Liu, Puigcerver, Blondel, "Sparsity-Constrained Optimal
 * Transport", ICLR 2023): routing as a transport problem between tokens (mass 1 each) and experts
 * (mass `groupSize / E` each), with at most `capacity` tokens per expert. Load is balanced by
 * construction: no expert ever holds more than its capacity.
 *
 * Note: OT routing looks at the whole group at once, so it is not causal: a token's expert
 * depends on the other tokens of its group.
 */
import * as tf from '@tensorflow/tfjs';
import {assignTokenChoice, computeCapacity} from './capacity';
import {gatherTokenExpertValues} from '../moe/dispatch';
import {assertOneOf, assertPositiveInt, assertPositiveNumber, ConfigError, InvalidArgumentError} from '../core/errors';
import {EMPTY_SLOT, type RoutingMetrics} from './routing-result';
import {sparseOTPlanImplicit} from '../ot/gradients/legacy';
import type {ImplicitSolveSpace} from '../ot/support-graph';
import {noGrad, stopGradient} from '../core/stop-gradient';
import {solveSparseOT} from '../ot/solve';
import type {Formulation, SolverName, SparseOTOptions, SparseOTResult} from '../ot/types';
import {unrolledSparseOT} from '../ot/gradients/unrolled';
import {Router, type RouterArgs, type RoutingParts} from './router';
import {registerRouter} from './registry';

/**
 * How gradients reach the router logits, and which combine weights go with it.
 *
 * @example
 * ```ts
 * sparseOTRouter({numExperts: 8, gradient: 'implicit'});
 * ```
 */
export type OTGradientMode = 'softmax' | 'implicit' | 'unrolled';

/**
 * Who chooses: experts choose tokens (column-sparse plan) or tokens choose experts (row-sparse).
 *
 * @example
 * ```ts
 * sparseOTRouter({numExperts: 8, direction: 'tokens-choose-experts', expertsPerToken: 2});
 * ```
 */
export type OTRoutingDirection = 'experts-choose-tokens' | 'tokens-choose-experts';

/**
 * Cost of sending a token to an expert: `-softmax(logits)` (the reference) or `-logits`.
 *
 * @example
 * ```ts
 * sparseOTRouter({numExperts: 8, cost: 'negative-logits'});
 * ```
 */
export type OTCost = 'negative-softmax' | 'negative-logits';

/**
 * Which tokens an expert takes (experts choose tokens): `'support'` takes the tokens on its plan
 * column's support (at most capacity); `'top-capacity'` takes exactly `capacity` tokens, the top
 * of its plan column padded with zero-plan tokens, lowest index first (the released router).
 *
 * @example
 * ```ts
 * sparseOTRouter({numExperts: 8, dispatch: 'top-capacity'});
 * ```
 */
export type OTDispatchMode = 'support' | 'top-capacity';

/**
 * Arguments of {@link SparseOTRouter}.
 *
 * @example
 * ```ts
 * const args: SparseOTRouterArgs = {numExperts: 8, gradient: 'implicit', gamma: 2, warmStart: true};
 * ```
 */
export interface SparseOTRouterArgs extends RouterArgs {
  /**
   * `'paper'` reproduces the released V-MoE router: semi-dual, gamma 1, Adam with learning rate
   * 1e-2 for 20 iterations, capacity rounded up to a multiple of 4, `dispatch: 'top-capacity'`,
   * softmax combine weights. Arguments given explicitly override the preset's values.
   */
  preset?: 'paper';
  /** Default `'experts-choose-tokens'`. */
  direction?: OTRoutingDirection;
  /** Tokens choose experts only: experts per token (the row cardinality k). Default 1. */
  expertsPerToken?: number;
  /**
   * Default `'negative-softmax'` (the reference). With `gradient: 'implicit'`, `'negative-logits'`
   * trained markedly better in our comparison (bench/RESULTS-router.md): the plan's gradient then
   * reaches the logits without passing through the softmax Jacobian, which is small while the
   * gates are near uniform.
   */
  cost?: OTCost;
  /**
   * - `'softmax'` (default, the reference): the plan only selects tokens; combine weights are the
   *   softmax gates of the dispatched pairs; gradients reach the router through the softmax only.
   * - `'implicit'`: combine weights are the plan's values (a token's weights sum to its row mass,
   *   about 1); gradients flow through the plan by implicit differentiation on its support.
   * - `'unrolled'`: the same combine weights; autodiff through `unrolledIterations` line-searched
   *   Newton iterations started from the solver's potentials.
   *
   * When the plan is integral (capacity factor 1 with `groupSize / E` an integer, small gamma)
   * it is a 0/1 assignment, locally constant in the cost: its gradient is exactly zero and
   * `'implicit'` / `'unrolled'` teach the router nothing. They carry signal where the plan is
   * fractional: capacity factor above 1, or a larger `gamma` relative to the cost's scale.
   */
  gradient?: OTGradientMode;
  /** Regularization strength gamma > 0. Default 1. */
  gamma?: number;
  /** Default `'semidual'`. */
  formulation?: Formulation;
  /**
   * Default `'auto'`, the OT core's default (`'alternating'` below k = m, `'newton'` at k >= m);
   * `'adam'` with the paper preset.
   */
  solver?: SolverName;
  /** Solver iteration budget. Default: the solver's (20 for Adam, 30 for Newton). */
  maxIterations?: number;
  /** Adam learning rate. Default 1e-2. */
  learningRate?: number;
  /** Round the capacity up to a multiple of this. Default 1 (4 with the paper preset). */
  capacityMultipleOf?: number;
  /** Experts choose tokens only. Default `'support'` (`'top-capacity'` with the paper preset). */
  dispatch?: OTDispatchMode;
  /**
   * Warm start, in training only: the per-expert potentials (beta, averaged over groups) of one
   * call start the next call's solve. They are kept in a non-trainable weight
   * (`router/warm_start_beta`), so they are saved with the model. Inference ignores them: its
   * result depends on the group alone. Default false.
   */
  warmStart?: boolean;
  /** `'implicit'` only: the unknowns of the conjugate-gradient solve. Default `'experts'`. */
  implicitSpace?: ImplicitSolveSpace;
  /** `'unrolled'` only: differentiated Newton iterations. Default 3. */
  unrolledIterations?: number;
  /**
   * Whether the solver may read values back synchronously (see `SparseOTOptions.hostReads`).
   * Default: decided per call by the backend, `tf.getBackend() !== 'webgpu'`. With `false` a
   * forward pass makes no synchronous read: the solver runs its whole iteration budget
   * (`solverConverged` is 0) and the metrics stay tensors.
   */
  hostReads?: boolean;
}

const CLASS = 'SparseOTRouter';
/** Cost given to padding tokens: far above every real cost, so no expert's top-k reaches them. */
const MASKED_COST = 1e4;

interface ResolvedConfig {
  preset: 'paper' | null;
  direction: OTRoutingDirection;
  expertsPerToken: number;
  cost: OTCost;
  gradient: OTGradientMode;
  gamma: number;
  formulation: Formulation;
  solver: SolverName;
  maxIterations: number | null;
  learningRate: number;
  capacityMultipleOf: number;
  dispatch: OTDispatchMode;
  warmStart: boolean;
  implicitSpace: ImplicitSolveSpace;
  unrolledIterations: number;
  hostReads: boolean | null;
}

function resolve(args: SparseOTRouterArgs, numExperts: number): ResolvedConfig {
  const preset = args.preset == null ? null : assertOneOf('preset', args.preset, ['paper'] as const, CLASS);
  const paper = preset === 'paper';
  const direction = assertOneOf('direction', args.direction ?? 'experts-choose-tokens',
    ['experts-choose-tokens', 'tokens-choose-experts'] as const, CLASS);
  const expertsPerToken = assertPositiveInt('expertsPerToken', args.expertsPerToken ?? 1, CLASS);
  if (expertsPerToken > numExperts) {
    throw new InvalidArgumentError('expertsPerToken', `an integer in [1, numExperts = ${numExperts}]`, expertsPerToken, CLASS);
  }
  const maxIterations = args.maxIterations ?? (paper ? 20 : null);
  if (maxIterations !== null) assertPositiveInt('maxIterations', maxIterations, CLASS);
  return {
    preset,
    direction,
    expertsPerToken,
    cost: assertOneOf('cost', args.cost ?? 'negative-softmax', ['negative-softmax', 'negative-logits'] as const, CLASS),
    gradient: assertOneOf('gradient', args.gradient ?? 'softmax', ['softmax', 'implicit', 'unrolled'] as const, CLASS),
    gamma: assertPositiveNumber('gamma', args.gamma ?? 1, CLASS),
    formulation: assertOneOf('formulation', args.formulation ?? 'semidual', ['semidual', 'dual'] as const, CLASS),
    solver: assertOneOf('solver', args.solver ?? (paper ? 'adam' : 'auto'), ['auto', 'alternating', 'newton', 'adam'] as const, CLASS),
    maxIterations,
    learningRate: assertPositiveNumber('learningRate', args.learningRate ?? 1e-2, CLASS),
    capacityMultipleOf: assertPositiveInt('capacityMultipleOf', args.capacityMultipleOf ?? (paper ? 4 : 1), CLASS),
    dispatch: assertOneOf('dispatch', args.dispatch ?? (paper ? 'top-capacity' : 'support'), ['support', 'top-capacity'] as const, CLASS),
    warmStart: args.warmStart ?? false,
    implicitSpace: assertOneOf('implicitSpace', args.implicitSpace ?? 'experts', ['experts', 'tokens'] as const, CLASS),
    unrolledIterations: assertPositiveInt('unrolledIterations', args.unrolledIterations ?? 3, CLASS),
    hostReads: args.hostReads == null ? null : assertBoolean('hostReads', args.hostReads),
  };
}

function assertBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InvalidArgumentError(name, 'a boolean', value, CLASS);
  return value;
}

/**
 * Runs the solver untaped (its iterations never enter a gradient tape) and returns the plan as a
 * constant of the cost. `onResult` receives the result; it must dispose alpha, beta and value.
 */
function solveAsConstant(cost: tf.Tensor, options: SparseOTOptions, onResult: (r: SparseOTResult) => void): tf.Tensor {
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const c = args[0] as tf.Tensor;
    const result = solveSparseOT(c, options);
    for (const t of [result.alpha, result.beta, result.value]) if (t) tf.keep(t);
    onResult(result);
    return {value: result.plan, gradFunc: (dy: tf.Tensor) => [tf.zerosLike(dy)]};
  });
  return f(cost);
}

/**
 * The k-sparse optimal-transport router. Experts choose tokens by default: the plan of the
 * transport problem `cost <float32>[groups, groupSize, E]` with column marginals `groupSize / E`
 * and at most `capacity` tokens per column decides which tokens each expert takes
 * (`<int32>[groups, E, capacity]`, -1 in empty slots). See {@link SparseOTRouterArgs} for the
 * cost, the gradient modes and their combine weights, warm starts and the `'paper'` preset.
 *
 * Capacity: `min(groupSize, ceil(groupSize * capacityFactor / E))`, rounded up to a multiple of
 * `capacityMultipleOf`. Padding tokens (the route mask) get no mass and are never dispatched.
 * Auxiliary loss: none (0). Metrics: the standard ones plus `meanRowViolation` (mean over tokens
 * of |row mass - 1|), `solverIterations`, `solverConverged` and `feasible` (whether any k-sparse
 * plan can meet the marginals). The suboptimality of a solve needs the exact optimum, which is not
 * known at routing time: measure it offline against float64 fixtures (see `bench/router.ts`).
 *
 * @example
 * ```ts
 * const router = sparseOTRouter({numExperts: 8, gradient: 'implicit', gamma: 1});
 * const tokens = tf.randomNormal([4, 64, 32]) as tf.Tensor3D; // <float32>[groups, groupSize, d]
 * const capacity = router.computeCapacity(64, 1.25);           // ceil(64 * 1.25 / 8) = 10
 * const r = router.route(tokens, {training: true, capacity});
 * r.expertIndices;  // <int32>[4, 8, 10]
 * r.combineWeights; // <float32>[4, 8, 10], the plan's values
 * r.dispose();
 * ```
 */
export class SparseOTRouter extends Router {
  static className = CLASS;
  /** The resolved configuration (preset applied). */
  readonly preset: 'paper' | null;
  readonly direction: OTRoutingDirection;
  readonly otExpertsPerToken: number;
  readonly cost: OTCost;
  readonly gradient: OTGradientMode;
  readonly gamma: number;
  readonly formulation: Formulation;
  readonly solver: SolverName;
  readonly maxIterations: number | null;
  readonly learningRate: number;
  readonly capacityMultipleOf: number;
  readonly dispatchMode: OTDispatchMode;
  readonly warmStart: boolean;
  readonly implicitSpace: ImplicitSolveSpace;
  readonly unrolledIterations: number;
  /** Host reads allowed in the solver; null: the backend decides per call. */
  readonly hostReads: boolean | null;
  /** `<float32>[E]` per-expert potentials carried across training calls (warm start only). */
  warmStartBeta: tf.LayerVariable | null = null;

  constructor(args: SparseOTRouterArgs) {
    super(args);
    const c = resolve(args, this.numExperts);
    this.preset = c.preset;
    this.direction = c.direction;
    this.otExpertsPerToken = c.expertsPerToken;
    this.cost = c.cost;
    this.gradient = c.gradient;
    this.gamma = c.gamma;
    this.formulation = c.formulation;
    this.solver = c.solver;
    this.maxIterations = c.maxIterations;
    this.learningRate = c.learningRate;
    this.capacityMultipleOf = c.capacityMultipleOf;
    this.dispatchMode = c.dispatch;
    this.warmStart = c.warmStart;
    this.implicitSpace = c.implicitSpace;
    this.unrolledIterations = c.unrolledIterations;
    this.hostReads = c.hostReads;
    if (this.gradient === 'unrolled' && this.formulation === 'dual') {
      throw new ConfigError('formulation', "'semidual' with gradient 'unrolled' (the unrolled solver is semi-dual)", this.formulation, CLASS);
    }
  }

  override get expertsPerToken(): number {
    return this.direction === 'tokens-choose-experts' ? this.otExpertsPerToken : 1;
  }

  /**
   * `min(groupSize, ceil(groupSize * capacityFactor * expertsPerToken / E))`, rounded up to a
   * multiple of `capacityMultipleOf` (4 with the paper preset).
   */
  override computeCapacity(groupSize: number, capacityFactor: number): number {
    return computeCapacity(groupSize, capacityFactor, this.numExperts, this.expertsPerToken, this.capacityMultipleOf);
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    super.build(inputShape);
    if (this.warmStart) {
      this.warmStartBeta = this.addWeight('router/warm_start_beta', [this.numExperts], 'float32',
        tf.initializers.zeros(), undefined, false);
    }
    this.built = true;
  }

  private solveOptions(k: number, groups: number, groupSize: number, mask: tf.Tensor2D | undefined, training: boolean): SparseOTOptions {
    const rowSparse = this.direction === 'tokens-choose-experts';
    const opts: SparseOTOptions = {
      k,
      gamma: this.gamma,
      formulation: this.formulation,
      solver: this.solver,
      learningRate: this.learningRate,
      sparsity: rowSparse ? 'row' : 'column',
    };
    if (this.maxIterations !== null) opts.maxIterations = this.maxIterations;
    if (this.hostReads !== null) opts.hostReads = this.hostReads;
    if (mask) {
      // Padding sends and receives nothing: a_i = mask_i, b_j = (real tokens) / E.
      opts.a = mask;
      opts.b = tf.tile(tf.div(tf.sum(mask, 1, true), this.numExperts), [1, this.numExperts]);
    } else {
      opts.a = 1;
      opts.b = groupSize / this.numExperts;
    }
    if (training && this.warmStart && this.warmStartBeta && !rowSparse) {
      opts.init = {beta: tf.tile(tf.reshape(this.warmStartBeta.read(), [1, this.numExperts]), [groups, 1])};
    }
    return opts;
  }

  protected computeRouting(logits: tf.Tensor3D, mask: tf.Tensor2D | undefined, training: boolean, capacity: number): RoutingParts {
    const [groups, groupSize, experts] = logits.shape;
    const gates = tf.softmax(logits) as tf.Tensor3D;
    let cost = (this.cost === 'negative-softmax' ? tf.neg(gates) : tf.neg(logits)) as tf.Tensor3D;
    if (mask) cost = tf.add(tf.mul(cost, tf.expandDims(mask, 2)), tf.mul(tf.sub(1, tf.expandDims(mask, 2)), MASKED_COST)) as tf.Tensor3D;
    const rowSparse = this.direction === 'tokens-choose-experts';
    const k = rowSparse ? this.otExpertsPerToken : capacity;
    const options = this.solveOptions(k, groups, groupSize, mask, training);

    // The plan, differentiable or not according to the gradient mode.
    const holder: {result?: SparseOTResult} = {};
    const keepResult = (r: SparseOTResult): void => {
      holder.result = r;
    };
    let plan: tf.Tensor3D;
    if (this.gradient === 'implicit') {
      plan = sparseOTPlanImplicit(cost, {...options, implicit: {space: this.implicitSpace}}, solveSparseOT, keepResult) as tf.Tensor3D;
    } else {
      plan = solveAsConstant(cost, options, keepResult) as tf.Tensor3D;
      if (this.gradient === 'unrolled') {
        const alpha = holder.result?.alpha;
        const init = rowSparse || !alpha ? undefined : (stopGradient(alpha));
        const un = unrolledSparseOT(cost, {
          k, gamma: this.gamma, a: options.a as number | tf.Tensor, b: options.b as number | tf.Tensor,
          sparsity: rowSparse ? 'row' : 'column', iterations: this.unrolledIterations, init,
        });
        plan = un.plan as tf.Tensor3D;
      }
    }
    const solved = holder.result;
    if (mask) plan = tf.mul(plan, tf.expandDims(mask, 2)) as tf.Tensor3D;

    // Slot assignment: integer indices, computed untaped (topk and comparisons have no gradient).
    let demand: tf.Tensor2D | undefined;
    const realMask = mask ?? (tf.ones([groups, groupSize]) as tf.Tensor2D);
    const expertIndices = noGrad((p: tf.Tensor, m: tf.Tensor) => {
      if (!rowSparse) {
        // Each expert takes the top `capacity` entries of its plan column (topk breaks ties by
        // the lowest index, so zero-plan padding goes lowest index first).
        const top = tf.topk(tf.transpose(p, [0, 2, 1]), capacity, true).indices as tf.Tensor3D; // [G, E, cap]
        let keep = gatherTokenExpertValues(tf.tile(tf.expandDims(m, 2), [1, 1, experts]) as tf.Tensor3D, top);
        if (this.dispatchMode === 'support') keep = tf.mul(keep, tf.cast(tf.greater(gatherTokenExpertValues(p as tf.Tensor3D, top), 0), 'float32')) as tf.Tensor3D;
        return tf.where(tf.greater(keep, 0), top, tf.fill(top.shape, EMPTY_SLOT, 'int32'));
      }
      // Tokens choose their top experts of the row-sparse plan; capacity by batch-prioritized
      // routing (tokens with the largest plan entry first).
      const choices = tf.topk(p, this.otExpertsPerToken, true).indices as tf.Tensor3D;
      const assigned = assignTokenChoice(choices, experts, capacity, mask, tf.max(p, 2) as tf.Tensor2D);
      demand = tf.keep(assigned.demand);
      return assigned.expertIndices;
    })(plan, realMask) as tf.Tensor3D;
    const weightsSource = this.gradient === 'softmax' ? gates : plan;
    const combineWeights = tf.mul(gatherTokenExpertValues(weightsSource, expertIndices),
      tf.cast(tf.greaterEqual(expertIndices, 0), 'float32')) as tf.Tensor3D;

    const extra: RoutingMetrics = {};
    const constPlan = stopGradient(plan);
    const rowMass = tf.sum(constPlan, 2); // [G, S]
    const target = mask ?? tf.onesLike(rowMass);
    const realTokens = tf.maximum(tf.sum(target), 1);
    extra.meanRowViolation = tf.div(tf.sum(tf.abs(tf.sub(rowMass, target))), realTokens) as tf.Scalar;
    if (solved) {
      extra.solverIterations = tf.scalar(solved.iterations);
      extra.solverConverged = tf.scalar(solved.converged ? 1 : 0);
      extra.feasible = tf.scalar(solved.feasible ? 1 : 0);
      if (training && this.warmStart && this.warmStartBeta && solved.beta && !rowSparse) {
        this.warmStartBeta.write(tf.mean(solved.beta.reshape([groups, experts]), 0));
      }
      tf.dispose([solved.alpha, solved.beta, solved.value].filter((t): t is tf.Tensor => t != null));
    }
    const parts = this.finishRouting(expertIndices, combineWeights, tf.scalar(0), gates, mask, demand, extra);
    if (demand) (demand as tf.Tensor).dispose();
    return parts;
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      ...super.getConfig(),
      direction: this.direction,
      expertsPerToken: this.otExpertsPerToken,
      cost: this.cost,
      gradient: this.gradient,
      gamma: this.gamma,
      formulation: this.formulation,
      solver: this.solver,
      maxIterations: this.maxIterations,
      learningRate: this.learningRate,
      capacityMultipleOf: this.capacityMultipleOf,
      dispatch: this.dispatchMode,
      warmStart: this.warmStart,
      implicitSpace: this.implicitSpace,
      unrolledIterations: this.unrolledIterations,
    };
    if (this.preset) config.preset = this.preset;
    if (this.hostReads !== null) config.hostReads = this.hostReads;
    return config;
  }
}
tf.serialization.registerClass(SparseOTRouter);
registerRouter('sparse-ot', SparseOTRouter);

/**
 * Creates a {@link SparseOTRouter}.
 *
 * @example
 * ```ts
 * const reference = sparseOTRouter({numExperts: 8, preset: 'paper'});
 * const differentiable = sparseOTRouter({numExperts: 8, gradient: 'implicit', gamma: 2});
 * const tokenChoice = sparseOTRouter({numExperts: 8, direction: 'tokens-choose-experts', expertsPerToken: 2});
 * ```
 */
export function sparseOTRouter(args: SparseOTRouterArgs): SparseOTRouter {
  return new SparseOTRouter(args);
}
