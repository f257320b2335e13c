/**
 * Bad-input probe (issue 13): feeds bad inputs to the public API (routers, MoE layer, models,
 * moeify, the OT solver, data loaders, train) and to the CLI (every flag with bad values, damaged
 * and missing files, folders where files are expected, --out / --resume cases, bad data files),
 * and classifies each outcome:
 *
 * - clear: a typed error (a TfjsMoeError; on the CLI: a non-zero exit with one stderr line and no
 *   stack trace) whose message names the argument or file (and echoes the value where one is given);
 * - unclear: an error without those;
 * - silent-wrong: no error.
 *
 * Run (after `npx tsc -b`, on the cpu backend, tiny models; about a minute):
 *   npx tsx packages/training/scripts/bad-inputs.ts
 * Prints the table of counts and every case that is not clear; exits 1 if any is not clear.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {moe, solveSparseOT, sparseOTRouter, topKRouter, expertChoiceRouter, sinkhornRouter, TfjsMoeError} from '@tfjs-moe/router';
import {moeify, vit, vmoe} from '@tfjs-moe/models';
import {loadArrayFile, runTraining, syntheticDataset, splitDataset, train} from '../src/index';
import {main} from '../src/cli/main';

type Outcome = 'clear' | 'unclear' | 'silent-wrong';
interface Case {
  area: string;
  name: string;
  /** What the message must contain to be clear (the argument or file, the value). */
  mentions: string[];
  run: () => unknown | Promise<unknown>;
  cli?: boolean;
  /** `--resume` over a damaged newest checkpoint may continue from an older intact one if it says so (a line naming the file). */
  fallbackOk?: boolean;
}

/** Flags whose option key (in runTraining's options and --config) is not their camel-cased name. */
const FLAG_KEYS: Record<string, string> = {'--lr': 'learningRate', '--jitter': 'jitterNoise'};

/** A flag is named by its flag (`--batch-size`) or its option key (`batchSize`). */
const names = (text: string, m: string): boolean => {
  if (text.includes(m)) return true;
  if (!m.startsWith('--')) return false;
  const key = FLAG_KEYS[m] ?? m.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  return new RegExp(`\\b${key}\\b`).test(text);
};

const cases: Case[] = [];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-moe-bad-inputs-'));
const file = (name: string, content: string | Uint8Array) => {
  const p = path.join(tmp, name);
  fs.mkdirSync(path.dirname(p), {recursive: true});
  fs.writeFileSync(p, content);
  return p;
};
const dir = (name: string) => {
  const p = path.join(tmp, name);
  fs.mkdirSync(p, {recursive: true});
  return p;
};
let outCount = 0;
const freshOut = () => path.join(tmp, `out-${outCount++}`);

const api = (area: string, name: string, mentions: string[], run: () => unknown) => cases.push({area, name, mentions, run});
const cli = (name: string, args: string[] | (() => string[]), mentions: string[], fallbackOk = false) =>
  cases.push({area: 'cli', name, mentions, cli: true, fallbackOk, run: () => (typeof args === 'function' ? args() : args)});

// ---------------------------------------------------------------- routers
const routerFactories: Array<[string, (a: Record<string, unknown>) => {route: (l: tf.Tensor, o?: unknown) => unknown}]> = [
  ['topKRouter', (a) => topKRouter(a as never) as never],
  ['expertChoiceRouter', (a) => expertChoiceRouter(a as never) as never],
  ['sinkhornRouter', (a) => sinkhornRouter(a as never) as never],
  ['sparseOTRouter', (a) => sparseOTRouter(a as never) as never],
];
for (const [name, make] of routerFactories) {
  api('router', `${name} numExperts 0`, ['numExperts', '0'], () => make({numExperts: 0}));
  api('router', `${name} numExperts 2.5`, ['numExperts', '2.5'], () => make({numExperts: 2.5}));
  api('router', `${name} numExperts NaN`, ['numExperts', 'NaN'], () => make({numExperts: NaN}));
  api('router', `${name} numExperts "4"`, ['numExperts', '"4"'], () => make({numExperts: '4'}));
  api('router', `${name} unknown key`, ['numExpert'], () => make({numExpert: 4}));
  api('router', `${name} route with NaN tokens`, ['tokens', 'NaN'], () => {
    const r = make({numExperts: 4});
    const l = tf.tensor3d([[[NaN, 0, 0, 0], [0, 1, 2, 3]]]);
    return (r as unknown as {route: (x: tf.Tensor, o: unknown) => unknown}).route(l, {capacity: 1});
  });
  api('router', `${name} route with rank-1 tokens`, ['tokens'], () => {
    const r = make({numExperts: 4});
    return (r as unknown as {route: (x: tf.Tensor, o: unknown) => unknown}).route(tf.tensor1d([1, 2, 3, 4]), {capacityFactor: 2});
  });
  api('router', `${name} route with rank-2 tokens`, ['tokens', '8,3'], () => {
    const r = make({numExperts: 4});
    return (r as unknown as {route: (x: tf.Tensor, o: unknown) => unknown}).route(tf.zeros([8, 3]), {capacityFactor: 2});
  });
}
api('router', 'topKRouter k 0', ['k', '0'], () => topKRouter({numExperts: 4, k: 0}));
api('router', 'topKRouter k 5 > numExperts', ['k', '5'], () => topKRouter({numExperts: 4, k: 5}));
api('router', 'topKRouter k 1.5', ['k', '1.5'], () => topKRouter({numExperts: 4, k: 1.5}));
api('router', 'topKRouter loadBalanceLossWeight -1', ['loadBalanceLossWeight', '-1'], () => topKRouter({numExperts: 4, loadBalanceLossWeight: -1} as never));
api('router', 'topKRouter zLossWeight NaN', ['zLossWeight', 'NaN'], () => topKRouter({numExperts: 4, zLossWeight: NaN} as never));
api('router', 'topKRouter jitterNoise Infinity', ['jitterNoise', 'Infinity'], () => topKRouter({numExperts: 4, jitterNoise: Infinity} as never));
api('router', 'sparseOTRouter preset "papr"', ['preset', 'papr'], () => sparseOTRouter({numExperts: 4, preset: 'papr'} as never));
api('router', 'sparseOTRouter gamma 0', ['gamma', '0'], () => sparseOTRouter({numExperts: 4, gamma: 0} as never));
api('router', 'sparseOTRouter gamma -1', ['gamma', '-1'], () => sparseOTRouter({numExperts: 4, gamma: -1} as never));
api('router', 'sinkhornRouter iterations 0', ['0'], () => sinkhornRouter({numExperts: 4, iterations: 0} as never));

