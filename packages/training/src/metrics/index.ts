/** Load-balance measurement of MoE layers. */
export * from './load-balance';
export * from './moe-layers';
export * from './callback';
