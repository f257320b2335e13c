/** Rebuilds a solver object from its `{className, config}` form (`solver.getConfig()`). */
import {InvalidArgumentError} from '../../core/errors';
import {checkOptions} from '../../core/options';
import {AdamSolver, type AdamSolverConfig} from './adam';
import {AlternatingSolver, type AlternatingSolverConfig} from './alternating';
import {NewtonSolver, type NewtonSolverConfig} from './newton';
import {SinkhornSolver, type SinkhornSolverConfig} from './sinkhorn';
import {SOLVER_CLASS_NAMES, type SparseOTSolver} from './solver';

/**
 * The solver described by `{className, config}` (as written by `solver.getConfig()`; the
 * class names `'AdamSolver'`, `'NewtonSolver'`, `'AlternatingSolver'`, `'SinkhornSolver'`, or
 * the short names `'adam'`, `'newton'`, `'alternating'`, `'sinkhorn'`).
 *
 * @throws InvalidArgumentError for an unknown class name; the solver's own errors for its config.
 *
 * @example
 * ```ts
 * const same = solverFromConfig(newton({maxIterations: 50}).getConfig());
 * ```
 */
export function solverFromConfig(spec: {className: string; config?: Record<string, unknown>}): SparseOTSolver {
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) {
    throw new InvalidArgumentError('spec', 'an object {className, config?}', spec, 'solverFromConfig');
  }
  checkOptions(spec, ['className', 'config'], 'solverFromConfig');
  const config = spec.config ?? {};
  const make = SOLVERS[spec?.className];
  if (!make) {
    throw new InvalidArgumentError('className', "one of 'AdamSolver', 'NewtonSolver', 'AlternatingSolver', 'SinkhornSolver'", spec?.className, 'solverFromConfig');
  }
  return make(config);
}

const SOLVERS: Record<string, (config: Record<string, unknown>) => SparseOTSolver> = {
  AdamSolver: (c) => new AdamSolver(c as AdamSolverConfig),
  NewtonSolver: (c) => new NewtonSolver(c as NewtonSolverConfig),
  AlternatingSolver: (c) => new AlternatingSolver(c as AlternatingSolverConfig),
  SinkhornSolver: (c) => new SinkhornSolver(c as SinkhornSolverConfig),
};
for (const [kind, className] of Object.entries(SOLVER_CLASS_NAMES)) SOLVERS[kind] = SOLVERS[className];
