/**
 * A self-contained HTML report of a training run: summary tables and SVG charts (loss and
 * accuracy curves, per-expert load over training for each MoE layer, class x expert heatmaps),
 * rendered from vega-lite specs to SVG in Node (no browser, no network, no scripts in the page).
 */
import type {LoadBalanceStats} from '../metrics/load-balance';
import type {EvalRecord, StepRecord} from '../train/trainer';
import type {RoutingDetails} from './routing';

/** What a report shows. */
export interface ReportData {
  /** Page title. */
  title: string;
  /** The run's settings, shown as a table. */
  config: Record<string, unknown>;
  /** Logged training steps. */
  history: StepRecord[];
  /** Held-out evaluations (the last is the final one). */
  evals: EvalRecord[];
  /** Load statistics per MoE layer averaged over training. */
  trainBalance: Record<string, LoadBalanceStats>;
  /** Class names for the heatmap rows (default 0..n-1). */
  classNames?: readonly string[];
  /** Free-form lines (machine, backend, timings). */
  notes?: string[];
  /** Per-token routing of each MoE layer on test images ({@link routingDetails}). */
  routing?: Record<string, RoutingDetails>;
}

type VegaLiteSpec = Record<string, unknown>;

/** The step axis: integer ticks without decimals ("10", never "10.000000"), even for one point. */
const STEP_AXIS = {field: 'step', type: 'quantitative', title: 'step', axis: {format: 'd', tickMinStep: 1}, scale: {zero: false, nice: true}};

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

function fmt(v: number | undefined, digits = 3): string {
  return v === undefined || Number.isNaN(v) ? '–' : v.toFixed(digits);
}

/**
 * The vega-lite specs of a report, by chart id (exported for tests and custom pages).
 *
 * @example
 * ```ts
 * Object.keys(reportSpecs(data)); // ['loss', 'accuracy', 'load-block1_moe', 'classes-block1_moe', ...]
 * ```
 */
