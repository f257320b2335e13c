/**
 * Tests of setupBackend: 'auto' falls back tfjs-node -> wasm -> cpu and says why; a named
 * backend is active afterwards or a typed error is thrown (never a silent stay on cpu); WebGPU in
 * Node through Dawn (skipped loudly where Dawn finds no adapter).
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError} from '@tfjs-moe/router';
import {
  BackendUnavailableError,
  TFJS_NODE_PACKAGES,
  releaseWebGPU,
  setupBackend,
} from '../src/backend';

/** Whether a tfjs-node build is installed in this checkout (it is an optional dependency). */
function installed(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}
const tfjsNodePackage = TFJS_NODE_PACKAGES.find(installed);

/** A loader that reports every tfjs-node package as missing, the way Node's require does. */
function withoutTfjsNode(id: string): unknown {
  if ((TFJS_NODE_PACKAGES as readonly string[]).includes(id)) {
    const err = new Error(`Cannot find module '${id}'`) as Error & {code: string};
    err.code = 'MODULE_NOT_FOUND';
    throw err;
  }
  return require(id);
}

afterAll(async () => {
  await releaseWebGPU();
});

describe('setupBackend: auto', () => {
  test('without tfjs-node, auto picks wasm and records why tensorflow was skipped', async () => {
    const lines: string[] = [];
    const setup = await setupBackend('auto', {load: withoutTfjsNode, log: (m) => lines.push(m)});
    expect(setup.backend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(setup.package).toBe('@tensorflow/tfjs-backend-wasm');
    expect(setup.attempts).toEqual([
      {backend: 'tensorflow', package: '@tensorflow/tfjs-node-gpu', error: '@tensorflow/tfjs-node-gpu is not installed'},
      {backend: 'tensorflow', package: '@tensorflow/tfjs-node', error: '@tensorflow/tfjs-node is not installed'},
      {backend: 'wasm', package: '@tensorflow/tfjs-backend-wasm'},
    ]);
    expect(lines[0]).toMatch(/^tfjs-node is not available .*; trying wasm$/);
    // The backend really computes: [1,2;3,4] @ [1,1]^T = [3, 7].
    const y = tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[1], [1]]));
    expect(Array.from(await y.data())).toEqual([3, 7]);
    y.dispose();
  });

  test('auto uses the real module resolution: tfjs-node when installed, wasm here otherwise', async () => {
    const setup = await setupBackend('auto');
    expect(setup.backend).toBe(tf.getBackend());
    expect(setup.backend).toBe(tfjsNodePackage ? 'tensorflow' : 'wasm');
  });

  test('a tfjs-node package that is installed but broken is reported, not mistaken for missing', async () => {
    const load = (id: string): unknown => {
      if (id === '@tensorflow/tfjs-node-gpu') throw new Error('libcudart.so.11.0: cannot open shared object file');
      return withoutTfjsNode(id);
    };
    const setup = await setupBackend('auto', {load});
    expect(setup.backend).toBe('wasm');
    expect(setup.attempts[0]).toEqual({
      backend: 'tensorflow',
      package: '@tensorflow/tfjs-node-gpu',
      error: '@tensorflow/tfjs-node-gpu failed to load: libcudart.so.11.0: cannot open shared object file',
    });
  });
});

describe('setupBackend: named backends', () => {
  test.each(['cpu', 'wasm'] as const)('%s is active afterwards', async (name) => {
    await setupBackend(name === 'cpu' ? 'wasm' : 'cpu'); // start from the other one
    const setup = await setupBackend(name);
    expect(setup.backend).toBe(name);
    expect(tf.getBackend()).toBe(name);
    expect(setup.attempts).toEqual([{backend: name, package: setup.package, error: undefined}]);
  });

  test('tensorflow without tfjs-node throws BackendUnavailableError and stays where it was', async () => {
    await setupBackend('cpu');
    const p = setupBackend('tensorflow', {load: withoutTfjsNode});
    await expect(p).rejects.toThrow(BackendUnavailableError);
    await expect(setupBackend('tensorflow', {load: withoutTfjsNode})).rejects.toThrow(
      "Backend 'tensorflow' is not available: none of @tensorflow/tfjs-node-gpu, @tensorflow/tfjs-node is installed " +
        '(npm install @tensorflow/tfjs-node@4.22.0)',
    );
    expect(tf.getBackend()).toBe('cpu');
  });

  test('tensorflow when a tfjs-node module loads but registers no backend names the cause', async () => {
    const load = (id: string): unknown => ((TFJS_NODE_PACKAGES as readonly string[]).includes(id) ? {} : require(id));
    await expect(setupBackend('tensorflow', {load})).rejects.toThrow(
      "Backend 'tensorflow' is not available: no 'tensorflow' backend is registered with @tensorflow/tfjs 4.22.0 " +
        '(does @tensorflow/tfjs-node-gpu use a different copy of @tensorflow/tfjs than 4.22.0?)',
    );
  });

  test('webgl in Node throws with a pointer to webgpu', async () => {
    await setupBackend('wasm');
    await expect(setupBackend('webgl')).rejects.toThrow(
      "Backend 'webgl' is not available: no 'webgl' backend is registered with @tensorflow/tfjs 4.22.0. " +
        "WebGL needs a browser; in Node use 'webgpu' (Dawn) for a GPU",
    );
    expect(tf.getBackend()).toBe('wasm');
  });

  test('a bad backend name throws InvalidArgumentError naming the argument and echoing the value', async () => {
    await expect(setupBackend('gpu' as never)).rejects.toThrow(InvalidArgumentError);
    await expect(setupBackend('gpu' as never)).rejects.toThrow(
      "setupBackend: Expected backend to be one of 'auto', 'tensorflow', 'wasm', 'cpu', 'webgpu', 'webgl', but got \"gpu\".",
    );
    await expect(setupBackend(3 as never)).rejects.toThrow('Expected backend to be one of');
  });

  test('a bad wasmThreads throws InvalidArgumentError', async () => {
    await expect(setupBackend('wasm', {wasmThreads: 0})).rejects.toThrow(
      'setupBackend: Expected wasmThreads to be a positive integer, but got 0.',
    );
  });
});

