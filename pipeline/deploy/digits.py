"""Any digit picture -> a 28x28 MNIST-style digit: the one preparation every consumer of a bundle applies.

MNIST's digits were prepared this way, so a picture must be too before the model sees it: transparency
composited onto white paper, the background (the border's median) made black and the ink white whatever the
original polarity, cropped to the ink, fitted into 20x20 keeping the aspect ratio (triangle-filter
resampling, antialiased when shrinking), centred by centre of mass in 28x28.

digits.mjs (the browser page and the Node consumer) is a line-by-line port, and the two must give the same
bytes: so every step is integer arithmetic or IEEE double arithmetic in a fixed order (no transcendental
functions, no library resampler, no pairwise sums), and rounding is floor(v + 0.5) in both. Needs only numpy.

Not every picture is a digit. `ink_stats` measures the prepared 28x28 (how much ink, in how many separate
strokes, how much of its box it fills, how wide it is) and `not_a_digit` holds those and the model's energy
(logsumexp of its logits) against the thresholds the packager calibrated for the shipped model (the manifest's
`ood` block); both are ported to digits.mjs, which gives the same verdict.
"""

from __future__ import annotations

import math

import numpy as np

INK_CONTRAST = 40  # grey levels between paper and ink below which a picture counts as blank
BOX = 20           # MNIST fitted each digit into a 20x20 box, then centred it by mass in 28x28


class NoInk(ValueError):
    """The picture is blank or one flat colour: nothing to classify."""


class NotAPicture(ValueError):
    """Bytes that are not a netpbm picture this module reads."""


# Netpbm, the picture format every consumer reads with its own few lines (no image library in C++ or Node): the
# golden pictures are PAM files, and the C++ consumer classifies PGM and PAM. 8-bit samples only.
NETPBM_DEPTHS = {"GRAYSCALE": 1, "GRAYSCALE_ALPHA": 2, "RGB": 3, "RGB_ALPHA": 4}
MAX_SIDE = 4096  # a digit needs far less; a header claiming more is refused before any allocation


def read_netpbm(data: bytes) -> np.ndarray:
    """A binary PGM (P5), PPM (P6) or PAM (P7) with maxval 255 -> uint8 RGBA (H, W, 4)."""
    magic = data[:2]
    if magic in (b"P5", b"P6"):
        fields, pos = _header_tokens(data, 2, 3)
        width, height, maxval = (_whole(v) for v in fields)
        depth = 1 if magic == b"P5" else 3
        pos += 1  # one whitespace byte ends the header
    elif magic == b"P7":
        header_end = data.find(b"ENDHDR\n")
        if header_end < 0:
            raise NotAPicture("PAM header without ENDHDR")
        tags = dict(line.split(None, 1) for line in data[3:header_end].decode("ascii", "replace").splitlines()
                    if line.strip() and not line.startswith("#") and len(line.split(None, 1)) == 2)
        width, height, maxval = (_whole(tags.get(k, "")) for k in ("WIDTH", "HEIGHT", "MAXVAL"))
        depth = NETPBM_DEPTHS.get(tags.get("TUPLTYPE", "").strip(), 0)
        if depth == 0 or _whole(tags.get("DEPTH", "")) != depth:
            raise NotAPicture(f"PAM TUPLTYPE/DEPTH {tags.get('TUPLTYPE')}/{tags.get('DEPTH')} is not one of "
                              f"{', '.join(NETPBM_DEPTHS)}")
        pos = header_end + len(b"ENDHDR\n")
    else:
        raise NotAPicture("not a binary netpbm picture (P5, P6 or P7)")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE) or maxval != 255:
        raise NotAPicture(f"{width}x{height} with maxval {maxval}: wanted 1 to {MAX_SIDE} pixels a side, maxval 255")
    size = width * height * depth
    if len(data) - pos != size:
        raise NotAPicture(f"{len(data) - pos} bytes of pixels where {width}x{height}x{depth} = {size} belong")
    samples = np.frombuffer(data, np.uint8, size, pos).reshape(height, width, depth)
    rgba = np.empty((height, width, 4), np.uint8)
    rgba[..., :3] = samples[..., :1] if depth < 3 else samples[..., :3]
    rgba[..., 3] = samples[..., -1] if depth in (2, 4) else 255
    return rgba


