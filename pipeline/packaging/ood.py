"""Is it a digit at all? Calibrating the bundle's "not a digit?" flag on the shipped model.

The flag (digits.not_a_digit, ported to digits.mjs) holds the prepared 28x28 and the model's answer against six
bounds (digits.CHECKS): too little or too much ink, too many separate pieces, too wide, too solid (a blob or a
photo), and too low an energy (logsumexp of the logits: no class fits). The bounds are measured here, for the
model a bundle ships, through the bundle's own preparation (digits.prepare) and the session options it ships
with:

- the MNIST test set is split by index: even images calibrate, odd images are held out;
- each bound may cut off one tail (TAILS) of the calibration digits, rounded outwards onto a coarse grid
  (GRID, so float noise on another CPU cannot move it); of every combination of tails that rejects at most
  CALIBRATION_BUDGET of the calibration digits together, the one that flags the most synthetic non-digits of
  the calibration set (seed SEED_CALIBRATE) is kept;
- then the rule is measured where it was not fitted: the false-rejection rate on the held-out digits (it must be
  at most MAX_FALSE_REJECTION, else the stage fails) and the detection rate on a second synthetic set (seed
  SEED_MEASURE).

The synthetic non-digits are drawn with numpy and Pillow from fixed seeds: dots, words in Pillow's default font,
straight strokes, scribbles, blobs, noise, textures and gradients like photos, and several real training digits
side by side.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from pipeline.core.errors import GateFailure
from pipeline.data import mnist
from pipeline.deploy import digits

CALIBRATION_BUDGET = 0.005   # share of calibration digits the bounds may reject together
MAX_FALSE_REJECTION = 0.01   # the held-out false-rejection rate a shipped rule must stay within
TAILS = (0.0, 0.0005, 0.001, 0.002, 0.003, 0.005)  # the tails a single bound may cut off (0: the extreme digit)
GRID = {"ink_fraction": 0.005, "components": 1, "aspect": 0.05, "solid": 0.01, "energy": 0.25}
PER_KIND = 60                # synthetic pictures of each kind, per set
SEED_CALIBRATE, SEED_MEASURE = 1, 2
WORDS = ("hello", "world", "digit", "photo", "MNIST", "cat", "dog", "test", "image", "label", "ONNX", "abc",
         "note", "hey", "yes", "no", "why", "pixel")
KINDS = ("dot", "word", "strokes", "scribble", "blobs", "noise", "texture", "gradient", "digits_side_by_side")


def calibrate(session, data_dir: Path, fixed_batch: int | None, pre: dict) -> dict:
    """The manifest's `ood` block for the model behind `session`: thresholds, how they were fitted, and the
    measured rates. Fails (GateFailure) where the held-out false-rejection rate exceeds MAX_FALSE_REJECTION."""
    data = mnist.load(Path(data_dir))
    test = [_rgba(image) for image in data.test_images]
    calibration, held_out = test[0::2], test[1::2]
    digit_stats = [s for s in statistics(session, calibration, fixed_batch, pre) if s is not None]
    fake_stats = statistics(session, [p for _, p in synthetic(data.train_images, SEED_CALIBRATE)], fixed_batch, pre)
    thresholds = fit(digit_stats, fake_stats)
    rejected = sum(bool(_flag(s, thresholds)) for s in statistics(session, held_out, fixed_batch, pre))
    measured = synthetic(data.train_images, SEED_MEASURE)
    flagged = [bool(_flag(s, thresholds)) for s in statistics(session, [p for _, p in measured], fixed_batch, pre)]
    by_kind = {kind: sum(f for (k, _), f in zip(measured, flagged, strict=True) if k == kind) for kind in KINDS}
    rate = rejected / len(held_out)
    block = {
        "rule": "flagged as not a digit when any bound is crossed: statistics of the prepared 28x28 (ink: pixels at "
                "least half as bright as the brightest; pieces: 8-connected) and energy = logsumexp(logits)",
        "thresholds": thresholds,
        "calibration": {"digits": f"{len(calibration)} MNIST test digits (even indices)",
                        "non_digits": f"{len(fake_stats)} synthetic non-digits (seed {SEED_CALIBRATE})",
                        "budget": CALIBRATION_BUDGET},
        "measured": {
            "false_rejection": {"samples": len(held_out), "rejected": rejected, "rate": round(rate, 6),
                                "data": "held-out MNIST test digits (odd indices, not used for calibration)"},
            "detection": {"samples": len(flagged), "detected": sum(flagged),
                          "rate": round(sum(flagged) / len(flagged), 6),
                          "data": f"synthetic non-digits (seed {SEED_MEASURE}, not used for calibration)",
                          "by_kind": {kind: f"{n}/{PER_KIND}" for kind, n in by_kind.items()}},
        },
    }
    if rate > MAX_FALSE_REJECTION:
        raise GateFailure(f"the not-a-digit rule rejects {rejected} of {len(held_out)} held-out MNIST test digits "
                          f"({rate:.2%}), over {MAX_FALSE_REJECTION:.0%}")
    return block


def statistics(session, pictures: list[np.ndarray], fixed_batch: int | None, pre: dict) -> list[dict]:
    """Each picture through the bundle's preparation and the model: ink statistics plus logits (None: the
    preparation refused the picture as blank, which a consumer reports as an error, never a label)."""
    prepared = []
    for picture in pictures:
        try:
            prepared.append(digits.prepare(picture))
        except digits.NoInk:
            prepared.append(None)
    kept = [p for p in prepared if p is not None]
    x = ((np.stack(kept).astype(np.float64) * pre["scale"] - pre["mean"][0]) / pre["std"][0]).astype(np.float32)
    logits = iter(_logits(session, x[:, None], fixed_batch))
    return [None if p is None else {**digits.ink_stats(p), "logits": next(logits)} for p in prepared]


def fit(digit_stats: list[dict], fake_stats: list[dict]) -> dict:
    """The bounds, one tail of TAILS each, that flag the most calibration non-digits while rejecting at most
    CALIBRATION_BUDGET of the calibration digits together: every combination is tried (ties: fewer digits
    rejected, then the earlier combination with tails in increasing order)."""
    fakes = [s for s in fake_stats if s is not None]
    keys = [(name, side) for name, side, _ in digits.CHECKS]
    digit_values = {name: np.array([_value(s, name) for s in digit_stats]) for name, _ in keys}
    fake_values = {name: np.array([_value(s, name) for s in fakes]) for name, _ in keys}
    bounds = [[_bound(digit_values[name], name, side, tail) for tail in TAILS] for name, side in keys]
    # Which digits and which non-digits each (check, tail) flags, packed into bits for the search below.
    digit_bits = np.array([[np.packbits(_crosses(digit_values[name], side, b)) for b in row]
                           for (name, side), row in zip(keys, bounds, strict=True)])
    fake_bits = np.array([[np.packbits(_crosses(fake_values[name], side, b)) for b in row]
                          for (name, side), row in zip(keys, bounds, strict=True)])
    popcount = np.array([bin(i).count("1") for i in range(256)])
    combos = np.array(list(itertools.product(range(len(TAILS)), repeat=len(keys))))
    digit_out = np.zeros((len(combos), digit_bits.shape[2]), np.uint8)
    fake_out = np.zeros((len(combos), fake_bits.shape[2]), np.uint8)
    for k in range(len(keys)):
        digit_out |= digit_bits[k][combos[:, k]]
        fake_out |= fake_bits[k][combos[:, k]]
    rejected, detected = popcount[digit_out].sum(1), popcount[fake_out].sum(1)
    allowed = rejected <= CALIBRATION_BUDGET * len(digit_stats)
    best = int(np.lexsort((np.arange(len(combos)), rejected, -detected, ~allowed))[0])
    return {f"{name}_{side}": bounds[k][combos[best, k]] for k, (name, side) in enumerate(keys)}


def _bound(values: np.ndarray, name: str, side: str, tail: float) -> float:
    """The bound that leaves at most `tail` of the digits beyond it, rounded outwards onto the grid."""
    grid = GRID[name]
    if side == "min":
        return round(math.floor(float(np.quantile(values, tail, method="lower")) / grid) * grid, 6)
    return round(math.ceil(float(np.quantile(values, 1 - tail, method="higher")) / grid) * grid, 6)


def _crosses(values: np.ndarray, side: str, bound: float) -> np.ndarray:
    return values < bound if side == "min" else values > bound


def _value(stats: dict, name: str) -> float:
    return digits.energy(stats["logits"]) if name == "energy" else float(stats[name])


def _flag(stats: dict | None, thresholds: dict) -> list[str]:
    """A refused (blank) picture counts as flagged: it is never labelled."""
    return ["no ink"] if stats is None else digits.not_a_digit(stats, stats["logits"], thresholds)


def _logits(session, x: np.ndarray, fixed_batch: int | None) -> list[np.ndarray]:
    name = session.get_inputs()[0].name
    step = fixed_batch or 512
    out = []
    for i in range(0, len(x), step):
        chunk = x[i : i + step]
        padded = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), chunk.dtype)]) if (
            fixed_batch and len(chunk) < step) else chunk
        out.extend(session.run(None, {name: padded})[0][: len(chunk)])
    return out


def _rgba(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray, np.uint8)
    return np.dstack([gray, gray, gray, np.full_like(gray, 255)])


def synthetic(train_images: np.ndarray, seed: int) -> list[tuple[str, np.ndarray]]:
    """PER_KIND pictures of each kind in KINDS, as (kind, uint8 RGBA): the same seed gives the same pixels."""
    rng = np.random.default_rng(seed)
    return [(kind, _rgba_of(DRAW[kind](rng, train_images))) for kind in KINDS for _ in range(PER_KIND)]


def _canvas(rng, low: int = 64, high: int = 256):
    from PIL import Image, ImageDraw

    size = (int(rng.integers(low, high)), int(rng.integers(low, high)))
    image = Image.new("L", size, int(rng.integers(200, 256)))
    return image, ImageDraw.Draw(image)


def _ink(rng) -> int:
    return int(rng.integers(0, 120))


def _dot(rng, _):
    image, draw = _canvas(rng)
    w, h = image.size
    r = int(rng.integers(2, max(3, min(w, h) // 6)))
    x, y = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
    (draw.ellipse if rng.random() < 0.7 else draw.rectangle)((x - r, y - r, x + r, y + r), fill=_ink(rng))
    return image


def _word(rng, _):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=int(rng.integers(12, 48)))
    text = WORDS[int(rng.integers(len(WORDS)))]
    left, top, right, bottom = font.getbbox(text)
    pad = int(rng.integers(4, 30))
    image = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), int(rng.integers(200, 256)))
    ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font, fill=_ink(rng))
    return image


def _points(rng, image, n: int) -> list[tuple[int, int]]:
    w, h = image.size
    return [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(n)]


def _strokes(rng, _):
    image, draw = _canvas(rng)
    for _ in range(int(rng.integers(2, 6))):
        draw.line(_points(rng, image, 2), fill=_ink(rng), width=int(rng.integers(1, 8)))
    return image


def _scribble(rng, _):
    image, draw = _canvas(rng)
    w, h = image.size
    steps = np.cumsum(rng.normal(0, min(w, h) / 12, (int(rng.integers(20, 80)), 2)), axis=0)
    path = [(float(w / 2 + x), float(h / 2 + y)) for x, y in steps]
    faint = int(rng.integers(120, 190)) if rng.random() < 0.5 else _ink(rng)  # half of them blank-ish
    draw.line(path, fill=faint, width=int(rng.integers(1, 4)), joint="curve")
    return image


def _blobs(rng, _):
    image, draw = _canvas(rng)
    for _ in range(int(rng.integers(2, 7))):
        (x0, y0), (x1, y1) = _points(rng, image, 2)
        draw.ellipse((min(x0, x1), min(y0, y1), max(x0, x1) + 3, max(y0, y1) + 3), fill=_ink(rng))
    return image


def _noise(rng, _):
    from PIL import Image

    h, w = int(rng.integers(32, 200)), int(rng.integers(32, 200))
    style = int(rng.integers(3))
    if style == 0:
        pixels = rng.integers(0, 256, (h, w))
    elif style == 1:
        pixels = np.clip(rng.normal(128, 60, (h, w)), 0, 255)
    else:  # salt and pepper on paper
        pixels = np.where(rng.random((h, w)) < rng.uniform(0.02, 0.3), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def _texture(rng, _):
    from PIL import Image, ImageFilter

    h, w = int(rng.integers(48, 240)), int(rng.integers(48, 240))
    yy, xx = np.mgrid[0:h, 0:w]
    style = int(rng.integers(3))
    if style == 0:  # a grating
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 30)
        pixels = 128 + 127 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    elif style == 1:  # a checkerboard
        cell = int(rng.integers(3, 30))
        pixels = ((xx // cell + yy // cell) % 2) * 255
    else:  # smoothed noise, like foliage or a wall
        noise = Image.fromarray(rng.integers(0, 256, (h, w)).astype(np.uint8))
        pixels = np.asarray(noise.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 6))), np.float64)
        pixels = (pixels - pixels.min()) * 255 / max(1.0, np.ptp(pixels))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _gradient(rng, _):
    from PIL import Image

    h, w = int(rng.integers(48, 240)), int(rng.integers(48, 240))
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    if rng.random() < 0.5:  # linear, any direction, like sky or a lit wall
        angle = rng.uniform(0, 2 * np.pi)
        pixels = xx * np.cos(angle) + yy * np.sin(angle)
    else:  # radial, like a lamp or a vignette
        cy, cx = rng.uniform(0, h / max(h, w)), rng.uniform(0, w / max(h, w))
        pixels = np.hypot(yy - cy, xx - cx)
    pixels = (pixels - pixels.min()) / max(1e-9, np.ptp(pixels))
    return Image.fromarray((pixels * 255 + rng.normal(0, 6, pixels.shape)).clip(0, 255).astype(np.uint8))


def _digits_side_by_side(rng, train_images):
    from PIL import Image

    picks = rng.integers(0, len(train_images), int(rng.integers(2, 5)))
    row = np.concatenate([train_images[i] for i in picks], axis=1)
    image = Image.fromarray(255 - row if rng.random() < 0.5 else row)
    scale = float(rng.uniform(1, 4))
    return image.resize((int(image.width * scale), int(image.height * scale)))


DRAW = {"dot": _dot, "word": _word, "strokes": _strokes, "scribble": _scribble, "blobs": _blobs, "noise": _noise,
        "texture": _texture, "gradient": _gradient, "digits_side_by_side": _digits_side_by_side}


def _rgba_of(image) -> np.ndarray:
    return np.asarray(image.convert("RGBA"))
