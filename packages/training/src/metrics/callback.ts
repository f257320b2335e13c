/** Load-balance measurement as a tfjs callback, for a plain `model.fit`. */
import * as tf from '@tensorflow/tfjs';
import {mergeStats, type LoadBalanceStats} from './load-balance';
import {readLayerStats} from './moe-layers';
import {probeRouting} from './probe';

/** Options of {@link LoadBalanceCallback}. */
export interface LoadBalanceCallbackOptions {
  /** Read the MoE layers' metrics every this many batches (each read syncs once). Default 10. */
  everyBatches?: number;
  /**
   * Images and labels routed at the end of every epoch for per-token measurements (class x
   * expert counts, router entropy): `xs <float32>[n, h, w, c]`, `ys <int32>[n]`.
   */
  probe?: {xs: tf.Tensor; ys: tf.Tensor1D; numClasses: number};
  /** Called with each epoch's statistics. */
  onEpoch?: (epoch: number, stats: Record<string, LoadBalanceStats>) => void;
}

/**
 * A `tf.Callback` that measures the load balance of every MoE layer during `model.fit`: it
 * samples each layer's routing metrics every `everyBatches` batches, averages them per epoch,
 * adds per-token measurements on a probe set if given, and writes `<layer>/maxOverMean`,
 * `<layer>/cv` and `<layer>/droppedFraction` into the epoch logs (so `History` records them).
 *
 * @example
 * ```ts
 * const balance = new LoadBalanceCallback({probe: {xs, ys, numClasses: 10}});
 * await model.fit(xs, ysOneHot, {epochs: 2, callbacks: [balance]});
 * balance.epochs[1]['block1_moe'].maxOverMean;
 * ```
 */
export class LoadBalanceCallback extends tf.Callback {
  /** Statistics per epoch: `epochs[e][layerName]`. */
  readonly epochs: Array<Record<string, LoadBalanceStats>> = [];
  private readonly options: LoadBalanceCallbackOptions;
  private samples: Record<string, LoadBalanceStats[]> = {};

  constructor(options: LoadBalanceCallbackOptions = {}) {
    super();
    this.options = options;
  }

  override async onEpochBegin(): Promise<void> {
    this.samples = {};
  }

  override async onBatchEnd(batch: number): Promise<void> {
    const every = this.options.everyBatches ?? 10;
    if (batch % every !== 0) return;
    for (const [name, s] of Object.entries(readLayerStats(this.model, 'training'))) (this.samples[name] ??= []).push(s);
  }

  override async onEpochEnd(epoch: number, logs?: tf.Logs): Promise<void> {
    const stats: Record<string, LoadBalanceStats> = {};
    for (const [name, list] of Object.entries(this.samples)) stats[name] = mergeStats(list);
    const probe = this.options.probe;
    if (probe) {
      for (const [name, s] of Object.entries(probeRouting(this.model, probe.xs, probe.ys, probe.numClasses))) {
        stats[name] = stats[name]
          ? {...stats[name], classExpert: s.classExpert, routerEntropy: s.routerEntropy, normalizedEntropy: s.normalizedEntropy, expertsPerTokenHistogram: s.expertsPerTokenHistogram}
          : s;
      }
    }
    this.epochs.push(stats);
    if (logs) {
      for (const [name, s] of Object.entries(stats)) {
        logs[`${name}/maxOverMean`] = s.maxOverMean;
        logs[`${name}/cv`] = s.cv;
        logs[`${name}/droppedFraction`] = s.droppedFraction;
      }
    }
    this.options.onEpoch?.(epoch, stats);
  }
}
