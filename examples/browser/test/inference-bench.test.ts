/**
 * The inference benchmark's FLOP count against hand arithmetic, and its bookkeeping (ratios,
 * rates, failures reported per model, no leaked tensors) on a tiny run on cpu and wasm.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import '@tfjs-moe/router'; // registers every router
import {describeBackends, expectNoLeaks, useBackend} from '../../../packages/router/test/helpers/backends';
import {forwardFlopsPerImage, formatInferenceTable, runInferenceBenchmark} from '../src/inference-bench';
import {webgpuSyncReadProblem} from '../src/sync-read-routers';
import {moeLayers, vmoe} from '@tfjs-moe/models';

describe('forwardFlopsPerImage', () => {
  test('mnist-tiny ViT at depth 4, by hand', () => {
    // 28x28x1, patch 7: 16 patches of 49 pixels, T = 17 tokens with the class token, d 64, MLP 128.
    const embed = 2 * 16 * 49 * 64; // 100352
    const attention = 2 * 17 * 64 * 192 + 2 * 17 * 17 * 64 * 2 + 2 * 17 * 64 * 64; // 417792 + 73984 + 139264 = 631040
    const mlp = 2 * 2 * 17 * 64 * 128; // 557056
    const head = 2 * 64 * 10; // 1280
    expect(embed + 4 * (attention + mlp) + head).toBe(4854016);
    expect(forwardFlopsPerImage({preset: 'mnist-tiny'})).toBe(4854016);
  });

  test('V-MoE: k experts of the MLP shape plus the router matMul in the MoE blocks', () => {
    const dense = forwardFlopsPerImage({preset: 'mnist-tiny', depth: 2});
    const router = 2 * 17 * 64 * 4; // [T, d] x [d, E]: 8704
    const mlp = 557056;
    // Top-1: the same FLOPs as the dense MLP per token, plus the router.
    expect(forwardFlopsPerImage({preset: 'mnist-tiny', depth: 2}, {numExperts: 4, moeBlocks: 1})).toBe(dense + router);
    // Top-2: two experts per token.
    expect(forwardFlopsPerImage({preset: 'mnist-tiny', depth: 2}, {numExperts: 4, k: 2, moeBlocks: 1})).toBe(dense + mlp + router);
  });
});

describe('webgpuSyncReadProblem', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });
  const layersOf = (router: unknown) => {
    const model = vmoe({preset: 'mnist-tiny', depth: 4, seed: 0, moe: {numExperts: 4, router: router as never}});
    const layers = moeLayers(model).map((l) => ({name: l.name, router: l.router}));
    model.dispose();
    return layers;
  };

  test('the sparse-OT and balancing Sinkhorn routers solve without sync reads on webgpu by default', () => {
    expect(webgpuSyncReadProblem(layersOf('sparse-ot'))).toBeUndefined();
    expect(webgpuSyncReadProblem(layersOf({name: 'sinkhorn', balanceInference: true}))).toBeUndefined();
  });

  test('names a router forced to host reads (hostReads: true) and its layers', () => {
    expect(webgpuSyncReadProblem(layersOf({name: 'sparse-ot', hostReads: true}))).toBe('the sparse-OT router with hostReads: true ' +
      '(in block1_moe, block3_moe) cannot run on webgpu: it reads values back synchronously, which tfjs-backend-webgpu cannot ' +
      'do here. Remove hostReads from its config, or pick wasm or webgl.');
    expect(webgpuSyncReadProblem(layersOf({name: 'sinkhorn', balanceInference: true, hostReads: true})))
      .toMatch(/^the Sinkhorn router with balanceInference and hostReads: true \(in block1_moe, block3_moe\) cannot run on webgpu/);
  });

  test('Sinkhorn without balancing, top-k and expert-choice never', () => {
    expect(webgpuSyncReadProblem(layersOf({name: 'sinkhorn', hostReads: true}))).toBeUndefined();
    expect(webgpuSyncReadProblem(layersOf({name: 'sparse-ot', hostReads: false}))).toBeUndefined();
    expect(webgpuSyncReadProblem(layersOf('sinkhorn'))).toBeUndefined();
    expect(webgpuSyncReadProblem(layersOf('topk'))).toBeUndefined();
    expect(webgpuSyncReadProblem(layersOf('expert-choice'))).toBeUndefined();
    expect(webgpuSyncReadProblem([])).toBeUndefined();
  });
});

describeBackends('runInferenceBenchmark', (backend) => {
  const options = {
    depth: 2, batches: [1, 2], reps: 1, warmup: 0, peakGflops: 1,
    models: [{label: 'vit'}, {label: 'topk', router: {name: 'topk', k: 1}}, {label: 'bad', router: 'no-such-router'}],
  };

  test('one cell per model and batch; dense ratio 1, rates consistent, failures reported', async () => {
    expect(tf.getBackend()).toBe(backend);
    const r = await runInferenceBenchmark(options);
    expect(r.backend).toBe(backend);
    expect(r.cells.map((c) => `${c.model}@${c.batch}`)).toEqual(['vit@1', 'vit@2', 'topk@1', 'topk@2', 'bad@1', 'bad@2']);
    for (const c of r.cells.filter((x) => x.model !== 'bad')) {
      expect(c.ms).toBeGreaterThan(0);
      expect(c.msPerImage).toBeCloseTo(c.ms / c.batch, 10);
      expect(c.imagesPerSecond).toBeCloseTo((1000 * c.batch) / c.ms, 8);
      // peakGflops 1: the fraction is the achieved GFLOP/s itself.
      expect(c.fractionOfPeak).toBeCloseTo((c.flopsPerImage * c.batch) / (c.ms * 1e6), 10);
      const dense = r.cells.find((x) => x.model === 'vit' && x.batch === c.batch)!;
      expect(c.ratioToDense).toBeCloseTo(c.ms / dense.ms, 10);
      expect(c.error).toBeUndefined();
    }
    for (const c of r.cells.filter((x) => x.model !== 'vit' && x.model !== 'bad')) expect(c.flopsPerImage).toBeGreaterThan(r.cells[0].flopsPerImage);
    const bad = r.cells.filter((x) => x.model === 'bad');
    for (const c of bad) {
      expect(Number.isNaN(c.ms)).toBe(true);
      expect(c.error).toMatch(/no-such-router/);
    }
    const table = formatInferenceTable([{where: 'Node', result: r}]);
    expect(table).toContain(`| Node | ${backend} | 1.0 | vit | 1 |`);
    expect(table).toContain(`| Node | ${backend} | 1.0 | bad | 2 | n/a | n/a | n/a | n/a |`);
    expect(table).toMatch(new RegExp(`- Node ${backend} bad: failed: .*no-such-router`));
  });

  test('saved models (url): loaded with loadModel, ratios against the first (dense) one, depth checked', async () => {
    const {vit, vmoe} = await import('@tfjs-moe/models');
    const built: Record<string, () => tf.LayersModel> = {
      'dense.json': () => vit({preset: 'mnist-tiny', depth: 2, seed: 1}),
      'moe.json': () => vmoe({preset: 'mnist-tiny', depth: 2, seed: 1, moe: {numExperts: 4, router: 'topk'}}),
      'deep.json': () => vit({preset: 'mnist-tiny', depth: 3, seed: 1}),
    };
    const loaded: string[] = [];
    const r = await runInferenceBenchmark({
      ...options, batches: [2],
      models: [{label: 'dense', url: 'dense.json'}, {label: 'moe', url: 'moe.json'}, {label: 'deep', url: 'deep.json'}],
      loadModel: async (url) => {
        loaded.push(url);
        return built[url]();
      },
    });
    expect(loaded).toEqual(['dense.json', 'moe.json', 'deep.json']);
    const [dense, moe, deep] = r.cells;
    expect(dense.ratioToDense).toBe(1);
    expect(moe.ratioToDense).toBeCloseTo(moe.ms / dense.ms, 10);
    // The loaded V-MoE's MoE layers are counted: 1 MoE block (of 2), 4 experts, top-1.
    expect(moe.flopsPerImage).toBe(dense.flopsPerImage + 2 * 17 * 64 * 4);
    expect(deep.error).toBe('the model at deep.json has 3 encoder blocks, but the benchmark\'s depth is 2');
    await expect(runInferenceBenchmark({...options, batches: [1], models: [{label: 'moe-first', url: 'moe.json'}],
      loadModel: async (url) => built[url]()})).resolves.toMatchObject({cells: [{error: 'the first model must be dense, but moe-first has 1 MoE layers'}]});
  });

  test('the first model must be the dense ViT', async () => {
    await expect(runInferenceBenchmark({...options, models: [{label: 'topk', router: 'topk'}]}))
      .rejects.toThrow('runInferenceBenchmark: the first model must be the dense ViT (no router)');
  });

  test('no leaked tensors', async () => {
    await expectNoLeaks(() => runInferenceBenchmark({...options, batches: [1], models: options.models.slice(0, 2)}), 3);
  });
});
