/**
 * What an MoE layer keeps from its last calls: the auxiliary loss of the last call (for
 * `addLoss`) and the routing metrics of the last training-mode and inference-mode calls that
 * computed them, as tensors, read back lazily (synchronously on first access, or asynchronously
 * with `read()`).
 */
import * as tf from '@tensorflow/tfjs';
import {metricsToValues, type RoutingMetrics, type RoutingMetricValues} from '../routers/routing-result';

type Mode = 'training' | 'inference';

/**
 * The last calls' auxiliary loss and metrics. It owns the tensors it holds.
 *
 * @example
 * ```ts
 * const last = new LastCall();
 * last.replace(aux, metrics, true); // after a training call
 * last.lastMetrics?.droppedFraction;
 * last.replace(null, null, null);   // frees everything
 * ```
 */
export class LastCall {
  private aux: tf.Scalar | null = null;
  private readonly byMode: Record<Mode, {tensors: RoutingMetrics | null; values: RoutingMetricValues | null}> = {
    training: {tensors: null, values: null},
    inference: {tensors: null, values: null},
  };
  /** Mode of the last call: true (training), false (inference), null before any call or after a reset. */
  training: boolean | null = null;
  /** Mode of the last call that kept metrics, null before any. */
  private metricsTraining: boolean | null = null;

  /**
   * Takes over the auxiliary loss and metrics of a call in mode `training` (freeing the ones of
   * the previous call in that mode); `training` null frees everything.
   */
  replace(aux: tf.Scalar | null, metrics: RoutingMetrics | null, training: boolean | null): void {
    if (this.aux) this.aux.dispose();
    this.aux = aux;
    const modes: Mode[] = training === null ? ['training', 'inference'] : [training ? 'training' : 'inference'];
    for (const mode of modes) {
      const slot = this.byMode[mode];
      if (slot.tensors) tf.dispose(Object.values(slot.tensors));
      slot.tensors = training === null ? null : metrics;
      slot.values = null;
    }
    this.training = training;
    this.metricsTraining = training;
  }

  /**
   * Takes over the auxiliary loss of a call in mode `training` that computed no metrics
   * (`computeMetrics` off): the metrics held from earlier calls stay, so that
   * {@link LastCall.lastMetrics} keeps the values of the last call that computed them.
   */
  replaceLossOnly(aux: tf.Scalar | null, training: boolean): void {
    if (this.aux) this.aux.dispose();
    this.aux = aux;
    this.training = training;
  }

  /** `<float32>[]`: the auxiliary loss of the last call, or null. */
  get auxiliaryLoss(): tf.Scalar | null {
    return this.aux;
  }

  /** The metrics of the last call in `mode` as plain values (read on first access), or null. */
  metricsOf(mode: Mode): RoutingMetricValues | null {
    const slot = this.byMode[mode];
    if (slot.values == null && slot.tensors != null) slot.values = metricsToValues(slot.tensors);
    return slot.values;
  }

  /** The metrics of the last call that computed metrics, whichever its mode, or null. */
  get lastMetrics(): RoutingMetricValues | null {
    return this.metricsTraining === null ? null : this.metricsOf(this.metricsTraining ? 'training' : 'inference');
  }

  /** Reads every held metric asynchronously, then returns {@link LastCall.lastMetrics}. */
  async read(): Promise<RoutingMetricValues | null> {
    for (const slot of Object.values(this.byMode)) {
      if (slot.tensors) await Promise.all(Object.values(slot.tensors).map((t) => t.data()));
    }
    return this.lastMetrics;
  }
}