// Tests that need tfjs-node: skipped with a loud message where it is not installed.
if (tfjsNodePackage) {
  describe('setupBackend: tfjs-node', () => {
    test(`tensorflow is active through ${tfjsNodePackage}`, async () => {
      const setup = await setupBackend('tensorflow');
      expect(setup.backend).toBe('tensorflow');
      expect(tf.getBackend()).toBe('tensorflow');
      expect(setup.package).toBe(tfjsNodePackage);
    });
  });
} else {
  describe('setupBackend: tfjs-node', () => {
    beforeAll(() => {
      console.warn(
        `SKIPPED: tfjs-node tests: neither ${TFJS_NODE_PACKAGES.join(' nor ')} is installed ` +
          '(optional dependencies; npm install @tensorflow/tfjs-node@4.22.0 to run them)',
      );
    });
    test.skip('tensorflow is active through tfjs-node [SKIPPED: tfjs-node is not installed]', () => undefined);
  });
}

describe('setupBackend: webgpu in Node (Dawn)', () => {
  test('webgpu is active, multiplies and sums many tensors right, or the reason is reported', async () => {
    let setup;
    try {
      setup = await setupBackend('webgpu');
    } catch (e) {
      // Dawn may find no adapter (no GPU and no Mesa EGL/OpenGL): then the error must be typed
      // and say why; this is logged loudly, never a silent pass.
      expect(e).toBeInstanceOf(BackendUnavailableError);
      expect((e as Error).message).toMatch(/^Backend 'webgpu' is not available: /);
      console.warn(`SKIPPED: webgpu check: ${(e as Error).message}`);
      return;
    }
    expect(setup.backend).toBe('webgpu');
    expect(tf.getBackend()).toBe('webgpu');
    expect(setup.adapter).toBeDefined();
    // A 3x3 product by hand: [[1,2,3],[4,5,6],[7,8,9]] @ [[1,0,1],[0,1,0],[1,0,-1]]
    // row 1: [1+3, 2, 1-3] = [4, 2, -2]; row 2: [10, 5, -2]; row 3: [16, 8, -2].
    const a = tf.tensor2d([[1, 2, 3], [4, 5, 6], [7, 8, 9]]);
    const b = tf.tensor2d([[1, 0, 1], [0, 1, 0], [1, 0, -1]]);
    const y = tf.matMul(a, b);
    expect(Array.from(await y.data())).toEqual([4, 2, -2, 10, 5, -2, 16, 8, -2]);
    tf.dispose([a, b, y]);
    // tf.addN of more inputs than a shader may bind (stock tfjs-backend-webgpu 4.22 fails pipeline
    // validation past 7 and reads NaN): n tensors [i, 2i, -i] sum to [s, 2s, -s], s = n(n-1)/2, by
    // hand, for n on both sides of the chunk sizes (7, 8, 49, 50); no tensor is left behind.
    for (const n of [2, 7, 8, 34, 49, 50]) {
      const before = tf.memory().numTensors;
      const xs = Array.from({length: n}, (_, i) => tf.tensor1d([i, 2 * i, -i]));
      const sum = tf.addN(xs);
      const s = (n * (n - 1)) / 2;
      expect(Array.from(await sum.data())).toEqual([s, 2 * s, -s]);
      tf.dispose([...xs, sum]);
      expect(tf.memory().numTensors).toBe(before);
    }
    await releaseWebGPU();
    expect(tf.getBackend()).toBe('cpu');
  });
});
