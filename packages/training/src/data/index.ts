/** Data: the embedded digits, synthetic data, the user's own files, splits and tfjs-data feeding. */
export * from './dataset';
export * from './digits';
export * from './synthetic';
export * from './files';
export * from './load';
export * from './idx';
export * from './mnist';