export function reportSpecs(data: ReportData): Record<string, VegaLiteSpec> {
  const specs: Record<string, VegaLiteSpec> = {};
  const curves: Array<Record<string, unknown>> = [];
  for (const r of data.history) {
    curves.push({step: r.step, metric: 'loss', series: 'train', value: r.loss});
    curves.push({step: r.step, metric: 'accuracy', series: 'train', value: r.accuracy});
  }
  for (const e of data.evals) {
    curves.push({step: e.step, metric: 'loss', series: 'held-out', value: e.loss});
    curves.push({step: e.step, metric: 'accuracy', series: 'held-out', value: e.accuracy});
  }
  for (const metric of ['loss', 'accuracy']) {
    specs[metric] = {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: metric === 'loss' ? 'Loss' : 'Accuracy',
      width: 420,
      height: 220,
      data: {values: curves.filter((c) => c.metric === metric)},
      mark: {type: 'line', point: true},
      encoding: {
        x: STEP_AXIS,
        y: {field: 'value', type: 'quantitative', title: metric, axis: {format: '~g'}, ...(metric === 'accuracy' ? {scale: {domain: [0, 1]}} : {})},
        color: {field: 'series', type: 'nominal', title: null},
      },
    };
  }
  const layers = new Set<string>();
  for (const r of data.history) Object.keys(r.balance).forEach((l) => layers.add(l));
  for (const layer of layers) {
    const rows: Array<Record<string, unknown>> = [];
    for (const r of data.history) {
      const s = r.balance[layer];
      if (!s) continue;
      s.tokensPerExpert.forEach((load, e) => rows.push({step: r.step, expert: `e${e}`, load}));
    }
    specs[`load-${layer}`] = {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `${layer}: tokens per expert (per group) during training`,
      width: 420,
      height: 220,
      data: {values: rows},
      mark: {type: 'line', point: true},
      encoding: {
        x: STEP_AXIS,
        y: {field: 'load', type: 'quantitative', title: 'tokens per expert', axis: {format: '~g'}},
        color: {field: 'expert', type: 'nominal'},
      },
    };
  }
  for (const layer of layers) {
    const rows: Array<Record<string, unknown>> = [];
    for (const r of data.history) {
      const s = r.balance[layer];
      if (s?.solverIterations !== undefined) rows.push({step: r.step, metric: 'solver iterations', value: s.solverIterations});
      if (s?.otMarginalError !== undefined) rows.push({step: r.step, metric: 'row-marginal error', value: s.otMarginalError});
    }
    if (!rows.length) continue;
    specs[`solver-${layer}`] = {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `${layer}: the OT solver during training`,
      data: {values: rows},
      mark: {type: 'line', point: true},
      encoding: {
        x: STEP_AXIS,
        y: {field: 'value', type: 'quantitative', title: null, axis: {format: '~g'}},
        row: {field: 'metric', type: 'nominal', title: null},
      },
      resolve: {scale: {y: 'independent'}},
      width: 420,
      height: 110,
    };
  }
  const final = data.evals[data.evals.length - 1];
  for (const [layer, s] of Object.entries(final?.balance ?? {})) {
    const rows: Array<Record<string, unknown>> = [];
    (s.importance ?? []).forEach((v, e) => rows.push({expert: `e${e}`, what: 'mean gate probability', value: v}));
    (data.routing?.[layer]?.combineMass ?? []).forEach((v, e) => rows.push({expert: `e${e}`, what: 'share of combine weight', value: v}));
    const total = s.tokensPerExpert.reduce((a, b) => a + b, 0);
    s.tokensPerExpert.forEach((v, e) => rows.push({expert: `e${e}`, what: 'share of kept tokens', value: total ? v / total : 0}));
    specs[`experts-${layer}`] = {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `${layer}: per expert (held-out)`,
      data: {values: rows},
      mark: 'bar',
      width: {step: 16},
      height: 160,
      encoding: {
        x: {field: 'expert', type: 'nominal', sort: null, title: null},
        xOffset: {field: 'what'},
        y: {field: 'value', type: 'quantitative', title: 'fraction', axis: {format: '~g'}},
        color: {field: 'what', type: 'nominal', title: null, legend: {labelLimit: 240}},
      },
    };
    const hist = data.routing?.[layer]?.served ?? s.expertsPerTokenHistogram;
    if (hist && hist.length) {
      const served = [0, 1, 2].map((k) => ({experts: k === 2 ? '2+' : String(k), share: k === 2 ? hist.slice(2).reduce((a, b) => a + b, 0) : hist[k] ?? 0}));
      specs[`served-${layer}`] = {
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        title: `${layer}: tokens served by 0, 1, 2+ experts (held-out)`,
        data: {values: served},
        mark: 'bar',
        width: {step: 40},
        height: 160,
        encoding: {
          x: {field: 'experts', type: 'nominal', sort: null, title: 'experts per token'},
          y: {field: 'share', type: 'quantitative', title: 'share of tokens', scale: {domain: [0, 1]}, axis: {format: '~g'}},
        },
      };
    }
  }
  for (const [layer, r] of Object.entries(data.routing ?? {})) {
    const gateRows = r.gateByClass.flatMap((row, c) => row.map((p, e) => ({class: data.classNames?.[c] ?? String(c), expert: `e${e}`, probability: p})));
    specs[`gates-${layer}`] = {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `${layer}: mean router probability by class and expert (${r.images} test images)`,
      data: {values: gateRows},
      mark: 'rect',
      width: {step: 28},
      height: {step: 20},
      encoding: {
        x: {field: 'expert', type: 'nominal', sort: null},
        y: {field: 'class', type: 'nominal', sort: null},
        color: {field: 'probability', type: 'quantitative', scale: {scheme: 'oranges', domainMin: 0}, legend: {format: '.2~f'}},
      },
    };
    const posRows = r.positionExpert.flatMap((row, t) => row.map((f, e) => ({position: t, expert: `e${e}`, fraction: f})));
    specs[`positions-${layer}`] = {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `${layer}: which token position goes to which expert (share of ${r.images} test images)`,
      data: {values: posRows},
      mark: 'rect',
      width: {step: 14},
      height: {step: 20},
      encoding: {
        x: {field: 'position', type: 'ordinal', title: 'token position (0 = first token)'},
        y: {field: 'expert', type: 'nominal', sort: null},
        color: {field: 'fraction', type: 'quantitative', scale: {scheme: 'greens', domain: [0, 1]}, legend: {format: '.0%'}},
      },
    };
  }
  for (const [layer, s] of Object.entries(final?.balance ?? {})) {
    if (!s.classExpert) continue;
    const rows: Array<Record<string, unknown>> = [];
    s.classExpert.forEach((row, c) => {
      const total = row.reduce((a, b) => a + b, 0);
      row.forEach((count, e) =>
        rows.push({class: data.classNames?.[c] ?? String(c), expert: `e${e}`, count, share: total ? count / total : 0}),
      );
    });
    specs[`classes-${layer}`] = {
      $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
      title: `${layer}: share of each class's tokens per expert (held-out)`,
      data: {values: rows},
      mark: 'rect',
      width: {step: 28},
      height: {step: 20},
      encoding: {
        x: {field: 'expert', type: 'nominal', sort: null},
        y: {field: 'class', type: 'nominal', sort: null},
        // A constant share (sparse-OT balances every class by construction) still gets a readable legend.
        color: {field: 'share', type: 'quantitative', scale: {scheme: 'blues', domainMin: 0}, legend: {format: '.0%'}},
        tooltip: [{field: 'count', type: 'quantitative'}],
      },
    };
  }
  return specs;
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
  const specs = reportSpecs(data);
  const svgs: Record<string, string> = {};
  for (const [id, spec] of Object.entries(specs)) svgs[id] = await renderSvg(spec);
  const final = data.evals[data.evals.length - 1];
  const configRows = Object.entries(data.config)
    .map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(typeof v === 'string' ? v : JSON.stringify(v))}</td></tr>`)
    .join('');
  const chart = (id: string): string => (svgs[id] ? `<figure id="${escapeHtml(id)}">${svgs[id]}</figure>` : '');
  const charts = (prefix: string): string => Object.keys(svgs).filter((k) => k.startsWith(prefix)).map(chart).join('');
  const loadCharts = charts('load-');
  const heatmaps = charts('classes-');
  const hasMoE = Object.keys(data.trainBalance).length > 0 || Object.keys(final?.balance ?? {}).length > 0;
  const moeSections = hasMoE
    ? `<h2>Load balance</h2>
${balanceTable('Training (averaged over logged steps)', data.trainBalance)}
${balanceTable('Held-out (inference)', final?.balance ?? {})}
${loadCharts}${charts('experts-')}${charts('served-')}
${charts('solver-') ? `<h2>OT solver</h2>${charts('solver-')}` : ''}
<h2>Expert specialization</h2>${heatmaps}${charts('gates-')}${charts('positions-')}`
    : '<p>Dense model: no MoE layers, so no load balance or routing to show.</p>';
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(data.title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}figure{display:inline-block;margin:0.5em}</style>
</head><body>
<h1>${escapeHtml(data.title)}</h1>
<p><b>Held-out accuracy: ${final ? (100 * final.accuracy).toFixed(2) : '–'}%</b> on ${final?.examples ?? 0} examples (loss ${fmt(final?.loss)}).</p>
${(data.notes ?? []).map((n) => `<p>${escapeHtml(n)}</p>`).join('')}
<h2>Training curves</h2>${chart('loss')}${chart('accuracy')}
${moeSections}
<h2>Settings</h2><table>${configRows}</table>
</body></html>
`;
}
