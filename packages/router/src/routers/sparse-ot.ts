/**
 * The k-sparse optimal-transport router (Liu, Puigcerver, Blondel, "Sparsity-Constrained Optimal
 * Transport", ICLR 2023): routing as a transport problem between tokens (mass 1 each) and experts
 * (mass `realTokens / E` each), with at most `capacity` tokens per expert. Load is balanced by
 * construction: no expert ever holds more than its capacity.
 *
 * The router is a composition of three config objects (`sparse-ot-config.ts`): the solver, the
 * gradient mode and the assignment. Note: OT routing looks at the whole group at once, so it is
 * not causal: a token's expert depends on the other tokens of its group.
 */
import * as tf from '@tensorflow/tfjs';
import {assignTokenChoice, computeCapacity} from './capacity';
import {gatherTokenExpertValues} from '../moe/dispatch';
import {assertOneOf, assertPositiveInt, assertPositiveNumber, ConfigError} from '../core/errors';
import {EMPTY_SLOT} from './routing-result';
import {sparseOTPlanImplicit} from '../ot/gradients/legacy';
import {stopGradient, untracked} from '../core/stop-gradient';
import {solveSparseOT} from '../ot/solve';
import type {SparseOTOptions, SparseOTResult} from '../ot/types';
import {unrolledSparseOT} from '../ot/gradients/unrolled';
import {assertBoolean, Router, type RouterArgs, type RoutingDecision, type RoutingInput} from './router';
import {rebalanceAssignment} from './rebalance';
import {
  LEGACY_ARG_NAMES, readLegacy, resolveAssignment, resolveGradient, resolveSolver,
  type LegacySparseOTArgs, type OTAssignmentLike, type OTGradientLike, type OTSolverLike,
  type ResolvedAssignment, type ResolvedGradient, type ResolvedSolver,
} from './sparse-ot-config';

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
 * Arguments of {@link SparseOTRouter}. The flat arguments of the old format
 * ({@link LegacySparseOTArgs}: `direction`, `dispatch`, `learningRate`, ...) are still read, as
 * aliases of the config objects, so that saved models load.
 *
 * @example
 * ```ts
 * const args: SparseOTRouterArgs = {
 *   numExperts: 8,
 *   solver: {className: 'Newton', config: {maxIterations: 10}},
 *   gradient: 'implicit',
 *   assignment: {className: 'ExpertsChooseTokens', config: {dispatch: 'support', rebalance: true}},
 * };
 * ```
 */
export interface SparseOTRouterArgs extends RouterArgs, LegacySparseOTArgs {
  /** The OT solver. Default `'auto'` (alternating below k = m, Newton at k >= m). */
  solver?: OTSolverLike;
  /**
   * How gradients reach the logits and which combine weights go with it. Default `'softmax'`.
   * When the plan is integral (capacity factor 1 with `groupSize / E` an integer, small gamma)
   * its gradient is exactly zero and `'implicit'` / `'unrolled'` teach the router nothing; they
   * carry signal where the plan is fractional (capacity factor above 1, or a larger `gamma`).
   */
  gradient?: OTGradientLike;
  /**
   * Who chooses and how the plan becomes slots. Default: experts choose tokens, support dispatch,
   * rebalanced (no needless drops, see `rebalance.ts`).
   */
  assignment?: OTAssignmentLike;
  /**
   * Default `'negative-softmax'` (the reference). With the implicit gradient, `'negative-logits'`
   * trained markedly better in our comparison (bench/RESULTS-router.md): the plan's gradient then
   * reaches the logits without passing through the softmax Jacobian.
   */
  cost?: OTCost;
  /** Regularization strength gamma > 0. Default 1. */
  gamma?: number;
  /** Round the capacity up to a multiple of this. Default 1 (4 for {@link SparseOTRouter.paper}). */
  capacityMultipleOf?: number;
  /**
   * Warm start, in training only: the per-expert potentials (beta, averaged over groups) of one
   * call start the next call's solve. They are kept in a non-trainable weight
   * (`router/warm_start_beta`), so they are saved with the model. Inference ignores them.
   * Experts choose tokens only. Default false.
   */
  warmStart?: boolean;
  /**
   * Whether the solver may read values back synchronously (see `SparseOTOptions.hostReads`).
   * A run-time choice of the device, never saved in the config. Default: decided per call by the
   * backend, `tf.getBackend() !== 'webgpu'`.
   */
  hostReads?: boolean;
}

