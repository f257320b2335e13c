#!/usr/bin/env node
// Launcher of the tfjs-moe command line (source: src/cli/main.ts, compiled to dist/cli/main.js by
// `npm run build`). Kept as a plain file so that npm links the bin at install time, before the build.
'use strict';
let cli;
try {
  cli = require('../dist/cli/main.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes('dist/cli/main.js')) {
    console.error('tfjs-moe: the command line is not built yet. Run `npm run build` in the repository root first.');
    process.exit(1);
  }
  throw e;
}
cli.main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    console.error(e);
    process.exitCode = 1;
  },
);
