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
import {assertOneOf, assertPositiveInt, assertPositiveNumber, ConfigError} from '../core/errors';
import {defaultHostReads, type SparseOTProblemSpec} from '../ot/problem';
import type {SolverInit} from '../ot/solvers/solver';
import {computeCapacity} from './capacity';
import {assertBoolean, Router, type RouterArgs, type RoutingDecision, type RoutingInput} from './router';
import {assignFromPlan, planCombineWeights, planMetrics} from './sparse-ot-assign';
import {
  LEGACY_ARG_NAMES, readLegacy, resolveAssignment, resolveGradient, resolveSolver,
  type LegacySparseOTArgs, type OTAssignmentLike, type OTGradientLike, type OTSolverLike,
  type ResolvedAssignment, type ResolvedGradient, type ResolvedSolver,
} from './sparse-ot-config';
import {routerSolver, routingMarginals, solveTransportPlan, transportCost, type OTCost} from './sparse-ot-plan';

export type {OTCost} from './sparse-ot-plan';

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

  /** The solve reads the cost back (its finiteness, convergence); `hostReads: false` forbids any read. */
  protected override readsBack(): boolean | null {
    return this.hostReads === false ? null : defaultHostReads();
  }

  protected computeRouting({logits, gates, mask, training, capacity, metrics: metricsOn}: RoutingInput): RoutingDecision {
    const cost = transportCost(this.cost, logits, gates, mask);
    const spec = this.problemSpec(cost.shape, mask, capacity);
    const solver = routerSolver(this.solver, spec.k as number, this.tokensChoose ? this.numExperts : cost.shape[1]);
    const {plan, output} = solveTransportPlan(cost, spec, solver, this.gradient, this.warmStartInit(training, cost.shape[0]));
    const {tokenIndices, planIndices, demand} = assignFromPlan(this.assignment, plan, gates, mask, capacity, this.hostReads ?? undefined);
    const combineWeights = planCombineWeights(this.gradient, this.assignment, tokenIndices, plan, gates);
    const metrics = metricsOn ? planMetrics(plan, mask, output) : undefined;
    this.updateWarmStart(output.potentials.beta, training);
    tf.dispose([output.potentials.alpha, output.potentials.beta, output.value]);
    if (planIndices !== tokenIndices) planIndices.dispose();
    return {tokenIndices, combineWeights, demand, metrics};
  }

  /**
   * The transport problem of a call on a cost `[G, S, E]`: marginals from the mask (see
   * `routingMarginals`), k = capacity (experts choose tokens, column-sparse) or experts per
   * token (tokens choose experts, row-sparse), the router's gamma and host-read setting.
   */
  private problemSpec(shape: number[], mask: tf.Tensor2D | undefined, capacity: number): SparseOTProblemSpec {
    const spec: SparseOTProblemSpec = {
      ...routingMarginals(shape, mask),
      k: this.tokensChoose ? this.expertsPerToken : capacity,
      gamma: this.gamma,
      sparsity: this.tokensChoose ? 'row' : 'column',
    };
    if (this.hostReads !== null) spec.hostReads = this.hostReads;
    return spec;
  }

  /** The warm start of a training call: the carried per-expert potentials, one row per group. */
  private warmStartInit(training: boolean, groups: number): SolverInit | undefined {
    if (!training || !this.warmStart || !this.warmStartBeta || this.tokensChoose) return undefined;
    return {beta: tf.tile(tf.reshape(this.warmStartBeta.read(), [1, this.numExperts]), [groups, 1])};
  }

  /** Carries the per-expert potentials `beta <float32>[G, E]` (mean over groups) to the next training call. */
  private updateWarmStart(beta: tf.Tensor, training: boolean): void {
    if (training && this.warmStart && this.warmStartBeta && !this.tokensChoose) {
      this.warmStartBeta.write(tf.mean(tf.reshape(beta, [-1, this.numExperts]), 0));
    }
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
