/** A terminal progress bar for training: step, loss, accuracy, load balance, speed and ETA. */
import type {StepRecord} from '../train/trainer';

/** Where the bar writes (a TTY redraws one line; anything else gets one line per update). */
export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/**
 * Formats one progress line for a logged step.
 *
 * @example
 * ```ts
 * formatProgress(record, 500, 12.5); // '[#####...............]  100/500 loss 1.234 acc 0.567 bal 1.12 drop 0.8% | 412 img/s ETA 1m05s'
 * ```
 */
export function formatProgress(r: StepRecord, totalSteps: number, etaSeconds: number, width = 20): string {
  const filled = Math.round((width * r.step) / totalSteps);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
  const layers = Object.values(r.balance);
  const bal = layers.length ? ` bal ${Math.max(...layers.map((s) => s.maxOverMean)).toFixed(2)} drop ${(100 * Math.max(...layers.map((s) => s.droppedFraction))).toFixed(1)}%` : '';
  const steps = `${String(r.step).padStart(String(totalSteps).length)}/${totalSteps}`;
  return `${bar} ${steps} loss ${r.loss.toFixed(3)} acc ${r.accuracy.toFixed(3)}${bal} | ${Math.round(r.imagesPerSecond)} img/s ETA ${duration(etaSeconds)}`;
}

/**
 * A progress bar fed with {@link StepRecord}s. `bal` is the largest max/mean load over the MoE
 * layers, `drop` the largest dropped fraction.
 *
 * @example
 * ```ts
 * const bar = new ProgressBar(totalSteps);
 * await train({..., onLog: (r) => bar.update(r)});
 * bar.done();
 * ```
 */
export class ProgressBar {
  /** The first logged step and when it was logged: the ETA's rate is measured from there. */
  private anchor: {step: number; ms: number} | null = null;

  /**
   * @param totalSteps the run's last step
   * @param stream where the bar writes (default stderr)
   * @param now the clock, in ms (default `performance.now`)
   */
  constructor(
    private readonly totalSteps: number,
    private readonly stream: ProgressStream = process.stderr,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Redraws the bar for a newly logged step. The ETA is the time per step since the first logged
   * step times the steps left, so the first steps' warm-up (compiling kernels, building the model)
   * does not inflate it; the first line says `ETA ?`.
   */
  update(r: StepRecord): void {
    const ms = this.now();
    if (this.anchor === null) this.anchor = {step: r.step, ms};
    const done = r.step - this.anchor.step;
    const eta = done > 0 ? ((ms - this.anchor.ms) / 1000 / done) * (this.totalSteps - r.step) : NaN;
    const line = formatProgress(r, this.totalSteps, eta);
    if (this.stream.isTTY) this.stream.write(`\r${line.slice(0, (this.stream.columns ?? 120) - 1)}\x1b[K`);
    else this.stream.write(`${line}\n`);
  }

  /** Prints a message on its own line (keeps the bar intact on a TTY). */
  message(text: string): void {
    this.stream.write(this.stream.isTTY ? `\r\x1b[K${text}\n` : `${text}\n`);
  }

  /** Ends the bar's line. */
  done(): void {
    if (this.stream.isTTY) this.stream.write('\n');
  }
}