const CLASS = 'SparseOTRouter';
const OWN_ARG_NAMES = ['solver', 'gradient', 'assignment', 'cost', 'gamma', 'capacityMultipleOf', 'warmStart', 'hostReads', ...LEGACY_ARG_NAMES];
/** Cost given to padding tokens: far above every real cost, so no expert's top-k reaches them. */
const MASKED_COST = 1e4;

/**
 * The released V-MoE router (vmoe `sparsity_constrained_ot`): semi-dual, gamma 1, Adam with
 * learning rate 1e-2 for 20 iterations, capacity rounded up to a multiple of 4, experts take the
 * top `capacity` tokens of their plan column (no rebalancing: it drops), softmax combine weights.
 */
const PAPER: Partial<SparseOTRouterArgs> = {
  solver: {className: 'Adam', config: {formulation: 'semidual', learningRate: 1e-2, maxIterations: 20}},
  gradient: 'softmax',
  assignment: {className: 'ExpertsChooseTokens', config: {dispatch: 'top-capacity'}},
  cost: 'negative-softmax',
  gamma: 1,
  capacityMultipleOf: 4,
};

/** The plan of one call and the solver's result (potentials, iterations, convergence). */
interface SolvedPlan {
  plan: tf.Tensor3D;
  solved: SparseOTResult | undefined;
}

/**
 * The k-sparse optimal-transport router. Experts choose tokens by default: the plan of the
 * transport problem `cost <float32>[groups, groupSize, E]` with column marginals
 * `realTokens / E` and at most `capacity` tokens per column decides which tokens each expert
 * takes (`<int32>[groups, E, capacity]`, -1 in empty slots), and the rebalancing step then gives
 * every real token a slot when the capacity allows. See {@link SparseOTRouterArgs}.
 *
 * Capacity: `min(groupSize, ceil(groupSize * capacityFactor / E))`, rounded up to a multiple of
 * `capacityMultipleOf`. Padding tokens (the route mask) get no mass and are never dispatched; a
 * group with no real token routes nothing. Auxiliary loss: none by default (the shared
 * `loadBalanceLossWeight` / `zLossWeight` add them). Metrics: the standard ones plus
 * `meanRowViolation` (mean over real tokens of |row mass - 1|), `planDroppedFraction` (real
 * tokens the plan's own dispatch left without an expert, before rebalancing), `solverIterations`,
 * `solverConverged` and `feasible` (whether any k-sparse plan can meet the marginals).
 *
 * @example
 * ```ts
 * const router = sparseOTRouter({numExperts: 8, gradient: 'implicit', gamma: 1});
 * const tokens = tf.randomNormal([4, 64, 32]) as tf.Tensor3D; // <float32>[groups, groupSize, d]
 * const capacity = router.computeCapacity(64, 1.25);           // ceil(64 * 1.25 / 8) = 10
 * const r = router.route(tokens, {training: true, capacity});
 * r.tokenIndices;   // <int32>[4, 8, 10]
 * r.combineWeights; // <float32>[4, 8, 10], the plan's values
 * r.dispose();
 * const reference = SparseOTRouter.paper({numExperts: 8}); // the released router
 * ```
 */
export class SparseOTRouter extends Router {
  static className = CLASS;
  /** The solver (checked, defaults filled). */
  readonly solver: ResolvedSolver;
  /** The gradient mode. */
  readonly gradient: ResolvedGradient;
  /** Who chooses and how the plan becomes slots. */
  readonly assignment: ResolvedAssignment;
  readonly cost: OTCost;
  readonly gamma: number;
  readonly capacityMultipleOf: number;
  readonly warmStart: boolean;
  /** Host reads allowed in the solver; null: the backend decides per call. */
  readonly hostReads: boolean | null;
  /** `<float32>[E]` per-expert potentials carried across training calls (warm start only). */
  warmStartBeta: tf.LayerVariable | null = null;

  /**
   * The released V-MoE router (see the module's `PAPER` settings); `args` may override any
   * setting.
   *
   * @example
   * ```ts
   * const router = SparseOTRouter.paper({numExperts: 8});
   * router.computeCapacity(64, 1.1); // ceil(8.8) = 9, rounded up to 12
   * ```
   */
  static paper(args: SparseOTRouterArgs): SparseOTRouter {
    return new SparseOTRouter({...PAPER, ...args});
  }