// ---------------------------------------------------------------- OT solver
const cost = () => tf.randomNormal([6, 3], 0, 1, 'float32', 2);
api('ot', 'solveSparseOT k 0', ['k', '0'], () => solveSparseOT(cost(), {k: 0}));
api('ot', 'solveSparseOT k -1', ['k', '-1'], () => solveSparseOT(cost(), {k: -1}));
api('ot', 'solveSparseOT k 1.5', ['k', '1.5'], () => solveSparseOT(cost(), {k: 1.5}));
api('ot', 'solveSparseOT k NaN', ['k', 'NaN'], () => solveSparseOT(cost(), {k: NaN}));
api('ot', 'solveSparseOT options null', ['options'], () => solveSparseOT(cost(), null as never));
api('ot', 'solveSparseOT cost with NaN', ['cost', 'NaN'], () => solveSparseOT(tf.tensor2d([[NaN, 1], [1, 0]]), {k: 1}));
api('ot', 'solveSparseOT cost with Infinity', ['cost', 'Infinity'], () => solveSparseOT(tf.tensor2d([[Infinity, 1], [1, 0]]), {k: 1}));
api('ot', 'solveSparseOT cost rank 1', ['cost'], () => solveSparseOT(tf.tensor1d([1, 2]), {k: 1}));
api('ot', 'solveSparseOT cost rank 4', ['cost'], () => solveSparseOT(tf.zeros([2, 2, 2, 2]), {k: 1}));
api('ot', 'solveSparseOT empty cost', ['cost'], () => solveSparseOT(tf.zeros([0, 3]), {k: 1}));
api('ot', 'solveSparseOT gamma 0', ['gamma', '0'], () => solveSparseOT(cost(), {k: 2, gamma: 0} as never));
api('ot', 'solveSparseOT gamma NaN', ['gamma', 'NaN'], () => solveSparseOT(cost(), {k: 2, gamma: NaN} as never));
api('ot', 'solveSparseOT unknown key', ['gama'], () => solveSparseOT(cost(), {k: 2, gama: 1} as never));
api('ot', 'solveSparseOT init.beta NaN', ['beta', 'NaN'], () => solveSparseOT(cost(), {k: 2, init: {beta: tf.tensor1d([NaN, 0, 0])}} as never));
api('ot', 'solveSparseOT init.beta wrong length', ['beta'], () => solveSparseOT(cost(), {k: 2, init: {beta: tf.tensor1d([0, 0])}} as never));
api('ot', 'solveSparseOT k larger than the experts', ['k', '9'], () => solveSparseOT(cost(), {k: 9}));

