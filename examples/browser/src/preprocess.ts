/**
 * Turns a drawing into an MNIST-style input: white ink on black, the digit scaled to fit a
 * 20x20 box and centred by its centre of mass in a 28x28 image, values in [0, 1].
 */

/**
 * Converts grey levels `<[0,1]>[height*width]` of a drawing into `<[0,1]>[28*28]`.
 *
 * @example
 * ```ts
 * const img = toMnist(grey, 280, 280); // Float32Array(784)
 * ```
 */
export function toMnist(grey: Float32Array, width: number, height: number, size = 28, box = 20): Float32Array {
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (grey[y * width + x] > 0.05) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
  }
  const out = new Float32Array(size * size);
  if (x1 < 0) return out; // empty drawing
  const bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  const scale = box / Math.max(bw, bh);
  // Area-average the bounding box into a (bw*scale) x (bh*scale) patch.
  const pw = Math.max(1, Math.round(bw * scale)), ph = Math.max(1, Math.round(bh * scale));
  const patch = new Float32Array(pw * ph);
  for (let py = 0; py < ph; py++) {
    for (let px = 0; px < pw; px++) {
      const sx0 = x0 + Math.floor(px / scale), sx1 = Math.min(x1 + 1, x0 + Math.ceil((px + 1) / scale));
      const sy0 = y0 + Math.floor(py / scale), sy1 = Math.min(y1 + 1, y0 + Math.ceil((py + 1) / scale));
      let sum = 0, n = 0;
      for (let y = sy0; y < sy1; y++) for (let x = sx0; x < sx1; x++) { sum += grey[y * width + x]; n++; }
      patch[py * pw + px] = n ? sum / n : 0;
    }
  }
  // Centre of mass of the patch goes to the image centre.
  let m = 0, cx = 0, cy = 0;
  for (let py = 0; py < ph; py++) for (let px = 0; px < pw; px++) {
    const v = patch[py * pw + px]; m += v; cx += v * px; cy += v * py;
  }
  const offX = Math.round(size / 2 - (m ? cx / m : pw / 2) - 0.5);
  const offY = Math.round(size / 2 - (m ? cy / m : ph / 2) - 0.5);
  for (let py = 0; py < ph; py++) for (let px = 0; px < pw; px++) {
    const X = px + offX, Y = py + offY;
    if (X >= 0 && X < size && Y >= 0 && Y < size) out[Y * size + X] = Math.min(1, patch[py * pw + px]);
  }
  return out;
}