  constructor(args: SparseOTRouterArgs) {
    super(args, OWN_ARG_NAMES);
    const preset = args.preset == null ? null : assertOneOf('preset', args.preset, ['paper'] as const, CLASS);
    const full = preset === 'paper' ? {...PAPER, ...args} : args;
    const parts = readLegacy(args, preset === 'paper' ? PAPER : {});
    this.solver = resolveSolver(parts.solver ?? 'auto');
    this.gradient = resolveGradient(parts.gradient ?? 'softmax');
    this.assignment = resolveAssignment(parts.assignment ?? 'experts-choose-tokens', this.numExperts);
    this.cost = assertOneOf('cost', full.cost ?? 'negative-softmax', ['negative-softmax', 'negative-logits'] as const, CLASS);
    this.gamma = assertPositiveNumber('gamma', full.gamma ?? 1, CLASS);
    this.capacityMultipleOf = assertPositiveInt('capacityMultipleOf', full.capacityMultipleOf ?? 1, CLASS);
    this.warmStart = assertBoolean('warmStart', full.warmStart ?? false, CLASS);
    this.hostReads = full.hostReads == null ? null : assertBoolean('hostReads', full.hostReads, CLASS);
    if (this.gradient.className === 'Unrolled' && this.solver.config.formulation === 'dual') {
      throw new ConfigError('formulation', "'semidual' with gradient 'unrolled' (the unrolled solver is semi-dual)", 'dual', CLASS);
    }
  }

  /** Whether tokens choose experts (row-sparse plan). */
  private get tokensChoose(): boolean {
    return this.assignment.className === 'TokensChooseExperts';
  }

  override get expertsPerToken(): number {
    return this.tokensChoose ? (this.assignment.config.expertsPerToken as number) : 1;
  }

  /**
   * `min(groupSize, ceil(groupSize * capacityFactor * expertsPerToken / E))`, rounded up to a
   * multiple of `capacityMultipleOf` (4 with the paper's settings).
   */
  override computeCapacity(groupSize: number, capacityFactor: number): number {
    return computeCapacity(groupSize, capacityFactor, this.numExperts, this.expertsPerToken, this.capacityMultipleOf);
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    super.build(inputShape);
    if (this.warmStart) {
      this.warmStartBeta = this.addWeight('router/warm_start_beta', [this.numExperts], 'float32', tf.initializers.zeros(), undefined, false);
    }
    this.built = true;
  }

  protected computeRouting({logits, gates, mask, training, capacity}: RoutingInput): RoutingDecision {
    const cost = this.transportCost(logits, gates, mask);
    const options = this.problemOptions(cost.shape, mask, training, capacity);
    const {plan, solved} = this.solvePlan(cost, options);
    const {tokenIndices, demand, planIndices} = this.assign(plan, gates, mask, capacity);
    const combineWeights = this.combineWeights(tokenIndices, plan, gates);
    const metrics = this.planMetrics(plan, mask, solved);
    this.updateWarmStart(solved, training);
    if (planIndices !== tokenIndices) planIndices.dispose();
    return {tokenIndices, combineWeights, demand, metrics};
  }

  /** Step 1: the cost `<float32>[G, S, E]`; padding rows get a cost far above every real one. */
  private transportCost(logits: tf.Tensor3D, gates: tf.Tensor3D, mask: tf.Tensor2D | undefined): tf.Tensor3D {
    const cost = this.cost === 'negative-softmax' ? tf.neg(gates) : tf.neg(logits);
    if (!mask) return cost as tf.Tensor3D;
    const m = tf.expandDims(mask, 2);
    return tf.add(tf.mul(cost, m), tf.mul(tf.sub(1, m), MASKED_COST)) as tf.Tensor3D;
  }

  /**
   * Step 2: the problem's options. Marginals: `a_i = mask_i` (padding sends nothing),
   * `b_j = realTokens / E`; a group with no real token gets uniform marginals, so its solve is
   * well-posed, and its plan is masked to zero afterwards (it routes nothing).
   */
  private problemOptions(shape: number[], mask: tf.Tensor2D | undefined, training: boolean, capacity: number): SparseOTOptions {
    const [groups, groupSize, experts] = shape;
    const s = this.solver;
    const opts: SparseOTOptions = {
      k: this.tokensChoose ? this.expertsPerToken : capacity,
      gamma: this.gamma,
      formulation: s.config.formulation,
      solver: s.className.toLowerCase() as SparseOTOptions['solver'],
      sparsity: this.tokensChoose ? 'row' : 'column',
    };
    if (s.config.learningRate !== null) opts.learningRate = s.config.learningRate;
    if (s.config.maxIterations !== null) opts.maxIterations = s.config.maxIterations;
    if (this.hostReads !== null) opts.hostReads = this.hostReads;
    if (mask) {
      const empty = tf.equal(tf.sum(mask, 1, true), 0); // [G, 1]
      const a = tf.where(tf.tile(empty, [1, groupSize]), tf.onesLike(mask), mask);
      opts.a = a;
      opts.b = tf.tile(tf.div(tf.sum(a, 1, true), experts), [1, experts]);
    } else {
      opts.a = 1;
      opts.b = groupSize / experts;
    }
    if (training && this.warmStart && this.warmStartBeta && !this.tokensChoose) {
      opts.init = {beta: tf.tile(tf.reshape(this.warmStartBeta.read(), [1, experts]), [groups, 1])};
    }
    return opts;
  }

