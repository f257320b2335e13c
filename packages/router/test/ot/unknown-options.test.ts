/**
 * Issue 13 item 1: every public options object of the OT core rejects keys it does not know
 * (a misspelt setting is an error naming the key and the nearest known one, never ignored), and
 * the well-spelt options still run.
 */
import * as tf from '@tensorflow/tfjs';
import {InvalidArgumentError} from '../../src/core/errors';
import {UnknownOptionError} from '../../src/core/options';
import {
  alternating, conjugateGradient, implicitSolve, kSparseSimplexProjection, sinkhorn, solverFromConfig, solveSparseOT,
  sparseOTPlanVJP, sparseOTProblem, sparsemax, unrolledSparseOT,
} from '../../src/ot';

/** The error `run` throws (fails the test when it throws none). */
function thrown(run: () => unknown): Error {
  try {
    run();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error, got none');
}

describe('OT options objects reject unknown keys', () => {
  const cost = tf.tensor2d([[0.1, 0.9], [0.4, 0.2], [0.7, 0.3], [0.5, 0.6]]);
  afterAll(() => cost.dispose());

  const cases: Array<[string, () => unknown, string, string, string | undefined]> = [
    // [name, call, context in the message, bad key, suggested key]
    ['solveSparseOT', () => solveSparseOT(cost, {k: 2, gama: 1} as never), 'solveSparseOT', 'gama', 'gamma'],
    ['solveSparseOT init', () => solveSparseOT(cost, {k: 2, init: {betta: tf.zeros([2])}} as never), 'solveSparseOT.init', 'betta', 'beta'],
    ['sparseOTProblem', () => sparseOTProblem(cost, {k: 2, sparsty: 'row'} as never), 'sparseOTProblem', 'sparsty', 'sparsity'],
    ['sparseOTProblem (a solver setting)', () => sparseOTProblem(cost, {k: 2, solver: 'newton'} as never), 'sparseOTProblem', 'solver', undefined],
    ['sinkhorn', () => sinkhorn(cost, {epsilom: 0.1} as never), 'sinkhorn', 'epsilom', 'epsilon'],
    ['sinkhorn init', () => sinkhorn(cost, {init: {ff: tf.zeros([4])}} as never), 'sinkhorn.init', 'ff', 'f'],
    ['implicitSolve', () => implicitSolve(cost, {k: 2}, alternating(), {spce: 'tokens'} as never), 'sparseOTPlan', 'spce', 'space'],
    ['implicitSolve spec', () => implicitSolve(cost, {k: 2, gammma: 1} as never, alternating()), 'sparseOTPlan', 'gammma', 'gamma'],
    ['solver.solve init', () => {
      const problem = sparseOTProblem(cost, {k: 2});
      try {
        return alternating().solve(problem, {alfa: tf.zeros([4])} as never);
      } finally {
        problem.dispose();
      }
    }, 'sparseOTProblem.init', 'alfa', 'alpha'],
    ['unrolledSparseOT', () => unrolledSparseOT(cost, {k: 2, iteration: 3} as never), 'unrolledSparseOT', 'iteration', 'iterations'],
    ['sparseOTPlanVJP', () => sparseOTPlanVJP(cost, cost, {gamm: 1} as never), 'sparseOTPlanVJP', 'gamm', 'gamma'],
    ['kSparseSimplexProjection', () => kSparseSimplexProjection(cost, 1, {axes: 0} as never), 'kSparseSimplexProjection', 'axes', 'axis'],
    ['sparsemax', () => sparsemax(cost, {raduis: 2} as never), 'sparsemax', 'raduis', 'radius'],
    ['conjugateGradient', () => conjugateGradient((v) => v.clone(), tf.ones([1, 2]) as tf.Tensor2D, {iterations: 2, tol: 1} as never),
      'conjugateGradient', 'tol', 'tolerance'],
    ['solverFromConfig', () => solverFromConfig({className: 'NewtonSolver', configs: {}} as never), 'solverFromConfig', 'configs', 'config'],
  ];

  it.each(cases)('%s', (_name, run, context, key, suggestion) => {
    const before = tf.memory().numTensors;
    const e = thrown(() => tf.tidy(() => void run())) as UnknownOptionError;
    expect(e).toBeInstanceOf(UnknownOptionError);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.key).toBe(key);
    expect(e.suggestion).toBe(suggestion);
    expect(e.message.startsWith(`${context}: Unknown option '${key}'`)).toBe(true);
    expect(tf.memory().numTensors).toBe(before); // the tidy scope takes the arguments; the call leaks nothing

  });

  it('a non-object init is an InvalidArgumentError naming init', () => {
    expect(() => solveSparseOT(cost, {k: 2, init: 5} as never)).toThrow("solveSparseOT: Expected init to be an object {alpha?, beta?}, but got 5.");
    expect(() => sinkhorn(cost, {init: 'f'} as never)).toThrow('sinkhorn: Expected init to be an object {f?, g?}, but got "f".');
  });

  it('every documented key is still accepted (a full solveSparseOT options object runs)', () => {
    const r = solveSparseOT(cost, {
      k: 2, gamma: 1, a: 1, b: 2, sparsity: 'column', formulation: 'semidual', solver: 'newton', learningRate: 1e-2,
      maxIterations: 5, tolerance: 1e-5, init: {beta: tf.zeros([2])}, cgIterations: 4, checkEvery: 1, hostReads: true,
    });
    expect(r.converged || r.iterations === 5).toBe(true);
    expect(r.plan.shape).toEqual([4, 2]);
    r.dispose();
    const s = sinkhorn(cost, {epsilon: 0.1, a: 1, b: 2, maxIterations: 5, tolerance: 1e-4, checkEvery: 1, hostReads: true, init: {f: tf.zeros([4])}});
    expect(s.plan.shape).toEqual([4, 2]);
    s.dispose();
  });
});
