/**
 * Cost of the routers' NaN/Infinity input check (issue 13 item 2): an MoE layer's forward pass
 * (top-k router, the one with no read of its own) with `setRouterInputChecks('never')` against
 * `'auto'` (on cpu and wasm the check runs: one `all(isFinite(logits))` and one flag read),
 * interleaved in one process so that machine load hits both alike; and the check alone
 * (its ops, `all(isFinite(logits))` and the flag read, on logits of the layer's shape, median of
 * 200 calls) against the
 * forward pass's median, which is the figure that survives a loaded machine.
 *
 * Run: npx tsx bench/router-input-checks.ts
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {moe, setRouterInputChecks} from '@tfjs-moe/router';

async function main(): Promise<void> {
  const configs = [
    {batch: 8, tokens: 64, d: 64, experts: 8, hidden: 128},
    {batch: 8, tokens: 197, d: 192, experts: 8, hidden: 384},
  ];
  const reps = 6;
  console.log('| backend | input [batch, tokens, d] | E | forward, no check (ms, median) | forward, check (ms, median) | difference | check alone (ms, median) | check / forward |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const backend of ['cpu', 'wasm']) {
    await tf.setBackend(backend);
    await tf.ready();
    if (tf.getBackend() !== backend) throw new Error(`backend ${backend} not active`);
    for (const c of configs) {
      const layer = moe({numExperts: c.experts, hiddenDim: c.hidden, router: 'topk', k: 2});
      const x = tf.randomNormal([c.batch, c.tokens, c.d], 0, 1, 'float32', 1);
      const run = (mode: 'never' | 'auto'): number => {
        setRouterInputChecks(mode);
        const t0 = performance.now();
        const y = layer.apply(x, {training: false}) as tf.Tensor;
        y.dataSync();
        const ms = performance.now() - t0;
        y.dispose();
        return ms;
      };
      run('never');
      run('auto');
      const off: number[] = [];
      const on: number[] = [];
      for (let r = 0; r < reps; r++) {
        if (r % 2) {
          off.push(run('never'));
          on.push(run('auto'));
        } else {
          on.push(run('auto'));
          off.push(run('never'));
        }
      }
      const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
      const a = med(off);
      const b = med(on);
      const logits = tf.randomNormal([c.batch, c.tokens, c.experts]);
      const alone: number[] = [];
      for (let r = 0; r < 200; r++) {
        const t0 = performance.now();
        // What the check does on finite input (routers/input-checks.ts, assertFiniteRouting).
        const flag = tf.tidy(() => tf.all(tf.isFinite(logits)));
        if (!flag.dataSync()[0]) throw new Error('non-finite logits');
        flag.dispose();
        alone.push(performance.now() - t0);
      }
      logits.dispose();
      const check = med(alone);
      console.log(`| ${backend} | [${c.batch}, ${c.tokens}, ${c.d}] | ${c.experts} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(((b - a) / a) * 100).toFixed(1)}% | ` +
        `${check.toFixed(3)} | ${((check / a) * 100).toFixed(2)}% |`);
      x.dispose();
      layer.dispose();
    }
  }
  setRouterInputChecks('auto');
}

void main();