def _header_tokens(data: bytes, pos: int, count: int) -> tuple[list[bytes], int]:
    """`count` whitespace-separated header fields from `pos`, skipping '#' comments; returns them and the
    position after the last."""
    tokens = []
    while len(tokens) < count:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.find(b"\n", pos) if data.find(b"\n", pos) >= 0 else len(data)
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            raise NotAPicture("netpbm header ends early")
        tokens.append(data[start:pos])
    return tokens, pos


def _whole(text) -> int:
    text = text.decode("ascii", "replace") if isinstance(text, bytes) else str(text)
    text = text.strip()
    if not text.isdigit() or len(text) > 6:
        raise NotAPicture(f"netpbm header field {text[:20]!r} is not a whole number")
    return int(text)


def prepare(rgba: np.ndarray, height: int = 28, width: int = 28) -> np.ndarray:
    """uint8 RGBA (H, W, 4) -> uint8 (height, width), white digit on black."""
    ink = ink_map(grayscale(rgba))
    rows, cols = np.nonzero(5 * ink > ink.max())  # ink above 20 % of the darkest stroke
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] * (255 / ink.max())
    longest = max(crop.shape)
    out_h, out_w = max(1, (crop.shape[0] * BOX * 2 + longest) // (2 * longest)), max(
        1, (crop.shape[1] * BOX * 2 + longest) // (2 * longest))
    boxed = resample(resample(crop, out_w, axis=1), out_h, axis=0)
    return centre_by_mass(boxed, height, width)


def grayscale(rgba: np.ndarray) -> np.ndarray:
    """Integer ITU-R 601 luma of the picture composited onto white: int64 (H, W) in 0..255."""
    pixels = np.asarray(rgba, dtype=np.int64)
    alpha = pixels[..., 3]
    rgb = (pixels[..., :3] * alpha[..., None] + 255 * (255 - alpha[..., None]) + 127) // 255
    return (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114 + 500) // 1000


def ink_map(gray: np.ndarray) -> np.ndarray:
    """Ink as positive integers on 0, in half grey levels: the background is the border's median."""
    border = np.sort(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
    middle = len(border) // 2
    background2 = border[middle] * 2 if len(border) % 2 else border[middle - 1] + border[middle]
    gray2 = gray * 2
    light_paper = (gray2.max() - background2) < (background2 - gray2.min())
    ink = (background2 - gray2) if light_paper else (gray2 - background2)
    if ink.max() < 2 * INK_CONTRAST:
        raise NoInk("no ink found (the image is blank or one flat colour): nothing to classify")
    return np.clip(ink, 0, None)


def resample(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Triangle-filter resampling of one axis to `size` (PIL's coefficient scheme, in doubles). Taps are
    accumulated one at a time, the same order as digits.mjs."""
    source = np.moveaxis(np.asarray(image, dtype=np.float64), axis, -1)
    n = source.shape[-1]
    scale = n / size
    support = max(scale, 1.0)
    taps = []
    for out in range(size):
        centre = (out + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        last = min(int(centre + support + 0.5), n)
        weights = [max(0.0, 1.0 - abs((i - centre + 0.5) / support)) for i in range(first, last)]
        total = 0.0
        for w in weights:
            total += w
        taps.append((first, [w / total for w in weights]))
    result = np.zeros((*source.shape[:-1], size))
    for out, (first, weights) in enumerate(taps):
        acc = np.zeros(source.shape[:-1])
        for k, w in enumerate(weights):
            acc = acc + w * source[..., first + k]
        result[..., out] = acc
    return np.moveaxis(result, -1, axis)


def centre_by_mass(boxed: np.ndarray, height: int, width: int) -> np.ndarray:
    mass = row_moment = col_moment = 0.0
    for r in range(boxed.shape[0]):
        for c in range(boxed.shape[1]):
            value = float(boxed[r, c])
            mass += value
            row_moment += r * value
            col_moment += c * value
    top = min(max(int(np.floor(height / 2 - row_moment / mass + 0.5)), 0), height - boxed.shape[0])
    left = min(max(int(np.floor(width / 2 - col_moment / mass + 0.5)), 0), width - boxed.shape[1])
    canvas = np.zeros((height, width))
    canvas[top : top + boxed.shape[0], left : left + boxed.shape[1]] = boxed
    return np.clip(np.floor(canvas + 0.5), 0, 255).astype(np.uint8)


def ink_stats(pixels: np.ndarray) -> dict:
    """Shape statistics of a prepared digit (uint8, white on black): the share of pixels that are ink (at least
    half as bright as the brightest: a thin stroke shrunk into the box stays ink), how many 8-connected pieces
    the ink is in, its bounding box's width / height, and the share of ink pixels inside the ink (all four
    neighbours ink: a pen stroke has few, a blob or a photo many)."""
    values = np.asarray(pixels, dtype=np.int64)
    peak = int(values.max())
    if peak == 0:  # nothing left after shrinking into the box
        return {"ink_fraction": 0.0, "components": 0, "aspect": 0.0, "solid": 0.0}
    ink = 2 * values >= peak
    count = int(ink.sum())
    rows, cols = np.nonzero(ink)
    box_h, box_w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    padded = np.pad(ink, 1)
    inside = ink & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return {"ink_fraction": count / ink.size, "components": components(ink), "aspect": box_w / box_h,
            "solid": int(inside.sum()) / count}


def components(ink: np.ndarray) -> int:
    """8-connected pieces of a boolean image: a flood fill from each unvisited ink pixel, in row-major order."""
    height, width = ink.shape
    seen = np.zeros(ink.shape, bool)
    found = 0
    for start in range(height * width):
        if not ink.flat[start] or seen.flat[start]:
            continue
        found += 1
        seen.flat[start] = True
        stack = [start]
        while stack:
            r, c = divmod(stack.pop(), width)
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < height and 0 <= cc < width and ink[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        stack.append(rr * width + cc)
    return found


def energy(logits) -> float:
    """logsumexp of the logits, in doubles in index order (as digits.mjs): low when no class fits the picture."""
    values = [float(v) for v in logits]
    top = max(values)
    total = 0.0
    for v in values:
        total += math.exp(v - top)
    return top + math.log(total)


# Each check of the `ood` thresholds: (statistic, "min" or "max", how a reason reads). Order is the report order.
CHECKS = (("ink_fraction", "min", "too little ink"), ("ink_fraction", "max", "too much ink"),
          ("components", "max", "in too many pieces"), ("aspect", "max", "too wide"),
          ("solid", "max", "solid like a blob or a photo"), ("energy", "min", "no class fits"))


def not_a_digit(stats: dict, logits, thresholds: dict) -> list[str]:
    """Why a prepared picture is probably not a digit (empty: it looks like one). `thresholds` maps
    "<statistic>_<min|max>" to its bound (the manifest's `ood.thresholds`); an absent bound is not checked."""
    values = {**stats, "energy": energy(logits)}
    reasons = []
    for name, side, why in CHECKS:
        bound = thresholds.get(f"{name}_{side}")
        if bound is None:
            continue
        value = values[name]
        if (value < bound) if side == "min" else (value > bound):
            shown = f"{value:.2f}" if isinstance(value, float) else str(value)
            reasons.append(f"{why} ({name} {shown} {'<' if side == 'min' else '>'} {bound:g})")
    return reasons


def normalized(pixels: np.ndarray, pre: dict) -> np.ndarray:
    """Pixels on the 0-255 scale (N, H, W), any dtype -> the model's float32 (N, 1, H, W) by the manifest's
    formula, in doubles."""
    x = (np.asarray(pixels, np.float64) * pre["scale"] - pre["mean"][0]) / pre["std"][0]
    return x.astype(np.float32)[:, None]
