/**
 * Closed-form forward FLOP counts of the models built here, beside their parameter counts
 * (`parameter-count.ts`): the one FLOP count that the CLI's `compare`, the benchmarks and the
 * browser benchmark use.
 */
import {effectiveGroupSize} from '@tfjs-moe/router';
import {resolveViTConfig, sequenceLength, numPatches, ResolvedViTConfig, ViTConfigLike} from './config';
import {moe} from './router-api';
import {moeLayerArgs, resolveVMoEConfig, VMoEConfigLike} from './vmoe';

/**
 * Forward FLOPs of one image, matMuls only, 2 FLOPs per multiply-add (element-wise work such as
 * LayerNorm, softmax, activations and the OT solver is not counted). A training step costs about
 * 3 times `total` (the forward pass and two backward matMuls per forward matMul).
 */
export interface ForwardFlops {
  /** Patch embedding `2 P p^2 c d` for P patches of p x p x c pixels. */
  embedding: number;
  /** Attention of every block: `2 T d 3d` (q, k, v) `+ 4 T^2 d` (scores, values) `+ 2 T d d` (output). */
  attention: number;
  /** Dense MLPs `2 * 2 T d h` per dense block. */
  mlp: number;
  /**
   * MoE blocks as executed: every expert slot runs (E x capacity slots per group, empty or not),
   * `2 * 2 d h` per slot (`3` matMuls for gated experts), plus shared and residual experts.
   */
  experts: number;
  /**
   * MoE blocks counted as useful work: each token's experts per token (k; 1 where experts choose
   * tokens), shared and residual experts, as the dense MLP would count them.
   */
  usefulExperts: number;
  /** Router logits `2 T d E` per MoE block (and the residual mixture's `2 T d 2`). */
  router: number;
  /** Classifier head `2 d K`. */
  head: number;
  /** Everything executed: `embedding + attention + mlp + experts + router + head`. */
  total: number;
  /** `total` with `usefulExperts` in place of `experts`. */
  useful: number;
}

function base(c: ResolvedViTConfig): {T: number; counts: Omit<ForwardFlops, 'experts' | 'usefulExperts' | 'router' | 'total' | 'useful'>} {
  const T = sequenceLength(c);
  const d = c.hiddenSize;
  const embedding = 2 * numPatches(c) * c.patchSize * c.patchSize * c.channels * d;
  const attention = c.depth * (2 * T * d * 3 * d + 4 * T * T * d + 2 * T * d * d);
  return {T, counts: {embedding, attention, mlp: c.depth * 4 * T * d * c.mlpDim, head: 2 * d * c.numClasses}};
}

function finish(parts: Omit<ForwardFlops, 'total' | 'useful'>): ForwardFlops {
  const rest = parts.embedding + parts.attention + parts.mlp + parts.router + parts.head;
  return {...parts, total: rest + parts.experts, useful: rest + parts.usefulExperts};
}

/**
 * Forward FLOPs per image of `vit(config)` (see {@link ForwardFlops}).
 *
 * @example
 * ```ts
 * vitForwardFlops('mnist-tiny').total; // 4854016
 * ```
 */
export function vitForwardFlops(config: ViTConfigLike): ForwardFlops {
  const {counts} = base(resolveViTConfig(config));
  return finish({...counts, experts: 0, usefulExperts: 0, router: 0});
}

/**
 * Forward FLOPs per image of `vmoe(config)` (see {@link ForwardFlops}), with the MoE layers'
 * capacity in training or at inference (default inference). The capacity and the experts per
 * token come from the MoE layer itself (`MoE.capacityFor`, `Router.expertsPerToken`), so the
 * count follows every capacity rule the layer follows.
 *
 * @example
 * ```ts
 * // mnist-tiny, top-1 over 4 experts at training capacity factor 1.25: capacity ceil(17 * 1.25 / 4) = 6,
 * // 24 slots instead of 17 tokens in each of the 2 MoE blocks.
 * vmoeForwardFlops({preset: 'mnist-tiny', moe: {numExperts: 4, router: 'topk', capacityFactor: 1.25}}, {training: true}).total;
 * // 4854016 + 2 * (4 * 24 * 64 * 128 + 2 * 17 * 64 * 4 - 4 * 17 * 64 * 128)
 * ```
 */
export function vmoeForwardFlops(config: VMoEConfigLike, options: {training?: boolean} = {}): ForwardFlops {
  const c = resolveVMoEConfig(config);
  const {T, counts} = base(c);
  const d = c.hiddenSize;
  const layer = moe(moeLayerArgs(c.moe, {hiddenDim: c.mlpDim, activation: c.activation}, 'flop_count'));
  // Per-example groups: ceil(T / S) groups per image. Flat groups of S tokens span images (a full
  // batch assumed): T / S groups per image.
  const flat = layer.groupingMode === 'flat';
  const S = flat ? (layer.groupSize ?? T) : effectiveGroupSize(1, T, 'per-example', layer.groupSize);
  const groupsPerImage = flat ? T / S : Math.ceil(T / S);
  const capacity = layer.capacityFor(S, options.training === true);
  const perToken = (layer.gated ? 6 : 4) * d * layer.hiddenDim;
  const shared = layer.numSharedExperts * (layer.gated ? 6 : 4) * d * layer.sharedHiddenDim * T;
  const residual = layer.residualExpert ? perToken * T : 0;
  const blocks = c.moeBlocks.length;
  const executed = groupsPerImage * layer.numExperts * capacity * perToken;
  const useful = T * layer.router.expertsPerToken * perToken;
  const router = blocks * (2 * T * d * layer.numExperts + (layer.residualExpert ? 2 * T * d * 2 : 0));
  const denseBlocks = c.depth - blocks;
  return finish({
    ...counts,
    mlp: denseBlocks * 4 * T * d * c.mlpDim,
    experts: blocks * (executed + shared + residual),
    usefulExperts: blocks * (useful + shared + residual),
    router,
  });
}
