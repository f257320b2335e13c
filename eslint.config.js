// Lint rules for the whole workspace (typescript-eslint's recommended set, no type-aware rules so
// that `npm test` stays quick).
const tseslint = require('typescript-eslint');

module.exports = tseslint.config(
  {
    ignores: ['**/dist/**', '**/node_modules/**', 'coverage/**', 'bench/results/**',
      'examples/browser/public/**', 'test-artifacts/**', 'runs/**', 'examples/node/.snippets-*/**',
      // AssemblyScript (compiled and checked by asc: scripts/build-alternating-wasm.mjs).
      'packages/router/assembly/**'],
  },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // bench/ and examples/ use the packages as users do: through their entry points.
    files: ['bench/**/*.ts', 'examples/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{
          regex: '(^|/)packages/[^/]+/src(/|$)',
          message: 'Import the package entry point (@tfjs-moe/router, @tfjs-moe/models, @tfjs-moe/training), not its sources; export what is missing.',
        }],
      }],
    },
  },
);
