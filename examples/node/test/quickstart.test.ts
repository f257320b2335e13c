/**
 * The README's API example is this file, verbatim, and it runs: the test checks that README.md
 * quotes src/quickstart.ts exactly and that the code runs and prints a k-sparse plan whose
 * columns each hold at most k = 2 nonzeros summing to b = 8 / 4 = 2.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {useBackend} from '../../../packages/router/test/helpers/backends';
import {quickstart} from '../src/quickstart';

test('README.md quotes examples/node/src/quickstart.ts verbatim', () => {
  const readme = fs.readFileSync(path.join(__dirname, '../../../README.md'), 'utf8');
  const code = fs.readFileSync(path.join(__dirname, '../src/quickstart.ts'), 'utf8');
  expect(readme).toContain('```ts\n' + code + '```');
});

test('the quickstart runs [cpu]', async () => {
  await useBackend('cpu');
  const printed: string[] = [];
  const log = jest.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
    printed.push(args.map(String).join(' '));
  });
  try {
    await quickstart();
  } finally {
    log.mockRestore();
  }
  expect(tf.getBackend()).toBe('cpu');
  // tensor.print() logs "Tensor\n    [[...], ...]": parse the plan back.
  const planText = printed.find((p) => p.startsWith('Tensor'))!;
  const plan = JSON.parse(planText.slice('Tensor'.length).trim().replace(/\s+/g, '').replace(/,\]/g, ']')) as number[][];
  expect(plan).toHaveLength(8);
  for (let j = 0; j < 4; j++) {
    const col = plan.map((row) => row[j]);
    expect(col.filter((v) => v > 0).length).toBeLessThanOrEqual(2);
    expect(col.reduce((s, v) => s + v, 0)).toBeCloseTo(2, 4);
  }
  expect(printed.some((p) => p.startsWith('dropped '))).toBe(true);
});