// ---------------------------------------------------------------- MoE layer
const moeBase = {numExperts: 4, hiddenDim: 8};
api('moe', 'moe numExperts -2', ['numExperts', '-2'], () => moe({numExperts: -2, hiddenDim: 8}));
api('moe', 'moe hiddenDim 0', ['hiddenDim', '0'], () => moe({numExperts: 4, hiddenDim: 0}));
api('moe', 'moe hiddenDim 2.5', ['hiddenDim', '2.5'], () => moe({numExperts: 4, hiddenDim: 2.5}));
api('moe', 'moe capacityFactor 0', ['capacityFactor', '0'], () => moe({...moeBase, capacityFactor: 0}));
api('moe', 'moe capacityFactor -1', ['capacityFactor', '-1'], () => moe({...moeBase, capacityFactor: -1}));
api('moe', 'moe capacityFactor NaN', ['capacityFactor', 'NaN'], () => moe({...moeBase, capacityFactor: NaN}));
api('moe', 'moe capacityFactor Infinity', ['capacityFactor', 'Infinity'], () => moe({...moeBase, capacityFactor: Infinity}));
api('moe', 'moe capacityFactor "2"', ['capacityFactor', '"2"'], () => moe({...moeBase, capacityFactor: '2' as never}));
api('moe', 'moe evalCapacityFactor -1', ['evalCapacityFactor', '-1'], () => moe({...moeBase, evalCapacityFactor: -1}));
api('moe', 'moe groupSize 0', ['groupSize', '0'], () => moe({...moeBase, groupSize: 0}));
api('moe', 'moe groupSize 1.5', ['groupSize', '1.5'], () => moe({...moeBase, groupSize: 1.5}));
api('moe', 'moe router "topq"', ['router', 'topq'], () => moe({...moeBase, router: 'topq' as never}));
api('moe', 'moe router 42', ['router', '42'], () => moe({...moeBase, router: 42 as never}));
api('moe', 'moe activation "swishh"', ['activation', 'swishh'], () => moe({...moeBase, activation: 'swishh' as never}));
api('moe', 'moe unknown key', ['numExpert'], () => moe({...moeBase, numExpert: 4} as never));
api('moe', 'moe groupingMode "flatt"', ['groupingMode', 'flatt'], () => moe({...moeBase, groupingMode: 'flatt' as never}));
// A rank-4 input [..., tokens, d] is a documented feature (router/test/moe/inspect.test.ts), not a
// bad input; a rank-1 one is.
api('moe', 'moe apply rank-1 input', ['inputs', '[4]'], () => moe(moeBase).apply(tf.zeros([4])));
api('moe', 'moe apply NaN input', ['inputs', 'NaN'], () => {
  const l = moe(moeBase);
  const y = l.apply(tf.tensor3d([[[NaN, 0, 0, 0]]])) as tf.Tensor;
  const v = y.dataSync();
  if (v.some((x) => !Number.isFinite(x))) return 'NaN output';
  return y;
});
api('moe', 'moe apply empty input', ['inputs', '[0,3,4]'], () => {
  const y = moe(moeBase).apply(tf.zeros([0, 3, 4])) as tf.Tensor;
  return y;
});

// ---------------------------------------------------------------- models
const vitBase = {imageSize: 8, channels: 1, patchSize: 4, hiddenSize: 8, depth: 1, numHeads: 2, mlpDim: 8, numClasses: 3};
api('model', 'vit imageSize 0', ['imageSize', '0'], () => vit({...vitBase, imageSize: 0}));
api('model', 'vit patchSize 3 not dividing 8', ['patchSize', '3'], () => vit({...vitBase, patchSize: 3}));
api('model', 'vit patchSize 0', ['patchSize', '0'], () => vit({...vitBase, patchSize: 0}));
api('model', 'vit hiddenSize 7 not divisible by numHeads', ['numHeads', '2'], () => vit({...vitBase, hiddenSize: 7}));
api('model', 'vit depth -1', ['depth', '-1'], () => vit({...vitBase, depth: -1}));
api('model', 'vit depth 1.5', ['depth', '1.5'], () => vit({...vitBase, depth: 1.5}));
api('model', 'vit numClasses 0', ['numClasses', '0'], () => vit({...vitBase, numClasses: 0}));
api('model', 'vit numClasses NaN', ['numClasses', 'NaN'], () => vit({...vitBase, numClasses: NaN}));
api('model', 'vit channels 0', ['channels', '0'], () => vit({...vitBase, channels: 0}));
api('model', 'vit classifier "mapp"', ['classifier', 'mapp'], () => vit({...vitBase, classifier: 'mapp' as never}));
api('model', 'vit activation "relu6x"', ['activation', 'relu6x'], () => vit({...vitBase, activation: 'relu6x' as never}));
api('model', 'vit headActivation "sigmoidd"', ['headActivation', 'sigmoidd'], () => vit({...vitBase, headActivation: 'sigmoidd' as never}));
api('model', 'vit layerNormEpsilon -1', ['layerNormEpsilon', '-1'], () => vit({...vitBase, layerNormEpsilon: -1}));
api('model', 'vit unknown key', ['hiddenSizes'], () => vit({...vitBase, hiddenSizes: 8} as never));
api('model', 'vit preset "huge-x"', ['preset', 'huge-x'], () => vit({...vitBase, preset: 'huge-x'} as never));
const moeCfg = {numExperts: 2};
api('model', 'vmoe moeBlocks [5] out of range', ['moeBlocks', '5'], () => vmoe({...vitBase, moeBlocks: [5], moe: moeCfg}));
api('model', 'vmoe moeBlocks [-1]', ['moeBlocks', '-1'], () => vmoe({...vitBase, moeBlocks: [-1], moe: moeCfg}));
api('model', 'vmoe moeBlocks "al"', ['al'], () => vmoe({...vitBase, moeBlocks: 'al' as never, moe: moeCfg}));
api('model', 'vmoe moe.numExperts 0', ['numExperts', '0'], () => vmoe({...vitBase, moeBlocks: [0], moe: {numExperts: 0}}));
api('model', 'vmoe moe.capacityFactor -2', ['capacityFactor', '-2'], () => vmoe({...vitBase, moeBlocks: [0], moe: {numExperts: 2, capacityFactor: -2}}));
api('model', 'vmoe moe unknown key', ['experts'], () => vmoe({...vitBase, moeBlocks: [0], moe: {numExperts: 2, experts: 2} as never}));
api('model', 'vmoe predict with wrong image size', ['images', '8, 8, 1', '16,16'], () => {
  const m = vmoe({...vitBase, moeBlocks: [0], moe: moeCfg});
  return m.predict(tf.zeros([1, 16, 16, 1]));
});
api('model', 'vmoe predict with wrong channels', ['images', '8, 8, 1', '8,8,3'], () => {
  const m = vmoe({...vitBase, moeBlocks: [0], moe: moeCfg});
  return m.predict(tf.zeros([1, 8, 8, 3]));
});
api('model', 'moeify numExperts 0', ['numExperts', '0'], () => moeify(vit({...vitBase, depth: 2}), {numExperts: 0}));
api('model', 'moeify blocks [7]', ['7'], () => moeify(vit(vitBase), {numExperts: 2, blocks: [7]} as never));
api('model', 'moeify unknown key', ['numExpert'], () => moeify(vit(vitBase), {numExpert: 2} as never));
api('model', 'moeify expertInit "copyy"', ['expertInit'], () => moeify(vit(vitBase), {numExperts: 2, expertInit: 'copyy'} as never));
api('model', 'moeify non-model', ['model'], () => moeify({} as never, {numExperts: 2}));

