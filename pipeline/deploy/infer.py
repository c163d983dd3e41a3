"""Classify digit images with a deployment bundle. Needs only onnxruntime, numpy and Pillow.

    python infer.py IMAGE_OR_DIR [...]        (run from inside the bundle, or pass --bundle DIR)
    python infer.py batch.npy                 (a normalized float32 (N, 1, H, W) array)

Images are prepared the way MNIST's digits were (digits.py): transparency composited onto white, the
background made black and the ink white whatever the original polarity, cropped to the ink, fitted into 20x20
keeping the aspect ratio, centred by centre of mass in 28x28; then scaled and standardized as the manifest
says. A blank image is refused; so is one over 16.7 megapixels (before it is decoded). For a multi-frame
image (GIF, TIFF) the first frame is classified, and a line on stderr says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__:
    from .digits import NoInk, prepare
    from .session import open_session, providers_for
else:  # run as a script inside an extracted bundle, where digits.py and session.py sit beside it
    _prefix, sys.dont_write_bytecode = sys.pycache_prefix, True  # never write bytecode into the bundle, nor read
    sys.pycache_prefix = str(Path(__file__).resolve().parent / "__no_bytecode__")  # a .pyc planted in __pycache__
    try:
        from digits import NoInk, prepare
        from session import open_session, providers_for
    finally:
        sys.pycache_prefix = _prefix

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
ARRAY_SUFFIX = ".npy"  # an already-normalized float32 batch (N, 1, H, W)


class InputError(Exception):
    """An input that cannot be classified (not an image, empty, wrong shape): exit 2."""


class Classifier:
    def __init__(self, bundle: Path):
        self.bundle = Path(bundle)
        manifest_path = self.bundle / "manifest.json"
        if not manifest_path.is_file():
            raise InputError(f"no manifest.json in {self.bundle}: not a deployment bundle")
        self.manifest = json.loads(manifest_path.read_text())
        self.pre = self.manifest["preprocessing"]
        self.labels = self.manifest["class_labels"]
        # The same providers and session options verify.py checks: those chosen when the bundle was packaged.
        self.session = open_session(self.bundle / self.manifest["model"]["file"], self.manifest["target"]["session"],
                                    providers_for(self.manifest))
        self.input = self.session.get_inputs()[0]
        fixed = self.input.shape[0]
        self.fixed_batch = fixed if isinstance(fixed, int) and fixed > 0 else None

    def preprocess(self, path: Path) -> np.ndarray:
        return picture_input(path, self.pre, self.input.shape[2], self.input.shape[3])

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalized float32 (N, 1, H, W) -> (labels, probabilities); runs in the model's fixed batch."""
        self.check(x)
        step = self.fixed_batch or len(x)
        logits = np.concatenate([self._run(x[i : i + step]) for i in range(0, len(x), step)])
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
        return probs.argmax(1), probs.max(1)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        if self.fixed_batch and len(chunk) < self.fixed_batch:
            pad = np.zeros((self.fixed_batch - len(chunk), *chunk.shape[1:]), chunk.dtype)
            return self.session.run(None, {self.input.name: np.concatenate([chunk, pad])})[0][: len(chunk)]
        return self.session.run(None, {self.input.name: chunk})[0]

    def check(self, x: np.ndarray) -> None:
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            raise InputError(f"input must be a float32 array, got {getattr(x, 'dtype', type(x).__name__)}")
        expected = self.input.shape[1:]
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(expected):
            dims = ", ".join(map(str, expected))
            raise InputError(f"input shape {tuple(x.shape)} does not match the model's (N, {dims})")
        if len(x) == 0:
            raise InputError("input batch is empty (batch of 0)")
        bad = ~np.isfinite(x)
        if bad.any():
            rows = sorted({int(i) for i in np.argwhere(bad)[:, 0]})
            raise InputError(f"input has {int(bad.sum())} NaN/Inf values (rows {rows[:5]}): refusing to classify")


MAX_PIXELS = 4096 * 4096  # a digit photo needs far less; a decompression bomb needs far more


def picture_input(path: Path, pre: dict, height: int = 28, width: int = 28) -> np.ndarray:
    """One image file -> float32 (1, 1, H, W): MNIST's own steps (digit_pixels), then the manifest's scale,
    mean and std (in doubles, then float32, as digits.mjs does)."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    pixels = digit_pixels(path, height, width)
    x = (pixels * pre["scale"] - pre["mean"][0]) / pre["std"][0]
    return x.astype(np.float32).reshape(1, 1, *pixels.shape)


def digit_pixels(path: Path, height: int = 28, width: int = 28) -> np.ndarray:
    """Any digit image file -> uint8 (height, width), white digit on black: decoded to RGBA (first frame),
    then digits.prepare, the preparation the browser page and the Node consumer port byte for byte."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise InputError(f"{path}: {image.width}x{image.height} pixels is over the {MAX_PIXELS:,}-pixel "
                                 f"limit (refused before decoding: a digit needs far fewer)")
            if getattr(image, "n_frames", 1) > 1:
                print(f"{path}: {image.n_frames} frames; classifying frame 1", file=sys.stderr)
            image.seek(0)
            rgba = np.asarray(image.convert("RGBA"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None
    try:
        return prepare(rgba, height, width)
    except NoInk as exc:
        raise InputError(f"{path}: {exc}") from None


def load_array(path: Path) -> np.ndarray:
    """A .npy batch, loaded without pickle (allow_pickle=False), checked like any model input."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None


def image_files(target: Path) -> list[Path]:
    target = Path(target)
    if not target.exists():
        raise InputError(f"{target}: no such file or directory")
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | {ARRAY_SUFFIX})
        if not files:
            raise InputError(f"{target}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files
    return [target]


def classify(bundle: Path, targets: list[Path]) -> list[tuple[str, str, float]]:
    """Label every image (or every row of a .npy batch); one (name, label, probability) per input."""
    model = Classifier(bundle)
    names, batches = [], []
    for path in (f for t in targets for f in image_files(t)):
        if path.suffix.lower() == ARRAY_SUFFIX:
            batch = load_array(path)
            names += [f"{path}[{i}]" for i in range(len(batch))] if batch.ndim else [str(path)]
        else:
            batch = model.preprocess(path)
            names.append(str(path))
        batches.append(batch)
    x = batches[0] if len(batches) == 1 else np.concatenate(batches)
    labels, probs = model.predict(x)
    return [(n, model.labels[int(label)], float(p)) for n, label, p in zip(names, labels, probs, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="image files, .npy batches, or directories of them")
    parser.add_argument("--bundle", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    try:
        results = classify(args.bundle, args.images)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, label, prob in results:
        print(f"{path}\t{label}\t{prob:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
