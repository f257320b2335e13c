/**
 * The training report as a reader sees it, in headless Debian Chromium (playwright-core, never a
 * downloaded browser): tiny sparse-OT and dense runs (cpu backend) are trained and rendered by
 * `scripts/report-check.ts` in a child process (vega is an ES module), then every figure of each
 * page is measured and must say something: a chart draws data marks inside its box with readable
 * axes, and a chart whose values would all be equal is replaced by a sentence that states the value.
 * Screenshots go to test-artifacts/report-<run>.png.
 */
import {execFileSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {CHROMIUM, launchChromium, type LaunchedChromium} from '../../../examples/browser/scripts/chromium';
import {measureReport, REPORT_RUNS, type DrawnFigure, type DrawnReport} from '../scripts/report-check';

const ROOT = path.resolve(__dirname, '../../..');
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium) console.warn(`SKIPPED: report in Chromium: ${CHROMIUM} is missing (apt-get install -y chromium; CI installs it in .ci/run)`);
const suite = haveChromium ? describe : describe.skip;

/** Marks whose box lies inside the chart's box (1 px slack), with a point's or cell's size. */
function drawnInside(f: DrawnFigure) {
  return f.marks.filter((m) => m.x >= f.box.x - 1 && m.y >= f.box.y - 1 && m.x + m.width <= f.box.x + f.box.width + 1 && m.y + m.height <= f.box.y + f.box.height + 1);
}

/** The value vega wrote for `field` in each mark's aria-label ("field: value; ..."). */
function values(f: DrawnFigure, field: string): string[] {
  return f.marks.map((m) => new RegExp(`(?:^|; )${field}: ([^;]+)`).exec(m.label)?.[1]).filter((v): v is string => v !== undefined);
}

/** What every figure of every report must satisfy: it says something a reader can see. */
function expectEveryFigureSaysSomething(report: DrawnReport): void {
  expect(report.errors).toEqual([]);
  for (const f of report.figures) {
    expect([f.id, f.title.trim().length > 0]).toEqual([f.id, true]);
    if (f.kind === 'constant') {
      expect(f.text).toMatch(/\d/); // states the constant value
      continue;
    }
    expect([f.id, f.box.width > 100 && f.box.height > 100]).toEqual([f.id, true]);
    expect([f.id, drawnInside(f).length]).toEqual([f.id, f.marks.length]);
    expect([f.id, f.marks.some((m) => m.width > 0 && m.height > 0)]).toEqual([f.id, true]);
    // Readable numbers on the axes: never "10.000000".
    expect([f.id, f.axisLabels.filter((l) => /\.0{4,}/.test(l))]).toEqual([f.id, []]);
  }
}

