process.env.EGL_PLATFORM ??= 'surfaceless';

/**
 * Jest runs every package's tests through @swc/jest (type checking is `tsc -b`, run first by
 * `npm test`). Workspace packages resolve to their sources, so tests need no build.
 */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/packages', '<rootDir>/examples', '<rootDir>/bench'],
  testMatch: ['**/test/**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  // Benchmark outputs (e.g. an unpacked GPU bundle with its own node_modules) are not sources.
  modulePathIgnorePatterns: ['<rootDir>/bench/results/'],
  transform: {
    '^.+\\.(t|j)sx?$': [
      '@swc/jest',
      {
        jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
        module: { type: 'commonjs' },
      },
    ],
  },
  moduleNameMapper: {
    '^@tfjs-moe/router$': '<rootDir>/packages/router/src/index.ts',
    '^@tfjs-moe/router/ot$': '<rootDir>/packages/router/src/ot/index.ts',
    '^@tfjs-moe/models$': '<rootDir>/packages/models/src/index.ts',
    '^@tfjs-moe/training$': '<rootDir>/packages/training/src/index.ts',
  },
  testTimeout: 120000,
  maxWorkers: 2,
};
