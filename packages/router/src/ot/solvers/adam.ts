/**
 * The `adam` solver: Adam ascent on the (semi-)dual, as the released V-MoE reference runs it
 * (optax.adam: learning rate 1e-2, betas 0.9 / 0.999, eps 1e-8 added to `sqrt(v_hat)`,
 * bias-corrected moments, a fixed number of steps, 20, from zero potentials), with the step in
 * units of the potentials' scale (see {@link potentialScale}: 1 for the reference's problem), so
 * that scaling cost and gamma together scales the whole ascent and leaves the plan unchanged, up
 * to |C| ~1e30 (issue 13). The one Adam step
 * of the OT core ({@link adamStep}) also serves the alternating solver's polish phase.
 * The tensor path runs entirely on the device: nothing is read back while it iterates. On cpu /
 * wasm / tensorflow (host reads allowed) the same steps run on host arrays (host-adam.ts).
 */
import * as tf from '@tensorflow/tfjs';
import {assertPositiveNumber} from '../../core/errors';
import {evalDual} from '../dual';
import {makeOutput, type SparseOTOutput} from '../output';
import type {SparseOTProblem} from '../problem';
import {evalSemidual} from '../semidual';
import type {Formulation} from '../types';
import {allGroups, valueSettled} from './convergence';
import {useHostPath} from './host';
import {solveAdamHost} from './host-adam';
import {iterationConfig, readStart, semidualOutput, SolverBase, startingAlpha, type SolverInit} from './solver';

/** Adam's moment decays and epsilon; defaults are the reference's. */
export interface AdamMoments {
  /** First-moment decay. Default 0.9. */
  beta1?: number;
  /** Second-moment decay. Default 0.999. */
  beta2?: number;
  /** Added to `sqrt(v_hat)`. Default 1e-8. */
  epsilon?: number;
}

/** The state of an Adam ascent: parameters and both moments (one entry per parameter tensor). */
export interface AdamState {
  params: tf.Tensor[];
  m: tf.Tensor[];
  v: tf.Tensor[];
}

/**
 * A fresh state at `params` (cloned) with zero moments.
 *
 * @example
 * ```ts
 * let state = adamInit([alpha0]);
 * ```
 */
export function adamInit(params: tf.Tensor[]): AdamState {
  return {params: params.map((p) => tf.clone(p)), m: params.map((p) => tf.zerosLike(p)), v: params.map((p) => tf.zerosLike(p))};
}

/**
 * One Adam ascent step `p += lr * m_hat / (sqrt(v_hat) + eps)` at step number `t` (1-based).
 * `lr` and `t` are numbers, or tensors broadcasting against the parameters (per-group steps, e.g.
 * `<float32>[groups, 1]`). Returns a new state; `state` and `grads` stay the caller's.
 *
 * @example
 * ```ts
 * const next = adamStep(state, [ev.grad], 1e-2, 1);
 * ```
 */
export function adamStep(state: AdamState, grads: tf.Tensor[], lr: number | tf.Tensor, t: number | tf.Tensor, moments: AdamMoments = {}): AdamState {
  const b1 = moments.beta1 ?? 0.9;
  const b2 = moments.beta2 ?? 0.999;
  const eps = moments.epsilon ?? 1e-8;
  return tf.tidy(() => {
    const c1 = typeof t === 'number' ? 1 - b1 ** t : tf.sub(1, tf.pow(tf.scalar(b1), t));
    const c2 = typeof t === 'number' ? 1 - b2 ** t : tf.sub(1, tf.pow(tf.scalar(b2), t));
    const m = grads.map((g, i) => tf.add(tf.mul(state.m[i], b1), tf.mul(g, 1 - b1)));
    const v = grads.map((g, i) => tf.add(tf.mul(state.v[i], b2), tf.mul(tf.square(g), 1 - b2)));
    const params = state.params.map((p, i) => tf.add(p, tf.mul(lr, tf.div(tf.div(m[i], c1), tf.add(tf.sqrt(tf.div(v[i], c2)), eps)))));
    return {params, m, v};
  });
}

/**
 * The potentials' scale per group, `max(gamma, max_ij |C_ij|)` (`<float32>[groups, 1]`): the
 * optimal potentials are of the cost's size (`alpha_i + beta_j - C_ij = gamma T_ij` on the
 * support) or of gamma's, whichever is larger. Adam's step is taken in this unit. It scales with
 * the problem (`(s C, s gamma)` has scale `s` times), and is exactly 1 for gamma 1 and a cost in
 * [-1, 1], such as the reference's `-softmax(logits)`.
 *
 * @example
 * ```ts
 * const lr = tf.mul(potentialScale(problem), 1e-2); // <float32>[groups, 1]
 * ```
 */
export function potentialScale(problem: SparseOTProblem): tf.Tensor2D {
  return tf.tidy(() => tf.maximum(tf.reshape(tf.max(tf.abs(problem.costT), [1, 2]), [problem.groups, 1]), problem.gamma) as tf.Tensor2D);
}

/** Disposes every tensor of an Adam state. */
export function disposeAdam(state: AdamState): void {
  tf.dispose([...state.params, ...state.m, ...state.v]);
}

