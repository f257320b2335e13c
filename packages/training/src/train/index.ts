/** Training: the loop, its optimizer and schedule, evaluation and checkpoints. */
export * from './trainer';
export * from './evaluate';
export * from './optimizer';
export * from './schedule';
export * from './checkpoint';
