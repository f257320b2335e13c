/**
 * The charts of a training run's report as vega-lite specs: loss and accuracy curves; per MoE
 * layer its load and OT solver over training, per-expert shares, tokens served by 0/1/2+ experts,
 * class x expert, gate and token-position heatmaps. A chart whose values are all equal is
 * replaced by the sentence that states the value. html.ts draws them into the page.
 */
import type {LoadBalanceStats} from '../metrics/load-balance';
import type {EvalRecord, StepRecord} from '../train/trainer';
import {evalSplit} from '../train/records';
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

/** A vega-lite specification (JSON). */
export type VegaLiteSpec = Record<string, unknown>;

/**
 * A number for a sentence or a table cell, `–` when missing.
 *
 * @example
 * ```ts
 * fmt(0.12345); // '0.123'
 * fmt(undefined); // '–'
 * ```
 */
export function fmt(v: number | undefined, digits = 3): string {
  return v === undefined || Number.isNaN(v) ? '–' : v.toFixed(digits);
}

/** A chart of the report: a vega-lite spec, or, where every value is the same, the sentence that says so. */

export type ReportChart = {title: string; spec: VegaLiteSpec} | {title: string; constant: string};

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/** The step axis: integer ticks without decimals ("10", never "10.000000"), even for one point. */
const STEP_AXIS = {field: 'step', type: 'quantitative', title: 'step', axis: {format: 'd', tickMinStep: 1}, scale: {zero: false, nice: true}};

type Row = Record<string, unknown>;

function chart(title: string, rows: Row[], spec: VegaLiteSpec): ReportChart {
  return {title, spec: {$schema: SCHEMA, title, data: {values: rows}, ...spec}};
}

/**
 * A line chart over training steps: `y.field` by `step`, one line per `series.field` value, told
 * apart by colour or, with `series.rows`, drawn in rows of their own with independent y scales.
 */
function stepChart(title: string, rows: Row[], y: {field: string; title: string | null; domain?: number[]}, series: {field: string; title: string | null; rows?: boolean}): ReportChart {
  return chart(title, rows, {
    width: 420,
    height: series.rows ? 110 : 220,
    mark: {type: 'line', point: true},
    encoding: {
      x: STEP_AXIS,
      y: {field: y.field, type: 'quantitative', title: y.title, axis: {format: '~g'}, ...(y.domain ? {scale: {domain: y.domain}} : {})},
      [series.rows ? 'row' : 'color']: {field: series.field, type: 'nominal', title: series.title},
    },
    ...(series.rows ? {resolve: {scale: {y: 'independent'}}} : {}),
  });
}

/** A heatmap: one cell per (x, y), coloured by `color.field` from 0 (or over `color.domain`). */
function heatmap(title: string, rows: Row[], x: VegaLiteSpec, y: VegaLiteSpec, color: {field: string; scheme: string; format: string; domain?: number[]}, cellWidth = 28): ReportChart {
  return chart(title, rows, {
    mark: 'rect',
    width: {step: cellWidth},
    height: {step: 20},
    encoding: {
      x,
      y,
      color: {field: color.field, type: 'quantitative', scale: {scheme: color.scheme, ...(color.domain ? {domain: color.domain} : {domainMin: 0})}, legend: {format: color.format}},
    },
  });
}

const EXPERT_X = {field: 'expert', type: 'nominal', sort: null};
const CLASS_Y = {field: 'class', type: 'nominal', sort: null};

function className(data: ReportData, c: number): string {
  return data.classNames?.[c] ?? String(c);
}

/** `values` all equal (to 1e-9 relative): a chart of them would be one flat line or one colour. */
function constantValue(values: number[]): number | undefined {
  if (!values.length) return undefined;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return hi - lo <= 1e-9 * Math.max(1, Math.abs(hi)) ? hi : undefined;
}

function curveCharts(data: ReportData): Record<string, ReportChart> {
  const curves: Row[] = [];
  for (const r of data.history) {
    curves.push({step: r.step, metric: 'loss', series: 'train', value: r.loss});
    curves.push({step: r.step, metric: 'accuracy', series: 'train', value: r.accuracy});
  }
  for (const e of data.evals) {
    const series = evalSplit(e);
    curves.push({step: e.step, metric: 'loss', series, value: e.loss});
    curves.push({step: e.step, metric: 'accuracy', series, value: e.accuracy});
  }
  return {
    loss: curveChart('Loss', curves.filter((c) => c.metric === 'loss'), {title: 'loss'}),
    accuracy: curveChart('Accuracy', curves.filter((c) => c.metric === 'accuracy'), {title: 'accuracy', domain: [0, 1]}),
  };
}

