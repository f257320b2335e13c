/**
 * Runs the README's quickstart (`quickstart.ts` only exports it, so that the README can quote the
 * file whole): `npm run quickstart -w @tfjs-moe/example-node`.
 */
import {quickstart} from './quickstart';

quickstart().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
