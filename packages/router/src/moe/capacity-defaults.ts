/**
 * Capacity-factor defaults of the MoE layer, per routing rule, as the field trains and evaluates
 * them. The table is documented once, in the router package README ("Capacity factors").
 */
import type {Router} from '../routers/router';

/** The capacity factors of training and of inference. */
export interface CapacityFactors {
  /** Capacity factor in training (`model.fit`, `apply(x, {training: true})`). */
  training: number;
  /** Capacity factor at inference (`predict`, `evaluate`, validation). */
  evaluation: number;
}

/**
 * Default capacity factors of a router:
 * - token-choice routers (`'topk'`, `'sinkhorn'`, and `'sparse-ot'` with
 *   `direction: 'tokens-choose-experts'`): 1.25 in training, 2.0 at inference, as Switch
 *   (Fedus et al. 2022, section 2.2 and appendix) and V-MoE (Riquelme et al. 2021, section 4)
 *   evaluate: a larger inference capacity drops fewer tokens where no balancing loss applies;
 * - `'expert-choice'`: 2.0 in both (Zhou et al. 2022, "EC-CF2"): every expert takes
 *   `2 S / E` tokens;
 * - `'sparse-ot'` with experts choosing tokens (the default direction): 1.25 in both; the plan
 *   decides who is served, and a larger inference capacity would change which tokens an expert
 *   takes rather than how many are dropped.
 *
 * @example
 * ```ts
 * defaultCapacityFactors(topKRouter({numExperts: 4})); // {training: 1.25, evaluation: 2}
 * ```
 */
export function defaultCapacityFactors(router: Router): CapacityFactors {
  const className = router.getClassName();
  if (className === 'ExpertChoiceRouter') return {training: 2.0, evaluation: 2.0};
  const direction = (router as unknown as {direction?: string}).direction;
  if (className === 'SparseOTRouter' && direction !== 'tokens-choose-experts') return {training: 1.25, evaluation: 1.25};
  return {training: 1.25, evaluation: 2.0};
}