/**
 * A training curve: the train series as a thin line with small points, the validation
 * evaluations drawn on top as a thicker line with large diamonds and the test evaluation as a
 * large square, so that the few evaluation points stay visible where they meet the many train
 * points.
 */
function curveChart(title: string, rows: Row[], y: {title: string; domain?: number[]}): ReportChart {
  const only = (series: string): VegaLiteSpec[] => [{filter: `datum.series === '${series}'`}];
  return chart(title, rows, {
    width: 420,
    height: 220,
    encoding: {
      x: STEP_AXIS,
      y: {field: 'value', type: 'quantitative', title: y.title, axis: {format: '~g'}, ...(y.domain ? {scale: {domain: y.domain}} : {})},
      color: {field: 'series', type: 'nominal', title: null, scale: {domain: ['train', 'validation', 'test']}},
    },
    layer: [
      {transform: only('train'), mark: {type: 'line', strokeWidth: 1.5, point: {size: 20}}},
      {transform: only('validation'), mark: {type: 'line', strokeWidth: 2.5, point: {size: 110, shape: 'diamond', filled: true}}},
      {transform: only('test'), mark: {type: 'point', size: 140, shape: 'square', filled: true, opacity: 1}},
    ],
  });
}

function trainingCharts(data: ReportData, layer: string): Record<string, ReportChart> {
  const out: Record<string, ReportChart> = {};
  const load: Row[] = [];
  const solver: Row[] = [];
  for (const r of data.history) {
    const s = r.balance[layer];
    if (!s) continue;
    s.tokensPerExpert.forEach((v, e) => load.push({step: r.step, expert: `e${e}`, load: v}));
    if (s.solverIterations !== undefined) solver.push({step: r.step, metric: 'solver iterations', value: s.solverIterations});
    if (s.otMarginalError !== undefined) solver.push({step: r.step, metric: 'row-marginal error', value: s.otMarginalError});
  }
  const title = `${layer}: tokens per expert (per group) during training`;
  const flat = constantValue(load.map((r) => r.load as number));
  out[`load-${layer}`] = flat !== undefined
    ? {title, constant: `Every expert received ${fmt(flat, 2)} tokens per group at every logged step (${data.history.length} logged): the load is balanced exactly.`}
    : stepChart(title, load, {field: 'load', title: 'tokens per expert'}, {field: 'expert', title: 'expert'});
  // A fixed iteration budget (the default solver always runs its 3) is said in words; the chart keeps what varies.
  const iterations = solver.filter((r) => r.metric === 'solver iterations').map((r) => r.value as number);
  const fixedIterations = constantValue(iterations);
  const drawn = fixedIterations === undefined ? solver : solver.filter((r) => r.metric !== 'solver iterations');
  if (drawn.length) {
    out[`solver-${layer}`] = stepChart(`${layer}: the OT solver during training (row-marginal error: mean |row mass - 1| over real tokens, 0 = every token's mass sent)`,
      drawn, {field: 'value', title: null}, {field: 'metric', title: null, rows: true});
  }
  if (fixedIterations !== undefined) {
    out[`solver-iterations-${layer}`] = {
      title: `${layer}: OT solver iterations during training`,
      constant: `The OT solver ran ${fmt(fixedIterations, 0)} iterations at every logged step (${iterations.length} logged).`,
    };
  }
  return out;
}