/**
 * Configuration of the {@link adam} solver.
 *
 * @example
 * ```ts
 * const config: AdamSolverConfig = {learningRate: 1e-2, maxIterations: 20};
 * ```
 */
export interface AdamSolverConfig extends AdamMoments {
  /**
   * Step size, in units of the potentials' scale `max(gamma, max |C|)` per group (see
   * {@link potentialScale}). Default 1e-2. For the reference's problem (gamma 1, cost
   * `-softmax`, so |C| <= 1) the scale is 1 and this is its absolute step.
   */
  learningRate?: number;
  /** Steps, always all run (as the reference does). Default 20. */
  maxIterations?: number;
  /**
   * `converged` reports whether the last step changed every group's value by at most this,
   * relative to `max(1, |value|)`. Default 1e-5.
   */
  tolerance?: number;
  /** `'semidual'` (default) ascends alpha; `'dual'` ascends (alpha, beta) jointly. */
  formulation?: Formulation;
}

const ADAM_KEYS = ['learningRate', 'maxIterations', 'tolerance', 'formulation', 'beta1', 'beta2', 'epsilon'] as const;

/**
 * The Adam solver (the released V-MoE reference). Use {@link adam} to create one.
 *
 * @example
 * ```ts
 * const out = new AdamSolver({maxIterations: 20}).solve(sparseOTProblem(cost, {k: 12}));
 * ```
 */
export class AdamSolver extends SolverBase<Required<AdamSolverConfig>> {
  readonly name = 'adam' as const;

  constructor(config: AdamSolverConfig = {}) {
    const context = 'adam';
    const shared = iterationConfig(config, ADAM_KEYS, {maxIterations: 20, tolerance: 1e-5, checkEvery: 1}, context);
    super({
      learningRate: assertPositiveNumber('learningRate', config.learningRate ?? 1e-2, context),
      maxIterations: shared.maxIterations,
      tolerance: shared.tolerance,
      formulation: shared.formulation,
      beta1: assertPositiveNumber('beta1', config.beta1 ?? 0.9, context),
      beta2: assertPositiveNumber('beta2', config.beta2 ?? 0.999, context),
      epsilon: assertPositiveNumber('epsilon', config.epsilon ?? 1e-8, context),
    });
  }

  solve(problem: SparseOTProblem, init?: SolverInit): SparseOTOutput {
    const {costT, a, b, k, gamma, groups, ni} = problem;
    const {learningRate, maxIterations, tolerance, formulation} = this.config;
    if (useHostPath(problem)) return solveAdamHost(problem, init, this.config);
    const start = readStart(problem, init);
    const dual = formulation === 'dual';
    const alpha0 = startingAlpha(problem, start);
    const beta0 = dual ? (start.beta ? tf.clone(start.beta) : tf.zeros([groups, ni]) as tf.Tensor2D) : null;
    tf.dispose([start.alpha, start.beta].filter((t): t is tf.Tensor2D => t !== undefined));
    let state = adamInit(beta0 ? [alpha0, beta0] : [alpha0]);
    tf.dispose([alpha0, ...(beta0 ? [beta0] : [])]);
    let last: tf.Tensor | null = null;
    const lr = tf.tidy(() => tf.mul(potentialScale(problem), learningRate));
    for (let t = 1; t <= maxIterations; t++) {
      const p = state.params as tf.Tensor2D[];
      let grads: tf.Tensor[];
      let value: tf.Tensor;
      if (dual) {
        const e = evalDual(p[0], p[1], costT, a, b, k, gamma);
        e.planT.dispose();
        grads = [e.gradAlpha, e.gradBeta];
        value = e.value;
      } else {
        const e = evalSemidual(p[0], costT, a, b, k, gamma);
        tf.dispose([e.planT, e.support, e.tau]);
        grads = [e.grad];
        value = e.value;
      }
      const next = adamStep(state, grads, lr, t, this.config);
      disposeAdam(state);
      tf.dispose(grads);
      last?.dispose();
      last = value;
      state = next;
    }
    tf.dispose([...state.m, ...state.v, lr]);
    const [alpha, beta] = state.params as tf.Tensor2D[];
    const settled = (value: tf.Tensor1D): boolean => (last === null ? false : allGroups(valueSettled(value, last, tolerance), problem.hostReads));
    if (!dual) {
      const ev = evalSemidual(alpha, costT, a, b, k, gamma);
      const converged = settled(ev.value);
      last?.dispose();
      return semidualOutput(problem, alpha, ev, maxIterations, converged, 'semidual');
    }
    const dv = evalDual(alpha, beta, costT, a, b, k, gamma);
    tf.dispose([dv.gradAlpha, dv.gradBeta]);
    const converged = settled(dv.value);
    last?.dispose();
    return makeOutput(problem, dv.planT, alpha, beta, dv.value, maxIterations, converged);
  }
}

/**
 * Creates an {@link AdamSolver}: the released V-MoE reference (learning rate 1e-2, 20 steps).
 *
 * @example
 * ```ts
 * const out = adam().solve(sparseOTProblem(tf.neg(gates), {k: 12})); // gates <float32>[64, 8]
 * ```
 */
export function adam(config: AdamSolverConfig = {}): AdamSolver {
  return new AdamSolver(config);
}
