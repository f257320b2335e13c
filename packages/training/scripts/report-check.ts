/**
 * Renders the HTML report of three tiny runs (sparse-OT with one logged point, top-k, dense) and
 * looks at each page in headless Chromium: every chart must have a visible size and draw marks.
 * Screenshots go to test-artifacts/report-<name>.png. Usage (repository root):
 * `npx tsx packages/training/scripts/report-check.ts` (needs Debian's chromium).
 */
import * as fs from 'fs';
import * as path from 'path';
import {launchChromium} from '../../../examples/browser/scripts/chromium';
import {runTraining, type RunOptions} from '../src/run';

const OUT = path.resolve('test-artifacts');
const TINY: RunOptions = {data: 'synthetic', depth: 2, hiddenSize: 16, numHeads: 2, mlpDim: 32, batchSize: 32, backend: 'cpu', progress: null, overwrite: true};

async function main(): Promise<void> {
  fs.mkdirSync(OUT, {recursive: true});
  const runs: Array<[string, RunOptions]> = [
    ['sparse-ot-one-point', {...TINY, router: 'sparse-ot', steps: 10, evalEvery: 0}],
    ['topk', {...TINY, router: 'topk', steps: 20, logEvery: 5}],
    ['dense', {...TINY, router: 'dense', steps: 10}],
  ];
  const {context, close} = await launchChromium();
  let failures = 0;
  try {
    for (const [name, options] of runs) {
      const out = path.join(OUT, `report-run-${name}`);
      const r = await runTraining({...options, out});
      r.result.model.dispose();
      const page = await context.newPage();
      await page.goto(`file://${path.join(out, 'report.html')}`);
      const figures = await page.$$eval('figure', (fs) =>
        fs.map((f) => {
          const svg = f.querySelector('svg');
          const box = svg?.getBoundingClientRect();
          const marks = svg ? svg.querySelectorAll('g.mark-line path, g.mark-symbol path, g.mark-rect path, g.mark-group path, path.mark, g[class*="mark-"] path').length : 0;
          const labels = svg ? Array.from(svg.querySelectorAll('text')).map((t) => t.textContent ?? '') : [];
          return {id: f.id, width: box?.width ?? 0, height: box?.height ?? 0, marks, badLabels: labels.filter((l) => /\.0{4,}/.test(l))};
        }),
      );
      const headings = await page.$$eval('h2', (hs) => hs.map((h) => h.textContent));
      await page.screenshot({path: path.join(OUT, `report-${name}.png`), fullPage: true});
      await page.close();
      console.log(`${name}: headings ${JSON.stringify(headings)}`);
      for (const f of figures) {
        const ok = f.width > 50 && f.height > 50 && f.marks > 0 && f.badLabels.length === 0;
        if (!ok) failures++;
        console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${f.id}: ${Math.round(f.width)}x${Math.round(f.height)}, ${f.marks} mark paths${f.badLabels.length ? `, labels ${f.badLabels.join(' ')}` : ''}`);
      }
      if (name === 'dense' && headings.includes('Load balance')) {
        failures++;
        console.log('  FAIL dense report has a Load balance heading');
      }
    }
  } finally {
    await close();
  }
  console.log(failures ? `${failures} failure(s)` : 'every chart shows something');
  process.exitCode = failures ? 1 : 0;
}

void main();
