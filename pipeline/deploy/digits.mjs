// Any digit picture -> a 28x28 MNIST-style digit: a line-by-line port of digits.py, which says why each step
// exists. The two must give the same bytes (tests compare them), so every step is integer arithmetic or IEEE
// double arithmetic in the same order as there, and rounding is Math.floor(v + 0.5) in both.
// Runs in the browser page and in Node; needs nothing else. inkStats and notADigit port the "not a digit?"
// check (digits.ink_stats, digits.not_a_digit) and give the same verdict.

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

// Shape statistics of a prepared digit (Uint8Array h*w, white on black), as digits.ink_stats.
export function inkStats(pixels, height = 28, width = 28) {
  let peak = 0;
  for (const v of pixels) if (v > peak) peak = v;
  if (peak === 0) return { ink_fraction: 0, components: 0, aspect: 0, solid: 0 };
  const ink = Uint8Array.from(pixels, (v) => (2 * v >= peak ? 1 : 0));
  let count = 0, inside = 0, top = height, bottom = -1, left = width, right = -1;
  const at = (r, c) => (r >= 0 && r < height && c >= 0 && c < width ? ink[r * width + c] : 0);
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width; c++) {
      if (!ink[r * width + c]) continue;
      count += 1;
      top = Math.min(top, r); bottom = Math.max(bottom, r); left = Math.min(left, c); right = Math.max(right, c);
      if (at(r - 1, c) && at(r + 1, c) && at(r, c - 1) && at(r, c + 1)) inside += 1;
    }
  }
  return { ink_fraction: count / (height * width), components: components(ink, height, width),
           aspect: (right - left + 1) / (bottom - top + 1), solid: inside / count };
}

// 8-connected pieces of a 0/1 image, as digits.components.
export function components(ink, height, width) {
  const seen = new Uint8Array(height * width);
  let found = 0;
  for (let start = 0; start < height * width; start++) {
    if (!ink[start] || seen[start]) continue;
    found += 1;
    seen[start] = 1;
    const stack = [start];
    while (stack.length) {
      const index = stack.pop(), r = Math.floor(index / width), c = index % width;
      for (let dr = -1; dr <= 1; dr++) {
        for (let dc = -1; dc <= 1; dc++) {
          const rr = r + dr, cc = c + dc;
          if (rr >= 0 && rr < height && cc >= 0 && cc < width && ink[rr * width + cc] && !seen[rr * width + cc]) {
            seen[rr * width + cc] = 1;
            stack.push(rr * width + cc);
          }
        }
      }
    }
  }
  return found;
}

// logsumexp of the logits, in doubles in index order, as digits.energy.
export function energy(logits) {
  const values = Array.from(logits, Number);
  const top = Math.max(...values);
  let total = 0.0;
  for (const v of values) total += Math.exp(v - top);
  return top + Math.log(total);
}

export const CHECKS = [["ink_fraction", "min", "too little ink"], ["ink_fraction", "max", "too much ink"],
  ["components", "max", "in too many pieces"], ["aspect", "max", "too wide"],
  ["solid", "max", "solid like a blob or a photo"], ["energy", "min", "no class fits"]];

// Why a prepared picture is probably not a digit ([] = it looks like one), as digits.not_a_digit; thresholds
// is the manifest's ood.thresholds.
export function notADigit(stats, logits, thresholds) {
  const values = { ...stats, energy: energy(logits) };
  const reasons = [];
  for (const [name, side, why] of CHECKS) {
    const bound = thresholds?.[`${name}_${side}`];
    if (bound === undefined || bound === null) continue;
    const value = values[name];
    if (side === "min" ? value < bound : value > bound) {
      const shown = Number.isInteger(value) && name === "components" ? String(value) : value.toFixed(2);
      reasons.push(`${why} (${name} ${shown} ${side === "min" ? "<" : ">"} ${bound})`);
    }
  }
  return reasons;
}
