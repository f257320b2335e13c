/**
 * Test-only reference: a ViT forward pass written with plain JavaScript loops in float64, from the
 * textbook definitions (Vaswani et al. 2017; Dosovitskiy et al. 2021), reading the weights of a
 * model built by `vit()`. It shares no code with the layers it checks.
 */
import * as tf from '@tensorflow/tfjs';

type Mat = number[][];

/** erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7). */
export function erf(x: number): number {
  const s = Math.sign(x);
  const ax = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * ax);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-ax * ax);
  return s * y;
}

const ACT: Record<string, (v: number) => number> = {
  gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
  relu: (v) => Math.max(0, v),
  linear: (v) => v,
};

function matmul(a: Mat, w: Mat, b?: number[]): Mat {
  return a.map((row) => w[0].map((_, j) => row.reduce((s, v, k) => s + v * w[k][j], b ? b[j] : 0)));
}

function layerNorm(x: Mat, gamma: number[], beta: number[], eps: number): Mat {
  return x.map((row) => {
    const mean = row.reduce((s, v) => s + v, 0) / row.length;
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / row.length;
    return row.map((v, j) => ((v - mean) / Math.sqrt(variance + eps)) * gamma[j] + beta[j]);
  });
}

function weightsOf(model: tf.LayersModel, name: string): any[] {
  return model.getLayer(name).getWeights().map((w) => w.arraySync());
}

/** Self-attention of one sequence `x [t, d]` with the layer's weights, heads by loops. */
export function attentionReference(x: Mat, w: any[], numHeads: number): Mat {
  const [wqkv, bqkv, wo, bo] = w as [Mat, number[], Mat, number[]];
  const d = x[0].length;
  const dh = d / numHeads;
  const qkv = matmul(x, wqkv, bqkv);
  const out: Mat = x.map(() => new Array(d).fill(0));
  for (let h = 0; h < numHeads; h++) {
    const q = qkv.map((r) => r.slice(h * dh, (h + 1) * dh));
    const k = qkv.map((r) => r.slice(d + h * dh, d + (h + 1) * dh));
    const v = qkv.map((r) => r.slice(2 * d + h * dh, 2 * d + (h + 1) * dh));
    for (let i = 0; i < x.length; i++) {
      const s = k.map((kj) => kj.reduce((acc, kv, c) => acc + kv * q[i][c], 0) / Math.sqrt(dh));
      const m = Math.max(...s);
      const e = s.map((v2) => Math.exp(v2 - m));
      const z = e.reduce((a, b) => a + b, 0);
      for (let c = 0; c < dh; c++) out[i][h * dh + c] = e.reduce((acc, ej, j) => acc + (ej / z) * v[j][c], 0);
    }
  }
  return matmul(out, wo, bo);
}

/** MLP of one sequence. */
export function mlpReference(x: Mat, w: any[], activation: string): Mat {
  const [w1, b1, w2, b2] = w as [Mat, number[], Mat, number[]];
  return matmul(matmul(x, w1, b1).map((r) => r.map(ACT[activation])), w2, b2);
}

export interface ReferenceOptions {
  patchSize: number;
  depth: number;
  numHeads: number;
  classifier: 'token' | 'gap';
  activation: string;
  headActivation: 'softmax' | 'linear';
  eps: number;
}

/**
 * Forward pass of one image `[H][W][C]` through `model` (built by `vit()`), in float64.
 * The patch of grid cell (gy, gx) is flattened in (row, column, channel) order.
 */
export function vitReference(model: tf.LayersModel, image: number[][][], o: ReferenceOptions): number[] {
  const p = o.patchSize;
  const [pk, pb] = weightsOf(model, 'patch_embedding') as [Mat, number[]];
  const patches: Mat = [];
  for (let gy = 0; gy < image.length / p; gy++) {
    for (let gx = 0; gx < image[0].length / p; gx++) {
      const flat: number[] = [];
      for (let r = 0; r < p; r++) for (let col = 0; col < p; col++) flat.push(...image[gy * p + r][gx * p + col]);
      patches.push(flat);
    }
  }
  let x = matmul(patches, pk, pb);
  if (o.classifier === 'token') x = [(weightsOf(model, 'class_token')[0] as number[][][])[0][0], ...x];
  const pos = (weightsOf(model, 'position_embedding')[0] as number[][][])[0];
  x = x.map((r, i) => r.map((v, j) => v + pos[i][j]));
  for (let i = 0; i < o.depth; i++) {
    const [g1, be1] = weightsOf(model, `block${i}_norm1`);
    const a = attentionReference(layerNorm(x, g1, be1, o.eps), weightsOf(model, `block${i}_attention`), o.numHeads);
    x = x.map((r, t) => r.map((v, j) => v + a[t][j]));
    const [g2, be2] = weightsOf(model, `block${i}_norm2`);
    const m = mlpReference(layerNorm(x, g2, be2, o.eps), weightsOf(model, `block${i}_mlp`), o.activation);
    x = x.map((r, t) => r.map((v, j) => v + m[t][j]));
  }
  const [gf, bf] = weightsOf(model, 'encoder_norm');
  x = layerNorm(x, gf, bf, o.eps);
  const pooled = o.classifier === 'token' ? x[0] : x[0].map((_, j) => x.reduce((s, r) => s + r[j], 0) / x.length);
  const [hk, hb] = weightsOf(model, 'head') as [Mat, number[]];
  const logits = matmul([pooled], hk, hb)[0];
  if (o.headActivation === 'linear') return logits;
  const m = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - m));
  const z = e.reduce((s, v) => s + v, 0);
  return e.map((v) => v / z);
}
