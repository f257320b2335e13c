/**
 * A self-contained HTML report of a training run: summary tables and the SVG charts of
 * charts.ts, rendered from their vega-lite specs to SVG in Node (no browser, no network, no
 * scripts in the page).
 */
import {VIT_PRESETS} from '@tfjs-moe/models';
import type {LoadBalanceStats} from '../metrics/load-balance';
import {evalSplit} from '../train/records';
import {fmt, reportCharts, type ReportData, type VegaLiteSpec} from './charts';

export {reportCharts, reportSpecs, type ReportChart, type ReportData} from './charts';

// vega and vega-lite are ES modules; a real dynamic import (kept out of reach of CommonJS
// transpilation) loads them from this CommonJS package.
const importEsm = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<any>;

/**
 * Renders a vega-lite spec to an SVG string in Node.
 *
 * @example
 * ```ts
 * const svg = await renderSvg({data: {values: [{x: 1, y: 2}]}, mark: 'point', encoding: {...}});
 * ```
 */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  const [vega, vl] = await Promise.all([importEsm('vega'), importEsm('vega-lite')]);
  const view = new vega.View(vega.parse(vl.compile(spec as any).spec), {renderer: 'none'});
  const svg = (await view.toSVG()) as string;
  view.finalize();
  return svg;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function balanceTable(title: string, stats: Record<string, LoadBalanceStats>): string {
  const names = Object.keys(stats);
  if (!names.length) return '';
  const rows = names.map((n) => {
    const s = stats[n];
    return `<tr><td>${escapeHtml(n)}</td><td>${fmt(s.min, 2)} / ${fmt(s.mean, 2)} / ${fmt(s.max, 2)}</td><td>${fmt(s.maxOverMean, 3)}</td><td>${fmt(s.cv, 3)}</td><td>${fmt(100 * s.droppedFraction, 2)}%</td><td>${fmt(s.expertsPerToken.mean, 2)}</td><td>${fmt(s.normalizedEntropy, 3)}</td><td>${s.importance ? s.importance.map((v) => v.toFixed(2)).join(' ') : '–'}</td><td>${fmt(s.otMarginalError, 4)}</td><td>${fmt(s.solverIterations, 1)}</td></tr>`;
  });
  return `<h3>${escapeHtml(title)}</h3><table><tr><th>layer</th><th>tokens/expert min / mean / max</th><th>max/mean</th><th>CV</th><th>dropped</th><th>experts/token</th><th>entropy (norm.)</th><th>importance</th><th>OT marginal error</th><th>solver iters</th></tr>${rows.join('')}</table>`;
}

/**
 * Builds the report page: one HTML string with inline CSS and inline SVG, no external resources.
 *
 * @example
 * ```ts
 * fs.writeFileSync('report.html', await renderReport({title: 'run', config, history, evals, trainBalance}));
 * ```
 */
export async function renderReport(data: ReportData): Promise<string> {
  const figures: Record<string, string> = {};
  for (const [id, c] of Object.entries(reportCharts(data))) {
    figures[id] = 'spec' in c
      ? `<figure id="${escapeHtml(id)}">${await renderSvg(c.spec)}</figure>`
      : `<figure id="${escapeHtml(id)}" class="constant"><figcaption>${escapeHtml(c.title)}</figcaption><p>${escapeHtml(c.constant)}</p></figure>`;
  }
  const final = data.evals[data.evals.length - 1];
  const finalSet = final && evalSplit(final) === 'test' ? 'Test' : 'Validation';
  const configRows = Object.entries(data.config)
    .map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(k === 'preset' ? presetText(v, data.config) : typeof v === 'string' ? v : typeof v === 'number' && !Number.isInteger(v) ? String(Number(v.toPrecision(6))) : JSON.stringify(v))}</td></tr>`)
    .join('');
  const charts = (...prefixes: string[]): string => prefixes.map((p) => Object.keys(figures).filter((k) => k.startsWith(p)).map((k) => figures[k]).join('')).join('');
  const solver = charts('solver-');
  const hasMoE = Object.keys(data.trainBalance).length > 0 || Object.keys(final?.balance ?? {}).length > 0;
  const moeSections = hasMoE
    ? `<h2>Load balance</h2>
${balanceTable('Training (averaged over logged steps)', data.trainBalance)}
${balanceTable(`${finalSet} set (inference)`, final?.balance ?? {})}
${charts('load-', 'experts-', 'served-')}
${solver ? `<h2>OT solver</h2>${solver}` : ''}
<h2>Expert specialization</h2>${charts('classes-', 'gates-', 'positions-')}`
    : '<p>Dense model: no MoE layers, so no load balance or routing to show.</p>';
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(data.title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}figure{display:inline-block;margin:0.5em;vertical-align:top}figure.constant{max-width:420px;border:1px solid #ddd;padding:0.5em 1em}figcaption{font-weight:bold;font-size:13px}</style>
</head><body>
<h1>${escapeHtml(data.title)}</h1>
<p><b>${finalSet} accuracy: ${final ? (100 * final.accuracy).toFixed(2) : '–'}%</b> on ${final?.examples ?? 0} ${finalSet.toLowerCase()} examples (loss ${fmt(final?.loss)}).</p>
${(data.notes ?? []).map((n) => `<p>${escapeHtml(n)}</p>`).join('')}
<h2>Training curves</h2>${figures.loss}${figures.accuracy}
${moeSections}
<h2>Settings</h2><table>${configRows}</table>
</body></html>
`;
}

/**
 * The settings table's `preset` cell: the preset's name and the model sizes it stands for, with
 * the run's overrides (`depth`, `hiddenSize`, ...) applied, e.g. `mnist-tiny (patch 7, d 64, depth 4,
 * 4 heads, MLP 128)`.
 */
function presetText(preset: unknown, config: Record<string, unknown>): string {
  if (typeof preset !== 'string' || !(preset in VIT_PRESETS)) return typeof preset === 'string' ? preset : JSON.stringify(preset);
  const p = VIT_PRESETS[preset as keyof typeof VIT_PRESETS];
  const pick = (key: string, fallback: number) => (typeof config[key] === 'number' ? (config[key] as number) : fallback);
  return `${preset} (patch ${pick('patchSize', p.patchSize)}, d ${pick('hiddenSize', p.hiddenSize)}, depth ${pick('depth', p.depth)}, ${pick('numHeads', p.numHeads)} heads, MLP ${pick('mlpDim', p.mlpDim)})`;
}
