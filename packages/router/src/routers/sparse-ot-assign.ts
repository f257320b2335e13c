/**
 * From a {@link SparseOTRouter}'s plan to expert slots: which tokens each expert takes (the
 * assignment), with which combine weights, and what the plan itself says about row mass and
 * drops (its metrics).
 */
import * as tf from '@tensorflow/tfjs';
import {stopGradient, untracked} from '../core/stop-gradient';
import {gatherTokenExpertValues} from '../moe/dispatch';
import type {SparseOTOutput} from '../ot/output';
import {assignTokenChoice} from './capacity';
import {planDispatch, rebalanceAssignment} from './rebalance';
import type {ResolvedAssignment, ResolvedGradient} from './sparse-ot-config';

/** The slots of one call. */
export interface PlanAssignment {
  /** `<int32>[G, E, capacity]`: token index per expert slot, -1 when empty (after rebalancing). */
  tokenIndices: tf.Tensor3D;
  /** The plan's own slots before rebalancing (the same tensor when there is none). */
  planIndices: tf.Tensor3D;
  /** `<float32>[G, E]`: tokens that asked for each expert (tokens choose experts only). */
  demand?: tf.Tensor2D;
}

/**
 * Slots from the plan (integer work, untaped). Experts choose tokens: each expert takes its plan
 * column's support (or its top `capacity` with `'top-capacity'` dispatch), then the rebalancing
 * step when configured; tokens choose experts: their top `expertsPerToken` experts of the
 * row-sparse plan, then batch-prioritized capacity.
 *
 * @param plan `<float32>[G, S, E]` @param gates `<float32>[G, S, E]`
 * @param mask `<float32>[G, S]`, 1 = real token (undefined: all real)
 * @param hostReads the router's host-read setting, for the rebalancing step (undefined: the backend decides)
 *
 * @example
 * ```ts
 * const {tokenIndices, planIndices} = assignFromPlan(assignment, plan, gates, mask, 10);
 * ```
 */
export function assignFromPlan(
  assignment: ResolvedAssignment, plan: tf.Tensor3D, gates: tf.Tensor3D, mask: tf.Tensor2D | undefined, capacity: number, hostReads?: boolean,
): PlanAssignment {
  const [groups, groupSize, experts] = plan.shape;
  const real = mask ?? (tf.ones([groups, groupSize]) as tf.Tensor2D);
  if (assignment.className === 'TokensChooseExperts') {
    const expertsPerToken = assignment.config.expertsPerToken as number;
    let demand: tf.Tensor2D | undefined;
    const tokenIndices = untracked(() => {
      const choices = tf.topk(plan, expertsPerToken, true).indices as tf.Tensor3D;
      const assigned = assignTokenChoice(choices, experts, capacity, mask, tf.max(plan, 2) as tf.Tensor2D);
      demand = tf.keep(assigned.demand);
      return assigned.tokenIndices;
    });
    const kept = demand as unknown as tf.Tensor2D;
    const copy = tf.clone(kept);
    kept.dispose();
    return {tokenIndices, planIndices: tokenIndices, demand: copy};
  }
  // Each expert's top `capacity` plan entries (ties: the lowest token index); rebalance.ts.
  const planIndices = untracked(() => planDispatch(plan, real, capacity, assignment.config.dispatch as 'support' | 'top-capacity', hostReads));
  if (!assignment.config.rebalance) return {tokenIndices: planIndices, planIndices};
  return {tokenIndices: untracked(() => rebalanceAssignment(planIndices, plan, gates, real, hostReads)), planIndices};
}

/**
 * Combine weights `<float32>[G, E, capacity]`. `SoftmaxCombine`: the gates of the dispatched
 * pairs. Implicit and unrolled modes: the plan's values; a slot that the rebalancing step filled
 * (plan value 0) takes the token's gate instead. Empty slots get 0.
 *
 * @example
 * ```ts
 * const combineWeights = planCombineWeights(gradient, assignment, tokenIndices, plan, gates);
 * ```
 */
export function planCombineWeights(
  gradient: ResolvedGradient, assignment: ResolvedAssignment, tokenIndices: tf.Tensor3D, plan: tf.Tensor3D, gates: tf.Tensor3D,
): tf.Tensor3D {
  // gatherTokenExpertValues gives exactly 0 in empty slots (and sends their gradient nowhere).
  const gateWeights = gatherTokenExpertValues(gates, tokenIndices);
  if (gradient.className === 'SoftmaxCombine') return gateWeights;
  const planWeights = gatherTokenExpertValues(plan, tokenIndices);
  if (!assignment.config.rebalance) return planWeights;
  const onPlan = untracked(() => tf.greater(planWeights, 0));
  return tf.where(onPlan, planWeights, gateWeights) as tf.Tensor3D;
}

/**
 * The plan's metrics: `meanRowViolation` (mean over real tokens of |row mass - 1|),
 * `planDroppedFraction` (real tokens the plan sends nowhere), and the solver's
 * `solverIterations`, `solverConverged` and `feasible` (scalars).
 *
 * @example
 * ```ts
 * const metrics = planMetrics(plan, mask, output);
 * ```
 */
export function planMetrics(plan: tf.Tensor3D, mask: tf.Tensor2D | undefined, output: SparseOTOutput): Record<string, tf.Tensor> {
  const rowMass = tf.sum(stopGradient(plan), 2); // [G, S]
  const target = mask ?? tf.onesLike(rowMass);
  const realTokens = tf.maximum(tf.sum(target), 1);
  const sentSomewhere = tf.cast(tf.greater(rowMass, 0), 'float32'); // [G, S]
  return {
    meanRowViolation: tf.div(tf.sum(tf.abs(tf.sub(rowMass, target))), realTokens),
    planDroppedFraction: tf.div(tf.sum(tf.mul(tf.sub(1, sentSomewhere), target)), realTokens),
    solverIterations: tf.scalar(output.iterations),
    solverConverged: tf.scalar(output.converged ? 1 : 0),
    feasible: tf.scalar(output.feasible ? 1 : 0),
  };
}
