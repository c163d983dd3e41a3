// Any digit picture -> a 28x28 MNIST-style digit: a line-by-line port of digits.py, which says why each step
// exists. The two must give the same bytes (tests compare them), so every step is integer arithmetic or IEEE
// double arithmetic in the same order as there, and rounding is Math.floor(v + 0.5) in both.
// Runs in the browser page and in Node; needs nothing else.

export const INK_CONTRAST = 40;
export const BOX = 20;

export class NoInk extends Error {}

// rgba: Uint8ClampedArray/Uint8Array of H*W*4 (what canvas getImageData gives); returns Uint8Array(h*w).
export function prepare(rgba, H, W, height = 28, width = 28) {
  const gray = grayscale(rgba, H, W);
  const ink = inkMap(gray, H, W);
  let max = 0;
  for (const v of ink) if (v > max) max = v;
  let top = H, bottom = -1, left = W, right = -1;
  for (let r = 0; r < H; r++) {
    for (let c = 0; c < W; c++) {
      if (5 * ink[r * W + c] > max) {
        top = Math.min(top, r); bottom = Math.max(bottom, r);
        left = Math.min(left, c); right = Math.max(right, c);
      }
    }
  }
  const ch = bottom - top + 1, cw = right - left + 1;
  const crop = [];
  for (let r = 0; r < ch; r++) {
    const row = new Float64Array(cw);
    for (let c = 0; c < cw; c++) row[c] = ink[(top + r) * W + left + c] * (255 / max);
    crop.push(row);
  }
  const longest = Math.max(ch, cw);
  const outH = Math.max(1, Math.floor((ch * BOX * 2 + longest) / (2 * longest)));
  const outW = Math.max(1, Math.floor((cw * BOX * 2 + longest) / (2 * longest)));
  const wide = crop.map((row) => resampleLine(row, outW));
  const boxed = [];
  for (let r = 0; r < outH; r++) boxed.push(new Float64Array(outW));
  for (let c = 0; c < outW; c++) {
    const column = resampleLine(Float64Array.from(wide, (row) => row[c]), outH);
    for (let r = 0; r < outH; r++) boxed[r][c] = column[r];
  }
  return centreByMass(boxed, height, width);
}

export function grayscale(rgba, H, W) {
  const gray = new Int32Array(H * W);
  for (let i = 0; i < H * W; i++) {
    const a = rgba[4 * i + 3];
    const ch = (k) => Math.floor((rgba[4 * i + k] * a + 255 * (255 - a) + 127) / 255);
    gray[i] = Math.floor((ch(0) * 299 + ch(1) * 587 + ch(2) * 114 + 500) / 1000);
  }
  return gray;
}

export function inkMap(gray, H, W) {
  const border = [];
  for (let c = 0; c < W; c++) border.push(gray[c]);
  for (let c = 0; c < W; c++) border.push(gray[(H - 1) * W + c]);
  for (let r = 0; r < H; r++) border.push(gray[r * W]);
  for (let r = 0; r < H; r++) border.push(gray[r * W + W - 1]);
  border.sort((a, b) => a - b);
  const middle = Math.floor(border.length / 2);
  const background2 = border.length % 2 ? border[middle] * 2 : border[middle - 1] + border[middle];
  let lo = Infinity, hi = -Infinity;
  for (const v of gray) { lo = Math.min(lo, 2 * v); hi = Math.max(hi, 2 * v); }
  const lightPaper = (hi - background2) < (background2 - lo);
  const ink = new Int32Array(H * W);
  let max = -Infinity;
  for (let i = 0; i < H * W; i++) {
    const v = lightPaper ? background2 - 2 * gray[i] : 2 * gray[i] - background2;
    max = Math.max(max, v);
    ink[i] = Math.max(v, 0);
  }
  if (max < 2 * INK_CONTRAST) throw new NoInk("no ink found (the image is blank or one flat colour): nothing to classify");
  return ink;
}

export function resampleLine(source, size) {
  const n = source.length, scale = n / size, support = Math.max(scale, 1.0);
  const out = new Float64Array(size);
  for (let o = 0; o < size; o++) {
    const centre = (o + 0.5) * scale;
    const first = Math.max(Math.trunc(centre - support + 0.5), 0);
    const last = Math.min(Math.trunc(centre + support + 0.5), n);
    const weights = [];
    for (let i = first; i < last; i++) weights.push(Math.max(0.0, 1.0 - Math.abs((i - centre + 0.5) / support)));
    let total = 0.0;
    for (const w of weights) total += w;
    let acc = 0.0;
    for (let k = 0; k < weights.length; k++) acc = acc + (weights[k] / total) * source[first + k];
    out[o] = acc;
  }
  return out;
}

export function centreByMass(boxed, height, width) {
  let mass = 0.0, rowMoment = 0.0, colMoment = 0.0;
  const bh = boxed.length, bw = boxed[0].length;
  for (let r = 0; r < bh; r++) {
    for (let c = 0; c < bw; c++) {
      const value = boxed[r][c];
      mass += value; rowMoment += r * value; colMoment += c * value;
    }
  }
  const top = Math.min(Math.max(Math.floor(height / 2 - rowMoment / mass + 0.5), 0), height - bh);
  const left = Math.min(Math.max(Math.floor(width / 2 - colMoment / mass + 0.5), 0), width - bw);
  const pixels = new Uint8Array(height * width);
  for (let r = 0; r < bh; r++) {
    for (let c = 0; c < bw; c++) {
      pixels[(top + r) * width + left + c] = Math.min(Math.max(Math.floor(boxed[r][c] + 0.5), 0), 255);
    }
  }
  return pixels;
}

// The manifest's formula: x = (pixel_u8 * scale - mean) / std, in doubles, stored as float32 (as infer.py).
export function normalize(pixels, pre) {
  return Float32Array.from(pixels, (p) => (p * pre.scale - pre.mean[0]) / pre.std[0]);
}
