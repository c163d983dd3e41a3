"""Pictures that are not digits, for calibrating and measuring the "not a digit?" flag (pipeline/packaging/ood.py).

Drawn with numpy and Pillow from fixed seeds, so the same seed gives the same pixels: dots, words in Pillow's
default font, straight strokes, scribbles, blobs, noise, textures and gradients like photos, photo-like scenes
(soft-edged objects on a lit background, with sensor noise), and several real training digits side by side.
"""

from __future__ import annotations

import numpy as np

PER_KIND = 60                # synthetic pictures of each kind, per set
WORDS = ("hello", "world", "digit", "photo", "MNIST", "cat", "dog", "test", "image", "label", "ONNX", "abc",
         "note", "hey", "yes", "no", "why", "pixel")
KINDS = ("dot", "word", "strokes", "scribble", "blobs", "noise", "texture", "gradient", "photo",
         "digits_side_by_side")


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


def _photo(rng, _):
    """A scene like a phone photo of something that is not a digit: a lit background, a few soft-edged objects
    of varied tones, sensor noise."""
    from PIL import Image, ImageDraw, ImageFilter

    h, w = int(rng.integers(64, 240)), int(rng.integers(64, 240))
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    image = Image.fromarray(np.clip(150 + 80 * (xx * np.cos(angle) + yy * np.sin(angle)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 5))):
        (x0, y0), (x1, y1) = _points(rng, image, 2)
        box = (min(x0, x1), min(y0, y1), max(x0, x1) + 4, max(y0, y1) + 4)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=int(rng.integers(0, 200)))
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(rng.uniform(1, 4))), np.float64)
    return Image.fromarray((pixels + rng.normal(0, 5, pixels.shape)).clip(0, 255).astype(np.uint8))


def _digits_side_by_side(rng, train_images):
    from PIL import Image

    picks = rng.integers(0, len(train_images), int(rng.integers(2, 5)))
    row = np.concatenate([train_images[i] for i in picks], axis=1)
    image = Image.fromarray(255 - row if rng.random() < 0.5 else row)
    scale = float(rng.uniform(1, 4))
    return image.resize((int(image.width * scale), int(image.height * scale)))


DRAW = {"dot": _dot, "word": _word, "strokes": _strokes, "scribble": _scribble, "blobs": _blobs, "noise": _noise,
        "texture": _texture, "gradient": _gradient, "photo": _photo, "digits_side_by_side": _digits_side_by_side}


def _rgba_of(image) -> np.ndarray:
    return np.asarray(image.convert("RGBA"))