  /** Step 3: the plan, differentiable or not according to the gradient mode; padding rows zero. */
  private solvePlan(cost: tf.Tensor3D, options: SparseOTOptions): SolvedPlan {
    const holder: {result?: SparseOTResult} = {};
    const keep = (r: SparseOTResult): void => {
      holder.result = r;
    };
    let plan: tf.Tensor3D;
    if (this.gradient.className === 'ImplicitDifferentiation') {
      plan = sparseOTPlanImplicit(cost, {...options, implicit: {space: this.gradient.config.space}}, solveSparseOT, keep) as tf.Tensor3D;
    } else {
      plan = solveAsConstant(cost, options, keep) as tf.Tensor3D;
      if (this.gradient.className === 'Unrolled') {
        const alpha = holder.result?.alpha;
        plan = unrolledSparseOT(cost, {
          k: options.k as number, gamma: this.gamma, a: options.a as number | tf.Tensor, b: options.b as number | tf.Tensor,
          sparsity: options.sparsity, iterations: this.gradient.config.iterations,
          init: this.tokensChoose || !alpha ? undefined : stopGradient(alpha),
        }).plan as tf.Tensor3D;
      }
    }
    const a = options.a;
    if (a instanceof tf.Tensor) plan = tf.mul(plan, tf.expandDims(tf.mul(a, tf.cast(tf.greater(tf.sum(a, 1, true), 0), 'float32')), 2)) as tf.Tensor3D;
    return {plan, solved: holder.result};
  }

  /**
   * Step 4: slots from the plan (integer work, untaped). Experts choose tokens: each expert takes
   * its plan column's support (or its top `capacity` with `'top-capacity'` dispatch), then the
   * rebalancing step; tokens choose experts: their top experts of the row-sparse plan, then
   * batch-prioritized capacity.
   */
  private assign(plan: tf.Tensor3D, gates: tf.Tensor3D, mask: tf.Tensor2D | undefined, capacity: number):
    {tokenIndices: tf.Tensor3D; planIndices: tf.Tensor3D; demand?: tf.Tensor2D} {
    const [groups, groupSize, experts] = plan.shape;
    const real = mask ?? (tf.ones([groups, groupSize]) as tf.Tensor2D);
    if (this.tokensChoose) {
      let demand: tf.Tensor2D | undefined;
      const tokenIndices = untracked(() => {
        const choices = tf.topk(plan, this.expertsPerToken, true).indices as tf.Tensor3D;
        const assigned = assignTokenChoice(choices, experts, capacity, mask, tf.max(plan, 2) as tf.Tensor2D);
        demand = tf.keep(assigned.demand);
        return assigned.tokenIndices;
      });
      const kept = demand as unknown as tf.Tensor2D;
      const copy = tf.clone(kept);
      kept.dispose();
      return {tokenIndices, planIndices: tokenIndices, demand: copy};
    }
    const planIndices = untracked(() => {
      // Each expert's top `capacity` plan entries (topk breaks ties by the lowest token index).
      const top = tf.topk(tf.transpose(plan, [0, 2, 1]), capacity, true).indices as tf.Tensor3D; // [G, E, cap]
      let keep = gatherTokenExpertValues(tf.tile(tf.expandDims(real, 2), [1, 1, experts]) as tf.Tensor3D, top);
      if (this.assignment.config.dispatch === 'support') keep = tf.mul(keep, tf.cast(tf.greater(gatherTokenExpertValues(plan, top), 0), 'float32')) as tf.Tensor3D;
      return tf.where(tf.greater(keep, 0), top, tf.fill(top.shape, EMPTY_SLOT, 'int32')) as tf.Tensor3D;
    });
    if (!this.assignment.config.rebalance) return {tokenIndices: planIndices, planIndices};
    return {tokenIndices: untracked(() => rebalanceAssignment(planIndices, plan, gates, real, this.hostReads ?? undefined)), planIndices};
  }

