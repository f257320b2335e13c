/**
 * @tfjs-moe/router: mixture-of-experts routing for TensorFlow.js.
 */
export {
  TfjsMoeError,
  InvalidArgumentError,
  ShapeError,
  NonFiniteError,
  ConfigError,
} from './errors';
export type {Sparsity, Formulation, SolverName, MarginalLike, SparseOTOptions, SparseOTResult} from './ot/types';
