/**
 * The training report as a reader sees it: renders the HTML report of tiny runs and measures each
 * chart in headless Chromium (Debian's `chromium`, driven by playwright-core; never a downloaded
 * browser). The jest test `test/report-chromium.test.ts` asserts on these measurements; run
 * directly, this script prints them and writes screenshots to test-artifacts/report-<run>.png.
 *
 * Usage (repository root): `npx tsx packages/training/scripts/report-check.ts` (train, render,
 * measure) or `... report-check.ts --render-only DIR` (train and render into DIR/<run>/ only: the
 * jest test's step, as vega is an ES module that jest's CommonJS runtime cannot load).
 */
import * as fs from 'fs';
import * as path from 'path';
import type {Page} from 'playwright-core';
import {launchChromium} from '../../../examples/browser/scripts/chromium';
import {runTraining, type RunOptions} from '../src/run';

const TINY: RunOptions = {data: 'synthetic', depth: 2, hiddenSize: 16, numHeads: 2, mlpDim: 32, batchSize: 16, backend: 'cpu', progress: null, overwrite: true, checkpointEvery: 1000};

/**
 * The runs whose reports are checked: sparse-OT with a single logged point and only the final
 * evaluation (one-point charts), and a dense run logged at steps 5 and 10 (a step axis that must
 * read "10", never "10.000000"; no MoE sections).
 */
export const REPORT_RUNS: Record<string, RunOptions> = {
  'sparse-ot': {...TINY, router: 'sparse-ot', steps: 3, logEvery: 3, evalEvery: 0},
  dense: {...TINY, router: 'dense', steps: 10, logEvery: 5, evalEvery: 5},
};

/** One data mark of a chart (a bar, a cell, a point, a line), as drawn. */
export interface DrawnMark {
  /** Vega's description of the datum, e.g. `"expert: e0; probability: 0.27; class: 3"`. */
  label: string;
  /** Fill colour (or stroke colour for a line). */
  color: string;
  /** Box on the page, CSS pixels. */
  x: number;
  y: number;
  width: number;
  height: number;
}

/** One `<figure>` of a report page, as drawn. */
export interface DrawnFigure {
  id: string;
  /** `'chart'`: an SVG chart; `'constant'`: the sentence that replaces a chart of equal values. */
  kind: 'chart' | 'constant';
  /** The chart's title, or the constant figure's caption. */
  title: string;
  /** The constant figure's sentence ('' for a chart). */
  text: string;
  /** Box of the SVG (or of the figure), CSS pixels. */
  box: {x: number; y: number; width: number; height: number};
  /** Data marks, axes and legends excluded. */
  marks: DrawnMark[];
  /** Text of every axis label. */
  axisLabels: string[];
}

/** What a report page shows: headings, paragraphs, every figure, and errors the page raised. */
export interface DrawnReport {
  headings: string[];
  paragraphs: string[];
  figures: DrawnFigure[];
  errors: string[];
}

/**
 * Opens `file` in `page` and measures every figure: its box, its data marks (vega's `role-mark`
 * groups, each mark with the aria-label vega gives its datum) and its axis labels.
 */
export async function measureReport(page: Page, file: string): Promise<DrawnReport> {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  // tsx (esbuild, keepNames) wraps the functions below in __name(), which the page lacks.
  await page.addInitScript('window.__name = (f) => f');
  await page.goto(`file://${path.resolve(file)}`);
  const drawn = await page.evaluate(() => {
    const box = (el: Element) => {
      const r = el.getBoundingClientRect();
      return {x: r.x + window.scrollX, y: r.y + window.scrollY, width: r.width, height: r.height};
    };
    const figures = Array.from(document.querySelectorAll('figure')).map((f) => {
      const svg = f.querySelector('svg');
      const title = svg ? Array.from(svg.querySelectorAll('.role-title-text text')).map((t) => t.textContent ?? '').join(' ') : f.querySelector('figcaption')?.textContent ?? '';
      const marks = svg
        ? Array.from(svg.querySelectorAll('g.role-mark > path')).map((p) => {
          const style = getComputedStyle(p);
          return {label: p.getAttribute('aria-label') ?? '', color: style.fill !== 'none' ? style.fill : style.stroke, ...box(p)};
        })
        : [];
      return {
        id: f.id,
        kind: svg ? ('chart' as const) : ('constant' as const),
        title,
        text: svg ? '' : f.querySelector('p')?.textContent ?? '',
        box: box(svg ?? f),
        marks,
        axisLabels: svg ? Array.from(svg.querySelectorAll('.role-axis-label text')).map((t) => t.textContent ?? '') : [],
      };
    });
    const texts = (sel: string) => Array.from(document.querySelectorAll(sel)).map((e) => e.textContent ?? '');
    return {headings: texts('h2'), paragraphs: texts('body > p'), figures};
  });
  return {...drawn, errors};
}

/** Trains each of {@link REPORT_RUNS} into `dir/<run>/` and writes its report.html. */
export async function renderReports(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const [name, options] of Object.entries(REPORT_RUNS)) {
    const out = path.join(dir, name);
    const r = await runTraining({...options, out});
    r.result.model.dispose();
    files[name] = path.join(out, 'report.html');
  }
  return files;
}

async function main(argv: string[]): Promise<void> {
  const only = argv.indexOf('--render-only');
  if (only >= 0) {
    await renderReports(path.resolve(argv[only + 1] ?? 'test-artifacts/report-runs'));
    return;
  }
  const out = path.resolve('test-artifacts');
  fs.mkdirSync(out, {recursive: true});
  const files = await renderReports(path.join(out, 'report-runs'));
  const {context, close} = await launchChromium();
  try {
    for (const [name, file] of Object.entries(files)) {
      const page = await context.newPage();
      const report = await measureReport(page, file);
      await page.screenshot({path: path.join(out, `report-${name}.png`), fullPage: true});
      await page.close();
      console.log(`${name}: headings ${JSON.stringify(report.headings)}${report.errors.length ? `, page errors ${JSON.stringify(report.errors)}` : ''}`);
      for (const f of report.figures) {
        const colors = new Set(f.marks.map((m) => m.color)).size;
        const what = f.kind === 'chart' ? `${f.marks.length} marks, ${colors} colours, axis labels ${f.axisLabels.slice(0, 8).join(' ')}` : `"${f.text}"`;
        console.log(`  ${f.id} (${Math.round(f.box.width)}x${Math.round(f.box.height)}): ${what}`);
      }
    }
  } finally {
    await close();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