function heldOutCharts(data: ReportData, layer: string, s: LoadBalanceStats): Record<string, ReportChart> {
  const final = data.evals[data.evals.length - 1];
  const set = final ? `${evalSplit(final)} set` : 'held-out';
  const out: Record<string, ReportChart> = {};
  const routing = data.routing?.[layer];
  const rows: Row[] = [];
  (s.importance ?? []).forEach((v, e) => rows.push({expert: `e${e}`, what: 'mean gate probability', value: v}));
  (routing?.combineMass ?? []).forEach((v, e) => rows.push({expert: `e${e}`, what: 'share of combine weight', value: v}));
  const total = s.tokensPerExpert.reduce((a, b) => a + b, 0);
  s.tokensPerExpert.forEach((v, e) => rows.push({expert: `e${e}`, what: 'share of kept tokens', value: total ? v / total : 0}));
  out[`experts-${layer}`] = chart(`${layer}: per expert (${set})`, rows, {
    mark: 'bar',
    width: {step: 16},
    height: 160,
    encoding: {
      x: {field: 'expert', type: 'nominal', sort: null, title: null},
      xOffset: {field: 'what'},
      y: {field: 'value', type: 'quantitative', title: 'fraction', axis: {format: '~g'}},
      color: {field: 'what', type: 'nominal', title: null, legend: {labelLimit: 240}},
    },
  });
  const hist = routing?.served ?? s.expertsPerTokenHistogram;
  if (hist?.length) {
    const served = [0, 1, 2].map((k) => ({experts: k === 2 ? '2+' : String(k), share: k === 2 ? hist.slice(2).reduce((a, b) => a + b, 0) : hist[k] ?? 0}));
    out[`served-${layer}`] = chart(`${layer}: tokens served by 0, 1, 2+ experts (${set})`, served, {
      mark: 'bar',
      width: {step: 40},
      height: 160,
      encoding: {
        x: {field: 'experts', type: 'nominal', sort: null, title: 'experts per token'},
        y: {field: 'share', type: 'quantitative', title: 'share of tokens', scale: {domain: [0, 1]}, axis: {format: '~g'}},
      },
    });
  }
  if (s.classExpert) {
    const shares: Row[] = [];
    s.classExpert.forEach((row, c) => {
      const sum = row.reduce((a, b) => a + b, 0);
      row.forEach((count, e) => shares.push({class: className(data, c), expert: `e${e}`, share: sum ? count / sum : 0}));
    });
    const title = `${layer}: share of each class's tokens per expert (${set})`;
    const flat = constantValue(shares.map((r) => r.share as number));
    out[`classes-${layer}`] = flat !== undefined
      ? {title, constant: `Every class sent ${fmt(100 * flat, 1)}% of its kept tokens to each expert: with every expert at its capacity in every group, the kept tokens cannot separate the classes (the router probabilities below show which experts each class prefers).`}
      : heatmap(title, shares, EXPERT_X, CLASS_Y, {field: 'share', scheme: 'blues', format: '.0%'});
  }
  if (routing) {
    const gates = routing.gateByClass.flatMap((row, c) => row.map((p, e) => ({class: className(data, c), expert: `e${e}`, probability: p})));
    out[`gates-${layer}`] = heatmap(`${layer}: mean router probability by class and expert (${routing.images} test images)`, gates,
      EXPERT_X, CLASS_Y, {field: 'probability', scheme: 'oranges', format: '.2~f'});
    const positions = routing.positionExpert.flatMap((row, t) => row.map((f, e) => ({position: t, expert: `e${e}`, fraction: f})));
    out[`positions-${layer}`] = heatmap(`${layer}: which token position goes to which expert (share of ${routing.images} test images; a token can go to several experts, so a position's shares can sum to more than 100%)`, positions,
      {field: 'position', type: 'ordinal', title: 'token position (0 = first token)'}, EXPERT_X, {field: 'fraction', scheme: 'greens', format: '.0%', domain: [0, 1]}, 14);
  }
  return out;
}

/**
 * The charts of a report, by id, in page order: training curves, then per MoE layer its load and
 * solver over training, its per-expert and served shares, its class, gate and position heatmaps.
 * A chart whose values are all equal (sparse-OT's per-expert load, which is the capacity by
 * construction) comes as the sentence that says so.
 *
 * @example
 * ```ts
 * Object.keys(reportCharts(data)); // ['loss', 'accuracy', 'load-block1_moe', 'solver-block1_moe', ...]
 * ```
 */
export function reportCharts(data: ReportData): Record<string, ReportChart> {
  const charts = curveCharts(data);
  const layers = new Set<string>();
  for (const r of data.history) Object.keys(r.balance).forEach((l) => layers.add(l));
  for (const layer of layers) Object.assign(charts, trainingCharts(data, layer));
  const final = data.evals[data.evals.length - 1];
  for (const [layer, s] of Object.entries(final?.balance ?? {})) Object.assign(charts, heldOutCharts(data, layer, s));
  return charts;
}

/**
 * The vega-lite specs of a report's drawn charts, by chart id (exported for tests and custom pages).
 *
 * @example
 * ```ts
 * Object.keys(reportSpecs(data)); // ['loss', 'accuracy', 'experts-block1_moe', 'gates-block1_moe', ...]
 * ```
 */
export function reportSpecs(data: ReportData): Record<string, VegaLiteSpec> {
  const specs: Record<string, VegaLiteSpec> = {};
  for (const [id, c] of Object.entries(reportCharts(data))) if ('spec' in c) specs[id] = c.spec;
  return specs;
}
