/**
 * @tfjs-moe/models: ViT and V-MoE models for TensorFlow.js, and `moeify` to turn a dense ViT into a
 * mixture of experts.
 */
export type {LayerArgs, Shape} from './layers/common';
export {PatchEmbedding, patchEmbedding} from './layers/patch-embedding';
export type {PatchEmbeddingArgs} from './layers/patch-embedding';
export {ClassToken, classToken, PositionEmbedding, positionEmbedding, TokenPooling, tokenPooling, CLASSIFIERS} from './layers/tokens';
export type {PositionEmbeddingArgs, TokenPoolingArgs, Classifier} from './layers/tokens';
export {MultiHeadSelfAttention, multiHeadSelfAttention} from './layers/attention';
export type {MultiHeadSelfAttentionArgs} from './layers/attention';
export {LayerNorm, layerNorm, layerNorm1D} from './layers/layer-norm';
export type {LayerNormArgs} from './layers/layer-norm';
export {MlpBlock, mlpBlock, MLP_ACTIVATIONS} from './layers/mlp';
export type {MlpBlockArgs, MlpActivation} from './layers/mlp';
export {VIT_PRESETS, HEAD_ACTIVATIONS, resolveViTConfig, numPatches, sequenceLength} from './config';
export type {ViTConfig, ViTConfigLike, ViTPresetName, ResolvedViTConfig, HeadActivation} from './config';
export {vit, blockLayerNames, prefixTokens, CLASS_TOKEN_LAYER} from './vit';
export {vitParameterCount, attentionParameterCount, mlpParameterCount, layerNormParameterCount} from './parameter-count';
export {replaceLayers} from './graph';
export type {LayerReplacement} from './graph';
export {moeParameterCount, vmoeParameterCount, moeifyParameterCount} from './parameter-count';
export {selectMoEBlocks} from './moe-options';
export type {MoEBlockOptions, MoEBlockSelection} from './moe-options';
export {vmoe, resolveVMoEConfig, moeLayerArgs, moeMetrics} from './vmoe';
export {moeLayers, auxiliaryLoss, auxiliaryLossMetric, withAuxiliaryLoss, isMoELayer} from './router-api';
export type {MoE} from './router-api';
export {seededMoEArgs} from './moe-options';
export {vitForwardFlops, vmoeForwardFlops} from './flop-count';
export type {ForwardFlops} from './flop-count';
export type {VMoEConfig, VMoEConfigLike, ResolvedVMoEConfig} from './vmoe';
export {moeify, mlpBlocks, findMlps, moeNameFor, upcycleExperts, MOEIFY_OPTION_KEYS, MOEIFY_DEFAULTS} from './moeify';
export type {MoeifyOptions, ExpertInit, FoundMlp} from './moeify';
export {VMoETopKRouter, VMoESparseOTRouter, vmoeCapacity} from './vmoe-routing';
export type {VMoETopKRouterArgs, VMoESparseOTRouterArgs, VMoECapacityArgs, CapacityRounding} from './vmoe-routing';
export {checkImages, guardImageInput} from './input-check';