suite('training report in headless Chromium', () => {
  const reports: Record<string, DrawnReport> = {};
  const byId = (run: string, id: string): DrawnFigure => {
    const f = reports[run].figures.find((g) => g.id === id);
    if (!f) throw new Error(`${run} report has no figure ${id}; it has ${reports[run].figures.map((g) => g.id).join(', ')}`);
    return f;
  };

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'report-chromium-'));
    execFileSync(path.join(ROOT, 'node_modules/.bin/tsx'), [path.join(__dirname, '../scripts/report-check.ts'), '--render-only', dir], {stdio: 'pipe', timeout: 110000});
    fs.mkdirSync(ARTIFACTS, {recursive: true});
    let chromium: LaunchedChromium | undefined;
    try {
      chromium = await launchChromium();
      for (const run of Object.keys(REPORT_RUNS)) {
        const page = await chromium.context.newPage();
        reports[run] = await measureReport(page, path.join(dir, run, 'report.html'));
        await page.screenshot({path: path.join(ARTIFACTS, `report-${run}.png`), fullPage: true});
        await page.close();
      }
    } finally {
      await chromium?.close();
      fs.rmSync(dir, {recursive: true, force: true});
    }
  }, 150000);

  it('sparse-OT: every chart shows something, including those that vary under a balanced router', () => {
    const r = reports['sparse-ot'];
    expect(REPORT_RUNS['sparse-ot'].router).toBe('sparse-ot');
    expectEveryFigureSaysSomething(r);
    expect(r.headings).toEqual(['Training curves', 'Load balance', 'OT solver', 'Expert specialization', 'Settings']);
    const ids = r.figures.map((f) => f.id);
    for (const id of ['loss', 'accuracy', 'load-block1_moe', 'experts-block1_moe', 'served-block1_moe', 'solver-block1_moe', 'classes-block1_moe', 'gates-block1_moe', 'positions-block1_moe']) {
      expect(ids).toContain(id);
    }
    // One logged step (3) and one evaluation: a point per series at step "3" on an integer axis.
    for (const id of ['loss', 'accuracy']) {
      const f = byId('sparse-ot', id);
      expect(new Set(values(f, 'step'))).toEqual(new Set(['3']));
      expect(f.axisLabels).toContain('3');
      expect(f.marks.filter((m) => m.width > 0 && m.height > 0 && m.width < 20).length).toBeGreaterThanOrEqual(2); // train and held-out points
    }
    // Sparse-OT fills every expert to capacity: the load over training is one number, said in words.
    const load = byId('sparse-ot', 'load-block1_moe');
    if (load.kind === 'constant') expect(load.text).toMatch(/Every expert received \d+(\.\d+)? tokens per group/);
    else expect(new Set(values(load, 'tokens per expert')).size).toBeGreaterThan(1);
    // Router probability by class x expert: one cell each (10 classes x 4 experts), not all one colour.
    const gates = byId('sparse-ot', 'gates-block1_moe');
    expect(gates.marks).toHaveLength(40);
    expect(new Set(gates.marks.map((m) => m.color)).size).toBeGreaterThan(1);
    // Per-position routing map: 17 token positions x 4 experts, and positions differ in where they go.
    const positions = byId('sparse-ot', 'positions-block1_moe');
    expect(positions.marks).toHaveLength(68);
    expect(new Set(positions.marks.map((m) => m.color)).size).toBeGreaterThan(1);
    // Per expert: gate probability, combine-weight share and kept-token share for each of 4 experts.
    const experts = byId('sparse-ot', 'experts-block1_moe');
    expect(experts.marks).toHaveLength(12);
    const combine = experts.marks.filter((m) => m.label.includes('share of combine weight'));
    expect(combine).toHaveLength(4);
    expect(new Set(combine.map((m) => Math.round(m.height))).size).toBeGreaterThan(1);
    // Tokens served by 0, 1, 2+ experts: three bars whose shares sum to 1.
    const served = byId('sparse-ot', 'served-block1_moe');
    expect(values(served, 'experts per token')).toEqual(['0', '1', '2+']);
    expect(values(served, 'share of tokens').map(Number).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 2);
    // The solver's own numbers: the row-marginal error drawn at the logged step; the fixed
    // iteration budget (3 at every logged step) said in words.
    const solver = byId('sparse-ot', 'solver-block1_moe');
    const metricsDrawn = solver.marks.map((m) => m.label).join('\n');
    expect(solver.axisLabels).toContain('3');
    expect(Number(values(solver, 'value')[0])).not.toBeNaN();
    expect(metricsDrawn).toMatch(/step: 3/);
    expect(solver.title).toMatch(/row-marginal error: mean \|row mass - 1\|/);
    expect(solver.marks.filter((m) => m.width > 0 && m.height > 0 && m.width < 20)).toHaveLength(1); // one point: the error row
    expect(Number.isInteger(Number(values(solver, 'value')[0]))).toBe(false); // the error, not the (integer) iteration count
    const iterations = byId('sparse-ot', 'solver-iterations-block1_moe');
    expect(iterations.kind).toBe('constant');
    if (iterations.kind === 'constant') expect(iterations.text).toMatch(/^The OT solver ran \d+ iterations at every logged step \(1 logged\)\.$/);
  });

  it('dense: curves with integer step ticks up to "10", and no MoE sections', () => {
    const r = reports.dense;
    expect(REPORT_RUNS.dense.router).toBe('dense');
    expectEveryFigureSaysSomething(r);
    expect(r.headings).toEqual(['Training curves', 'Settings']);
    expect(r.figures.map((f) => f.id)).toEqual(['loss', 'accuracy']);
    expect(r.paragraphs.join(' ')).toContain('Dense model: no MoE layers');
    for (const id of ['loss', 'accuracy']) {
      const f = byId('dense', id);
      expect(f.axisLabels).toContain('10');
      expect(new Set(values(f, 'step'))).toEqual(new Set(['5', '10']));
      // The validation evaluation at step 5 and the final test evaluation at step 10 fall on the
      // train curve's points: their marks are larger and drawn after (on top of) the train
      // points, so the reader sees every series, each under its own name.
      const points = f.marks.filter((m) => m.width > 0 && m.width < 20);
      const validation = points.filter((m) => /series: validation/.test(m.label));
      const test = points.filter((m) => /series: test/.test(m.label));
      const train = points.filter((m) => /series: train/.test(m.label));
      expect([values({...f, marks: validation}, 'step'), values({...f, marks: test}, 'step'), train.length]).toEqual([['5'], ['10'], 2]);
      const heldOut = [...validation, ...test];
      expect(Math.min(...heldOut.map((m) => m.width))).toBeGreaterThan(1.5 * Math.max(...train.map((m) => m.width)));
      expect(Math.min(...heldOut.map((m) => f.marks.indexOf(m)))).toBeGreaterThan(Math.max(...train.map((m) => f.marks.indexOf(m))));
    }
  });
});