// ---------------------------------------------------------------- data and train
const npyHeader = (shape: number[], dtype = '<f4') => {
  const dict = `{'descr': '${dtype}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  let header = dict;
  while ((10 + header.length + 1) % 64 !== 0) header += ' ';
  header += '\n';
  const out = new Uint8Array(10 + header.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(new TextEncoder().encode(header), 10);
  return out;
};
const jsonData = (images: unknown, labels: unknown) => JSON.stringify({images, labels});
const img = (v: number) => Array.from({length: 4}, () => Array.from({length: 4}, () => v));
const twoClass = (labels: unknown[]) => jsonData(labels.map(() => img(0.5)), labels);
const nanJson = file('data/nan.json', JSON.stringify({images: [img(0.5), [[0.5, 0.5, 0.5, 'NaN'], ...img(0.5).slice(1)]], labels: [0, 1]}).replace('"NaN"', 'NaN'));
const badLabel15 = file('data/label15.json', twoClass([0, 1.5]));
const badLabelX = file('data/labelx.json', twoClass([0, 'x']));
const badLabelNeg = file('data/labelneg.json', twoClass([0, -1]));
const oneClass = file('data/oneclass.json', twoClass([0, 0, 0, 0]));
const malformed = file('data/malformed.json', '{"images": [[0.1, 0.2]');
const mismatched = file('data/mismatch.json', jsonData([img(0.5), img(0.5)], [0]));
const emptyData = file('data/empty.json', jsonData([], []));
const raggedImages = file('data/ragged.json', jsonData([img(0.5), [[0.5, 0.5]]], [0, 1]));
const npyNan = (() => {
  const h = npyHeader([2, 4, 4]);
  const d = new Float32Array(32).fill(0.5);
  d[5] = NaN;
  const labels = new Int32Array([0, 1]);
  file('data/nan-npy/labels.npy', Buffer.concat([npyHeader([2], '<i4'), new Uint8Array(labels.buffer)]));
  return file('data/nan-npy/images.npy', Buffer.concat([h, new Uint8Array(d.buffer)]));
})();
const npyTruncated = (() => {
  const h = npyHeader([2, 4, 4]);
  return file('data/trunc.npy', Buffer.concat([h, new Uint8Array(new Float32Array(10).buffer)]));
})();
const npyBadMagic = file('data/badmagic.npy', 'not an npy file at all');
api('data', 'loadArrayFile NaN pixel (json)', [nanJson], () => loadArrayFile(nanJson));
api('data', 'loadArrayFile NaN pixel (npy)', [npyNan], () => loadArrayFile(npyNan));
api('data', 'loadArrayFile label 1.5', [badLabel15, '1.5'], () => loadArrayFile(badLabel15));
api('data', 'loadArrayFile label "x"', [badLabelX, 'x'], () => loadArrayFile(badLabelX));
api('data', 'loadArrayFile label -1', [badLabelNeg, '-1'], () => loadArrayFile(badLabelNeg));
api('data', 'loadArrayFile malformed JSON', [malformed], () => loadArrayFile(malformed));
api('data', 'loadArrayFile images/labels count mismatch', [mismatched], () => loadArrayFile(mismatched));
api('data', 'loadArrayFile empty data set', [emptyData], () => loadArrayFile(emptyData));
api('data', 'loadArrayFile ragged images', [raggedImages], () => loadArrayFile(raggedImages));
api('data', 'loadArrayFile truncated npy', [npyTruncated], () => loadArrayFile(npyTruncated));
api('data', 'loadArrayFile not an npy', [npyBadMagic], () => loadArrayFile(npyBadMagic));
api('data', 'loadArrayFile missing file', ['nope.npy'], () => loadArrayFile(path.join(tmp, 'nope.npy')));
api('data', 'loadArrayFile a folder', [tmp], () => loadArrayFile(dir('data/folder.json')));
api('data', 'syntheticDataset examples 0', ['examples', '0'], () => syntheticDataset({examples: 0}));
api('data', 'syntheticDataset numClasses 1', ['numClasses', '1'], () => syntheticDataset({numClasses: 1}));
api('data', 'syntheticDataset height -3', ['height', '-3'], () => syntheticDataset({height: -3}));
api('data', 'splitDataset heldOutFraction 1.5', ['heldOutFraction', '1.5'], () => splitDataset(syntheticDataset({examples: 40}), {heldOutFraction: 1.5}));
api('data', 'splitDataset unknown key', ['testFraction'], () => splitDataset(syntheticDataset({examples: 40}), {testFraction: 0.5} as never));
const smallSplit = () => splitDataset(syntheticDataset({examples: 40, height: 8, width: 8}), {seed: 0});
const smallModel = () => vmoe({...vitBase, moeBlocks: [0], moe: moeCfg, headActivation: 'linear'} as never);
const trainWith = (o: Record<string, unknown>) => train({model: smallModel, data: smallSplit(), steps: 1, batchSize: 4, ...o} as never);
api('train', 'train epochs 0', ['epochs', '0'], () => trainWith({steps: undefined, epochs: 0}));
api('train', 'train epochs -1', ['epochs', '-1'], () => trainWith({steps: undefined, epochs: -1}));
api('train', 'train epochs NaN', ['epochs', 'NaN'], () => trainWith({steps: undefined, epochs: NaN}));
api('train', 'train steps 0', ['steps', '0'], () => trainWith({steps: 0}));
api('train', 'train steps 1.5', ['steps', '1.5'], () => trainWith({steps: 1.5}));
api('train', 'train batchSize 0', ['batchSize', '0'], () => trainWith({batchSize: 0}));
api('train', 'train batchSize 2.5', ['batchSize', '2.5'], () => trainWith({batchSize: 2.5}));
api('train', 'train learningRate -1', ['learningRate', '-1'], () => trainWith({learningRate: -1}));
api('train', 'train learningRate NaN', ['learningRate', 'NaN'], () => trainWith({learningRate: NaN}));
// Stops naming what was non-finite: the loss, a weight, or the layer and tensor that found it.
api('train', 'train learningRate 1e30 (diverges)', ['Training stopped', 'learning rate', '1e+30'], () => trainWith({learningRate: 1e30, steps: 4}));
api('train', 'train weightDecay -1', ['weightDecay', '-1'], () => trainWith({weightDecay: -1}));
api('train', 'train clipNorm 0', ['clipNorm', '0'], () => trainWith({clipNorm: 0}));
api('train', 'train checkpointEvery -1', ['checkpointEvery', '-1'], () => trainWith({checkpointEvery: -1, outDir: freshOut()}));
api('train', 'train unknown key', ['epoch'], () => trainWith({epoch: 2}));
api('train', 'train model not a function', ['model'], () => train({model: 5, data: smallSplit(), steps: 1, batchSize: 4} as never));
api('train', 'train data missing', ['data'], () => train({model: smallModel, steps: 1} as never));
api('train', 'train seed 1.5', ['seed', '1.5'], () => trainWith({seed: 1.5}));
api('train', 'runTraining router "topq"', ['router', 'topq'], () => runTraining({router: 'topq' as never, steps: 1, data: 'synthetic', out: freshOut(), progress: null}));
api('train', 'runTraining experts 0', ['experts', '0'], () => runTraining({experts: 0, steps: 1, data: 'synthetic', out: freshOut(), progress: null}));
api('train', 'runTraining unknown key', ['stepz'], () => runTraining({stepz: 3, data: 'synthetic', out: freshOut(), progress: null} as never));
api('train', 'runTraining data "nope"', ['nope'], () => runTraining({steps: 1, data: 'nope', out: freshOut(), progress: null}));

// ---------------------------------------------------------------- CLI
const fast = () => ['--backend', 'cpu', '--data', 'synthetic', '--steps', '1', '--batch-size', '8', '--experts', '2', '--quiet', '--no-report', '--out', freshOut()];
// A numeric value may be echoed as parsed (-1e9 as -1000000000).
const echoed = (v: string) => (v.trim() !== '' && Number.isFinite(Number(v)) ? String(Number(v)) : v);
const trainFlag = (flag: string, value: string) => cli(`train --${flag} ${value}`, () => ['train', ...fast(), `--${flag}`, value], [`--${flag}`, echoed(value)]);
for (const [flag, values] of Object.entries({
  router: ['topq', ''],
  gradient: ['softmaxx'],
  experts: ['0', '-1', '2.5', 'abc'],
  'capacity-factor': ['0', '-1', 'NaN', 'Infinity', 'x'],
  'eval-capacity-factor': ['0', '-2'],
  'group-size': ['0', '1.5', '-4'],
  epochs: ['0', '-1', '-1e9', 'NaN'],
  steps: ['0', '-5', '2.5', 'many'],
  'batch-size': ['0', '-8', '3.5'],
  lr: ['0', '-1', 'NaN', 'Infinity', '1e30'],
  preset: ['mnist-huge'],
  backend: ['tpu'],
  k: ['0', '3', '1.5'],
  'load-balance-loss-weight': ['-1', 'NaN'],
  'z-loss-weight': ['-1'],
  jitter: ['-0.5', '2'],
  seed: ['1.5', 'abc', '1e400'],
  'checkpoint-every': ['-1', '2.5'],
  'eval-every': ['-3', '1.5'],
})) {
  for (const v of values) {
    if (flag === 'lr' && v === '1e30') cli('train --lr 1e30 (diverges)', () => ['train', ...fast(), '--lr', v], ['Training stopped', 'learning rate', '1e+30']);
    else trainFlag(flag, v);
  }
}
cli('train --k 2 with expert-choice', () => ['train', ...fast(), '--router', 'expert-choice', '--k', '2'], ['--k']);
cli('train --data missing file', () => ['train', ...fast(), '--data', path.join(tmp, 'missing.npy')], ['missing.npy']);
cli('train --data NaN json', () => ['train', ...fast(), '--data', nanJson], [nanJson]);
cli('train --data NaN npy', () => ['train', ...fast(), '--data', npyNan], [npyNan]);
cli('train --data label 1.5', () => ['train', ...fast(), '--data', badLabel15], [badLabel15]);
cli('train --data label "x"', () => ['train', ...fast(), '--data', badLabelX], [badLabelX]);
cli('train --data one class', () => ['train', ...fast(), '--data', oneClass], [oneClass]);
cli('train --data malformed json', () => ['train', ...fast(), '--data', malformed], [malformed]);
cli('train --data empty', () => ['train', ...fast(), '--data', emptyData], [emptyData]);
cli('train --data truncated npy', () => ['train', ...fast(), '--data', npyTruncated], [npyTruncated]);
cli('train --data empty folder', () => ['train', ...fast(), '--data', dir('data/empty-folder')], ['empty-folder']);
cli('train --data idx:missing', () => ['train', ...fast(), '--data', `idx:${path.join(tmp, 'no-idx')}`], ['no-idx']);
cli('train --out an existing file', () => ['train', ...fast().slice(0, -2), '--out', file('out-file', 'x')], ['--out', 'out-file']);
cli('train --out non-empty folder', () => {
  const d = dir('nonempty-run');
  fs.writeFileSync(path.join(d, 'x.txt'), 'x');
  return ['train', ...fast().slice(0, -2), '--out', d];
}, ['nonempty-run']);
cli('train --resume with no run', () => ['train', ...fast(), '--resume'], ['out-']);
cli('train --resume --overwrite', () => ['train', ...fast(), '--resume', '--overwrite'], ['overwrite', 'resume']);
cli('train --config missing', () => ['train', ...fast(), '--config', path.join(tmp, 'none.json')], ['none.json']);
cli('train --config a folder', () => ['train', ...fast(), '--config', dir('cfg-folder')], ['cfg-folder']);
cli('train --config malformed', () => ['train', ...fast(), '--config', file('cfg-bad.json', '{"steps": ')], ['cfg-bad.json']);
cli('train --config unknown key', () => ['train', ...fast(), '--config', file('cfg-key.json', '{"stepz": 3}')], ['stepz']);
cli('train --config wrong type', () => ['train', ...fast().filter((a, i, all) => a !== '--steps' && all[i - 1] !== '--steps'), '--config', file('cfg-type.json', '{"steps": "ten"}')], ['steps', 'ten']);
cli('train --config array', () => ['train', ...fast(), '--config', file('cfg-array.json', '[1, 2]')], ['cfg-array.json']);
cli('train unknown flag', ['train', '--stepz', '3'], ['--stepz']);
cli('eval flag on train', ['train', '--model', 'x'], ['--model']);
cli('unknown command', ['trian'], ['trian']);

// Damaged run folders for --resume and eval --model.
let runDir = '';
const damaged = (name: string, rel: string, how: 'truncate' | 'garbage' | 'delete', command: 'resume' | 'eval') =>
  cli(`${command === 'resume' ? 'train --resume' : 'eval --model'} with ${rel} ${how}`, () => {
    const d = path.join(tmp, `damaged-${outCount++}`);
    fs.cpSync(runDir, d, {recursive: true});
    const latest = JSON.parse(fs.readFileSync(path.join(d, 'checkpoints', 'latest.json'), 'utf8')) as {checkpoint: string};
    const target = path.join(d, rel.replace('<ckpt>', path.join('checkpoints', latest.checkpoint)));
    if (how === 'delete') fs.rmSync(target, {force: true});
    else if (how === 'garbage') fs.writeFileSync(target, '{garbage');
    else fs.writeFileSync(target, fs.readFileSync(target).subarray(0, Math.floor(fs.statSync(target).size / 2)));
    return command === 'resume'
      ? ['train', '--out', d, '--resume', '--steps', '3', '--quiet', '--no-report', '--data', 'synthetic']
      : ['eval', '--model', d, '--data', 'synthetic'];
  }, [path.basename(rel)], command === 'resume');
for (const rel of ['checkpoints/latest.json', '<ckpt>/trainer.json', '<ckpt>/model.json', 'run.json', '<ckpt>/weights.bin', '<ckpt>/optimizer.bin']) {
  damaged('', rel, rel.endsWith('.bin') ? 'truncate' : 'garbage', 'resume');
}
damaged('', 'checkpoints/latest.json', 'delete', 'resume');
for (const rel of ['model/model.json', 'model/weights.bin']) {
  damaged('', rel, 'truncate', 'eval');
  damaged('', rel, 'garbage', 'eval');
  damaged('', rel, 'delete', 'eval');
}
cli('eval --model missing', ['eval', '--model', path.join(tmp, 'no-model')], ['no-model']);
cli('eval --model a file', () => ['eval', '--model', file('model-file', 'x')], ['model-file']);
cli('eval without --model', ['eval'], ['--model']);
cli('eval --batch-size 0', () => ['eval', '--model', path.join(runDir, 'model'), '--batch-size', '0', '--data', 'synthetic'], ['--batch-size', '0']);
cli('eval --seed x', () => ['eval', '--model', path.join(runDir, 'model'), '--seed', 'x', '--data', 'synthetic'], ['--seed', 'x']);
cli('compare --seeds 1,,2', ['compare', '--seeds', '1,,2', '--steps', '1'], ['--seeds']);
cli('compare --routers topq', () => ['compare', '--routers', 'topq', '--steps', '1', '--out', freshOut()], ['topq']);
cli('compare --seeds a', ['compare', '--seeds', 'a', '--steps', '1'], ['--seeds', 'a']);

// vmoe bridge.
const FIX = path.join(__dirname, '..', 'test', 'vmoe', 'fixtures');
const vcfg = path.join(FIX, 'configs', 'topk1-cf1.json');
const withCfg = (edit: (c: Record<string, unknown>) => void, name: string) => {
  const c = JSON.parse(fs.readFileSync(vcfg, 'utf8'));
  edit(c);
  return file(`vcfg/${name}.json`, JSON.stringify(c));
};
const imp = (name: string, args: () => string[], mentions: string[]) => cli(`import-vmoe ${name}`, () => ['import-vmoe', ...args()], mentions);
imp('checkpoint missing', () => [path.join(tmp, 'nockpt'), '--config', vcfg, '--out', freshOut()], ['nockpt']);
imp('.msgpack is a folder', () => [dir('d.msgpack'), '--config', vcfg, '--out', freshOut()], ['<checkpoint>', 'd.msgpack']);
imp('.npz is a folder', () => [dir('d.npz'), '--config', vcfg, '--out', freshOut()], ['<checkpoint>', 'd.npz']);
imp('prefix is a folder', () => [path.join(FIX, 'v1'), '--config', vcfg, '--out', freshOut()], ['<checkpoint>', 'v1']);
imp('--config a folder', () => [path.join(FIX, 'params.npz'), '--config', dir('vcfgdir'), '--out', freshOut()], ['--config', 'vcfgdir']);
imp('--config missing', () => [path.join(FIX, 'params.npz'), '--config', path.join(tmp, 'nocfg.json'), '--out', freshOut()], ['--config', 'nocfg.json']);
imp('--config malformed', () => [path.join(FIX, 'params.npz'), '--config', file('vbad.json', '{'), '--out', freshOut()], ['vbad.json']);
imp('--out non-empty', () => {
  const d = dir('vout-nonempty');
  fs.writeFileSync(path.join(d, 'a'), 'a');
  return [path.join(FIX, 'params.npz'), '--config', vcfg, '--out', d];
}, ['--out', 'vout-nonempty']);
imp('--out a file', () => [path.join(FIX, 'params.npz'), '--config', vcfg, '--out', file('vout-file', 'x')], ['--out', 'vout-file']);
imp('--image-size 0', () => [path.join(FIX, 'params.npz'), '--config', vcfg, '--out', freshOut(), '--image-size', '0'], ['--image-size', '0']);
imp('truncated .msgpack', () => {
  const b = fs.readFileSync(path.join(FIX, 'params.msgpack'));
  return [file('cut.msgpack', b.subarray(0, b.length - 50)), '--config', vcfg, '--out', freshOut()];
}, ['cut.msgpack']);
imp('garbage .npz', () => [file('garbage.npz', 'PK not really'), '--config', vcfg, '--out', freshOut()], ['garbage.npz']);
imp('unsupported router', () => [path.join(FIX, 'params.npz'), '--config', withCfg((c) => {
  (c as {encoder: {moe: {router: {name: string}}}}).encoder.moe.router.name = 'NoisyTopItemsPerExpertRouter';
}, 'router'), '--out', freshOut()], ['router.name', 'NoisyTopItemsPerExpertRouter']);
imp('unsupported field', () => [path.join(FIX, 'params.npz'), '--config', withCfg((c) => {
  (c as {encoder: Record<string, unknown>}).encoder.foo = 3;
}, 'field'), '--out', freshOut()], ['encoder.foo', '3']);
imp('config shape mismatch', () => [path.join(FIX, 'params.npz'), '--config', withCfg((c) => {
  (c as {encoder: Record<string, unknown>}).encoder.mlp_dim = 16;
}, 'shape'), '--out', freshOut()], ['Dense_0/kernel', '16']);
imp('num_classes -1', () => [path.join(FIX, 'params.npz'), '--config', withCfg((c) => {
  c.num_classes = -1;
}, 'classes'), '--out', freshOut()], ['num_classes', '-1']);
imp('missing shard', () => {
  const d = dir('vmissing');
  for (const f of fs.readdirSync(path.join(FIX, 'v1'))) if (!f.includes('00001')) fs.copyFileSync(path.join(FIX, 'v1', f), path.join(d, f));
  return [path.join(d, 'ckpt'), '--config', vcfg, '--out', freshOut()];
}, ['data-00001-of-00003']);
const exp = (name: string, args: () => string[], mentions: string[]) => cli(`export-vmoe ${name}`, () => ['export-vmoe', ...args()], mentions);
exp('--model missing', () => ['--model', path.join(tmp, 'nomodel'), '--out', path.join(freshOut(), 'ckpt')], ['nomodel']);
exp('--model a file', () => ['--model', file('exp-model-file', 'x'), '--out', path.join(freshOut(), 'ckpt')], ['exp-model-file']);
exp('--out a folder', () => ['--model', path.join(runDir, 'model'), '--out', dir('exp-folder')], ['--out', 'exp-folder']);
exp('--shards 0', () => ['--model', path.join(runDir, 'model'), '--out', path.join(freshOut(), 'ckpt'), '--shards', '0'], ['--shards', '0']);
exp('--shards x', () => ['--model', path.join(runDir, 'model'), '--out', path.join(freshOut(), 'ckpt'), '--shards', 'x'], ['--shards', 'x']);
exp('erf GELU model', () => ['--model', path.join(runDir, 'model'), '--out', path.join(freshOut(), 'ckpt')], ['activation']);

// ---------------------------------------------------------------- running
const STACK = /^\s+at /m;

async function runCase(c: Case): Promise<{outcome: Outcome; detail: string}> {
  if (c.cli) {
    const args = (await c.run()) as string[];
    const err: string[] = [];
    const origError = console.error;
    const origLog = console.log;
    const origWrite = process.stderr.write.bind(process.stderr);
    console.error = (...a: unknown[]) => void err.push(a.map((x) => (x instanceof Error ? x.stack ?? String(x) : String(x))).join(' '));
    console.log = () => undefined;
    process.stderr.write = ((chunk: unknown) => {
      const line = String(chunk).trim();
      if (line) err.push(line);
      return true;
    }) as typeof process.stderr.write;
    let code: number;
    try {
      code = await main(args);
    } catch (e) {
      code = -1;
      err.push((e as Error).stack ?? String(e));
    } finally {
      console.error = origError;
      console.log = origLog;
      process.stderr.write = origWrite;
    }
    const text = err.join('\n');
    if (code === 0 && c.fallbackOk && c.mentions.every((m) => names(text, m)) && !STACK.test(text)) {
      return {outcome: 'clear', detail: `exit 0 after: ${text.split('\n')[0]}`};
    }
    if (code === 0) return {outcome: 'silent-wrong', detail: `exit 0${text ? `; stderr: ${text.slice(0, 400)}` : ''}`};
    const oneLine = err.length >= 1 && !STACK.test(text) && code > 0;
    const last = err[err.length - 1] ?? '';
    const named = c.mentions.every((m) => names(text, m));
    // Resume fallbacks print a note line before the error; the error itself must be one line.
    return {outcome: oneLine && named ? 'clear' : 'unclear', detail: `exit ${code}: ${last.split('\n')[0].slice(0, 300)}${STACK.test(text) ? ' [stack trace]' : ''}`};
  }
  try {
    const r = await c.run();
    if (typeof r === 'string') return {outcome: 'silent-wrong', detail: r};
    return {outcome: 'silent-wrong', detail: 'no error'};
  } catch (e) {
    const msg = (e as Error)?.message ?? String(e);
    const typed = e instanceof TfjsMoeError;
    const named = c.mentions.every((m) => names(msg, m));
    return {outcome: typed && named ? 'clear' : 'unclear', detail: `${(e as Error)?.name ?? typeof e}: ${msg.split('\n')[0].slice(0, 300)}`};
  }
}

async function prepareRun(): Promise<void> {
  // One small finished run (erf GELU, topk) for the damaged-file, eval and export cases.
  runDir = path.join(tmp, 'good-run');
  const code = await main(['train', '--router', 'topk', '--data', 'synthetic', '--steps', '2', '--batch-size', '8', '--experts', '2', '--checkpoint-every', '1', '--quiet', '--no-report', '--out', runDir]);
  if (code !== 0) throw new Error('could not train the reference run');
}

async function probe(): Promise<void> {
  await tf.setBackend('cpu');
  if (tf.getBackend() !== 'cpu') throw new Error('cpu backend not active');
  const origWarn = console.warn;
  console.warn = () => undefined;
  const started = Date.now();
  await prepareRun();
  const results: Array<Case & {outcome: Outcome; detail: string}> = [];
  const only = process.argv[2];
  for (const c of cases) {
    if (only && !`${c.area} ${c.name}`.includes(only)) continue;
    results.push({...c, ...(await runCase(c))});
  }
  console.warn = origWarn;
  const areas = [...new Set(results.map((r) => r.area))];
  const count = (rs: typeof results, o: Outcome) => rs.filter((r) => r.outcome === o).length;
  console.log('| area | cases | clear | unclear | silent-wrong |');
  console.log('|---|---|---|---|---|');
  for (const a of [...areas, 'all']) {
    const rs = a === 'all' ? results : results.filter((r) => r.area === a);
    console.log(`| ${a} | ${rs.length} | ${count(rs, 'clear')} | ${count(rs, 'unclear')} | ${count(rs, 'silent-wrong')} |`);
  }
  const bad = results.filter((r) => r.outcome !== 'clear');
  if (bad.length) {
    console.log('\nnot clear:');
    for (const r of bad) console.log(`- [${r.outcome}] ${r.area}: ${r.name} -> ${r.detail}`);
  }
  console.log(`\n${results.length} cases in ${((Date.now() - started) / 1000).toFixed(0)} s (backend ${tf.getBackend()})`);
  fs.rmSync(tmp, {recursive: true, force: true});
  process.exitCode = bad.length ? 1 : 0;
}

void probe();