  /**
   * Step 5: combine weights. Softmax mode: the gates of the dispatched pairs. Implicit and
   * unrolled modes: the plan's values; a slot that the rebalancing step filled (plan value 0)
   * takes the token's gate instead.
   */
  private combineWeights(tokenIndices: tf.Tensor3D, plan: tf.Tensor3D, gates: tf.Tensor3D): tf.Tensor3D {
    const filled = tf.cast(tf.greaterEqual(tokenIndices, 0), 'float32');
    const gateWeights = gatherTokenExpertValues(gates, tokenIndices);
    if (this.gradient.className === 'SoftmaxCombine') return tf.mul(gateWeights, filled) as tf.Tensor3D;
    const planWeights = gatherTokenExpertValues(plan, tokenIndices);
    if (!this.assignment.config.rebalance) return tf.mul(planWeights, filled) as tf.Tensor3D;
    const onPlan = untracked(() => tf.greater(planWeights, 0));
    return tf.mul(tf.where(onPlan, planWeights, gateWeights), filled) as tf.Tensor3D;
  }

  /** Step 6: the solver's metrics and the plan's row violation and own drops. */
  private planMetrics(plan: tf.Tensor3D, mask: tf.Tensor2D | undefined, solved: SparseOTResult | undefined): Record<string, tf.Tensor> {
    const rowMass = tf.sum(stopGradient(plan), 2); // [G, S]
    const target = mask ?? tf.onesLike(rowMass);
    const realTokens = tf.maximum(tf.sum(target), 1);
    const sentSomewhere = tf.cast(tf.greater(rowMass, 0), 'float32'); // [G, S]
    const metrics: Record<string, tf.Tensor> = {
      meanRowViolation: tf.div(tf.sum(tf.abs(tf.sub(rowMass, target))), realTokens),
      planDroppedFraction: tf.div(tf.sum(tf.mul(tf.sub(1, sentSomewhere), target)), realTokens),
    };
    if (solved) {
      metrics.solverIterations = tf.scalar(solved.iterations);
      metrics.solverConverged = tf.scalar(solved.converged ? 1 : 0);
      metrics.feasible = tf.scalar(solved.feasible ? 1 : 0);
    }
    return metrics;
  }

  /** Step 7: carry the per-expert potentials to the next training call; free the solver's tensors. */
  private updateWarmStart(solved: SparseOTResult | undefined, training: boolean): void {
    if (!solved) return;
    if (training && this.warmStart && this.warmStartBeta && solved.beta && !this.tokensChoose) {
      this.warmStartBeta.write(tf.mean(tf.reshape(solved.beta, [-1, this.numExperts]), 0));
    }
    tf.dispose([solved.alpha, solved.beta, solved.value].filter((t): t is tf.Tensor => t != null));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      solver: stripNulls(this.solver),
      gradient: this.gradient as unknown as tf.serialization.ConfigDict,
      assignment: this.assignment as unknown as tf.serialization.ConfigDict,
      cost: this.cost,
      gamma: this.gamma,
      capacityMultipleOf: this.capacityMultipleOf,
      warmStart: this.warmStart,
    };
  }
}
tf.serialization.registerClass(SparseOTRouter);

/** `{className, config}` without the null (= solver default) fields. */
function stripNulls(s: ResolvedSolver): tf.serialization.ConfigDict {
  const config = Object.fromEntries(Object.entries(s.config).filter(([, v]) => v !== null));
  return {className: s.className, config} as tf.serialization.ConfigDict;
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
 * Creates a {@link SparseOTRouter}; `sparseOTRouter.paper(args)` creates the released router.
 *
 * @example
 * ```ts
 * const reference = sparseOTRouter.paper({numExperts: 8});
 * const differentiable = sparseOTRouter({numExperts: 8, gradient: 'implicit', gamma: 2});
 * const tokenChoice = sparseOTRouter({numExperts: 8, assignment: {className: 'TokensChooseExperts', config: {expertsPerToken: 2}}});
 * ```
 */
export const sparseOTRouter = Object.assign((args: SparseOTRouterArgs): SparseOTRouter => new SparseOTRouter(args), {
  /** The released V-MoE router, see {@link SparseOTRouter.paper}. */
  paper: (args: SparseOTRouterArgs): SparseOTRouter => SparseOTRouter.paper(args),
});
