/**
 * @tfjs-moe/training: data, the training loop with exact resumption, load-balance measurement,
 * reports and the `tfjs-moe` command line.
 */
export * from './backend';
export * from './rng';
export * from './data';
export * from './io/file-io';
export * from './io/load-model';
export * from './io/run-folder';
export * from './train';
export * from './metrics';
export * from './metrics/probe';
export * from './defaults';
export * from './model-factory';
export * from './run';
export * from './compare';
export * from './report/html';
export * from './report/routing';
export * from './report/progress';
export * from './vmoe/index';
export * from './vmoe/node';
export * from './vmoe/node-source';
