"""Classify digit pictures with a deployment bundle. Needs only onnxruntime, numpy and Pillow.

    python infer.py IMAGE_OR_DIR_OR_NPY [...]  (run from inside the bundle, or pass --bundle DIR)

One line per input on stdout, PATH<TAB>LABEL<TAB>PROBABILITY, with a fourth field `not a digit? REASONS`
when the picture looks like no digit (the bounds the packager calibrated on this model, manifest.json `ood`).
An input that cannot be classified gets its own line on stderr, `error: PATH: cause`, and the others are still
classified. Before it answers, the bundle is checked as verify.py checks it (every file's sha256, the manifest,
the model's inputs and outputs, the golden outputs and pictures) on the target's own first provider (or
--provider NAME) alone; --allow-fallback runs on the target's providers this onnxruntime has, CPU last.
Exit 0: every input classified (flagged or not); 2: at least one could not be, or the bundle is bad; 1: the
bundle fails its golden check; 3: the provider is not here (nothing is classified).

A folder: every file directly in it, in name order (hidden files and subfolders are skipped).
Images (netpbm .pgm/.ppm/.pam decoded by digits.py, the rest by Pillow) are prepared the way MNIST's digits
were (digits.py): transparency composited onto white, the background made black and the ink white whatever the
original polarity, cropped to the ink, fitted into 20x20 keeping the aspect ratio, centred by centre of mass in
28x28; then scaled and standardized as the manifest
says. A blank image is refused; so is one over 16.7 megapixels (before it is decoded). For a multi-frame
image (GIF, TIFF) the first frame is classified, and a line on stderr says so.

.npy arrays (arrays.py; loaded without pickle) hold digits already prepared (white on black, centred; not
cropped or centred again), one line per row: shape (N, 28, 28), (28, 28) or (N, 1, 28, 28). Their scale,
--npy-scale:
  auto (default): integer dtypes (uint8, ...) are pixels 0-255; floats with every value in [0, 1] are
      pixels 0-1; floats with any negative value are already normalized, (pixel/255 - mean) / std, the
      model's input; floats above 1 with nothing negative are refused as ambiguous (say which);
  0-255, 0-1, normalized: that scale, whatever the dtype (values outside it are refused).
A row without ink (under 40 grey levels of contrast) is refused, as a blank image is; NaN or Inf refuses the
file.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

try:
    import numpy as np
except ImportError:
    if __package__:
        raise
    np = None  # the script says what this Python lacks, below

if __package__:
    from .arrays import ArrayError, NpyScale, read
    from .contents import BundleError, check_files, load_manifest
    from .digits import INK_CONTRAST, NoInk, NotAPicture, ink_stats, normalized, not_a_digit, prepare, read_netpbm
    from .golden import GoldenMismatch, check_all
    from .numerics import softmax
    from .session import ProviderMissing, check_io, open_on
else:  # run as a script inside an extracted bundle, where its sibling modules sit beside it
    _prefix, sys.dont_write_bytecode = sys.pycache_prefix, True  # never write bytecode into the bundle, nor read
    sys.pycache_prefix = str(Path(__file__).resolve().parent / "__no_bytecode__")  # a .pyc planted in __pycache__
    try:
        if np is None:
            import numpy  # noqa: F401 (raises the ImportError that names it)
        from arrays import ArrayError, NpyScale, read
        from contents import BundleError, check_files, load_manifest
        from digits import INK_CONTRAST, NoInk, NotAPicture, ink_stats, normalized, not_a_digit, prepare, read_netpbm
        from golden import GoldenMismatch, check_all
        from numerics import softmax
        from session import ProviderMissing, check_io, open_on
    except ImportError as missing:  # numpy: what this Python lacks, in one line
        print(f"not classified: {missing.name} is not installed in this Python: pip install numpy pillow and the "
              "onnxruntime package the model card names", file=sys.stderr)
        sys.exit(3)
    finally:
        sys.pycache_prefix = _prefix

ARRAY_SUFFIX = ".npy"  # prepared digits, one per row: arrays.py reads their layouts and scales
NETPBM_SUFFIXES = (".pgm", ".ppm", ".pam")  # read by digits.read_netpbm, as the C++ consumer reads them


class InputError(Exception):
    """An input that cannot be classified (not an image, empty, wrong shape): exit 2."""


@dataclass
class Result:
    """One input's outcome: a label and its probability (with the reasons it looks like no digit, if any), or
    the error that kept it from being classified."""
    name: str
    label: str | None = None
    probability: float | None = None
    not_a_digit: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Row:
    """One digit to classify: its name, its prepared pixels (uint8, for the not-a-digit statistics), the
    model's input (float32 (1, 1, H, W)), or why it cannot be classified."""
    name: str
    pixels: np.ndarray | None = None
    x: np.ndarray | None = None
    error: str | None = None


def run_in_batches(session, x: np.ndarray, fixed_batch: int | None, step: int | None = None) -> np.ndarray:
    """The model's first output for `x`, run in the model's fixed batch (the last chunk padded with zeros, the
    padding's rows dropped), or in chunks of `step` (all at once without one) when its batch is free."""
    name = session.get_inputs()[0].name
    size = fixed_batch or step or len(x)
    outputs = []
    for start in range(0, len(x), size):
        chunk = x[start : start + size]
        if fixed_batch and len(chunk) < fixed_batch:
            chunk = np.concatenate([chunk, np.zeros((fixed_batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        outputs.append(session.run(None, {name: chunk})[0][: min(size, len(x) - start)])
    return np.concatenate(outputs)


class Classifier:
    """A bundle checked as verify.py checks it (files, manifest, the model's I/O, the golden outputs and pictures
    on the target's own provider), then ready to classify: a bundle that fails the check answers nothing."""

    def __init__(self, bundle: Path, provider: str | None = None, allow_fallback: bool = False):
        self.bundle = Path(bundle)
        self.manifest = load_manifest(self.bundle)
        check_files(self.bundle, self.manifest)
        self.pre = self.manifest["preprocessing"]
        self.labels = self.manifest["class_labels"]
        self.thresholds = self.manifest["ood"]["thresholds"]
        # The same providers and session options verify.py checks: those chosen when the bundle was packaged.
        wanted = provider or self.manifest["target"]["providers"][0]
        self.session = open_on(self.bundle, self.manifest, wanted, allow_fallback)
        check_io(self.manifest, self.session)
        self.input = self.session.get_inputs()[0]
        fixed = self.input.shape[0]
        self.fixed_batch = fixed if isinstance(fixed, int) and fixed > 0 else None
        self.size = (int(self.input.shape[2]), int(self.input.shape[3]))
        check_all(self.bundle, self.manifest, self.session)

    def preprocess(self, path: Path) -> np.ndarray:
        return picture_input(path, self.pre, *self.size)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalized float32 (N, 1, H, W) -> (labels, probabilities); runs in the model's fixed batch."""
        probs = softmax(self.logits(x))
        return probs.argmax(1), probs.max(1)

    def logits(self, x: np.ndarray) -> np.ndarray:
        self.check(x)
        return run_in_batches(self.session, x, self.fixed_batch)

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

    def rows(self, path: Path, scale: NpyScale = NpyScale.auto) -> list[Row]:
        """One input file -> a Row per digit it holds (one for an image). A blank row of an array is refused
        as a blank image is."""
        if Path(path).suffix.lower() != ARRAY_SUFFIX:
            pixels = digit_pixels(path, *self.size)
            return [Row(str(path), pixels, normalized(pixels[None], self.pre))]
        try:
            names, pixels, x = read(path, scale, self.pre, self.size)
        except ArrayError as exc:
            raise InputError(str(exc)) from None
        blank = "no ink found (the digit is blank or one flat colour): nothing to classify"
        return [Row(name, row, x[i : i + 1]) if int(row.max()) - int(row.min()) >= INK_CONTRAST else
                Row(name, error=f"{name}: {blank}") for i, (name, row) in enumerate(zip(names, pixels, strict=True))]


MAX_PIXELS = 4096 * 4096  # a digit photo needs far less; a decompression bomb needs far more


def picture_input(path: Path, pre: dict, height: int = 28, width: int = 28) -> np.ndarray:
    """One image file -> float32 (1, 1, H, W): MNIST's own steps (digit_pixels), then the manifest's scale,
    mean and std (in doubles, then float32, as digits.mjs does)."""
    return normalized(digit_pixels(path, height, width)[None], pre)


def digit_pixels(path: Path, height: int = 28, width: int = 28) -> np.ndarray:
    """Any digit image file -> uint8 (height, width), white digit on black: decoded to RGBA (netpbm by
    digits.read_netpbm, other formats by Pillow, first frame), then digits.prepare, the preparation the browser
    page, the Node consumer and the C++ consumer port byte for byte."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    rgba = _netpbm(path) if path.suffix.lower() in NETPBM_SUFFIXES else _decoded(path)
    try:
        return prepare(rgba, height, width)
    except NoInk as exc:
        raise InputError(f"{path}: {exc}") from None


def _netpbm(path: Path) -> np.ndarray:
    try:
        return read_netpbm(path.read_bytes())
    except NotAPicture as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None


def _decoded(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise InputError(f"{path}: {image.width}x{image.height} pixels is over the {MAX_PIXELS:,}-pixel "
                                 f"limit (refused before decoding: a digit needs far fewer)")
            if getattr(image, "n_frames", 1) > 1:
                print(f"{path}: {image.n_frames} frames; classifying frame 1", file=sys.stderr)
            image.seek(0)
            return np.asarray(image.convert("RGBA"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None


def input_files(target: Path) -> list[Path]:
    """A file as given; a folder: every file directly in it, in name order (hidden files, subfolders skipped)."""
    target = Path(target)
    if not target.exists():
        raise InputError(f"{target}: no such file or directory")
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputError(f"{target}: a folder with no files in it")
        return files
    return [target]


def classify(bundle: Path, targets: list[Path], scale: NpyScale = NpyScale.auto, provider: str | None = None,
             allow_fallback: bool = False) -> list[Result]:
    """Every input's Result, in order: each image, each row of a .npy array, and each input that could not be
    read (with its error); one failure never stops the others. The bundle is checked first (Classifier)."""
    model = Classifier(bundle, provider, allow_fallback)
    rows: list[Row] = []
    for target in targets:
        try:
            files = input_files(target)
        except InputError as exc:
            rows.append(Row(str(target), error=str(exc)))
            continue
        for path in files:
            try:
                rows += model.rows(path, scale)
            except InputError as exc:
                rows.append(Row(str(path), error=str(exc)))
    good = [row for row in rows if row.error is None]
    logits = iter(model.logits(np.concatenate([row.x for row in good])) if good else [])
    results = []
    for row in rows:
        if row.error is not None:
            results.append(Result(row.name, error=row.error))
            continue
        values = next(logits)
        probs = softmax(values[None].astype(np.float64))[0]
        best = int(probs.argmax())
        results.append(Result(row.name, model.labels[best], float(probs[best]),
                              not_a_digit(ink_stats(row.pixels), values, model.thresholds)))
    return results


def line(result: Result) -> str:
    """The script's output line: PATH<TAB>LABEL<TAB>PROBABILITY[<TAB>not a digit? REASONS]."""
    fields = [result.name, result.label, f"{result.probability:.4f}"]
    if result.not_a_digit:
        fields.append(f"not a digit? {'; '.join(result.not_a_digit)}")
    return "\t".join(fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, help="image files, .npy arrays, or folders of them")
    parser.add_argument("--bundle", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--npy-scale", choices=[s.value for s in NpyScale], default=NpyScale.auto.value,
                        help="how .npy values are read (default auto: see above)")
    parser.add_argument("--provider", help="run on this execution provider alone (default: the target's first)")
    parser.add_argument("--allow-fallback", action="store_true", help="run on the target's providers this "
                        "onnxruntime has (CPU last) when the wanted one is missing")
    args = parser.parse_args(argv)
    try:
        results = classify(args.bundle, args.images, NpyScale(args.npy_scale), args.provider, args.allow_fallback)
    except (InputError, BundleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GoldenMismatch as exc:
        print(f"error: the bundle fails its own check, so nothing is classified: {exc}", file=sys.stderr)
        return 1
    except ProviderMissing as exc:
        print(f"not classified: {exc}", file=sys.stderr)
        return 3
    for result in results:
        if result.error is None:
            print(line(result), flush=True)
        else:
            print(f"error: {result.error}", file=sys.stderr, flush=True)
    failed = sum(result.error is not None for result in results)
    if failed and len(results) > 1:
        print(f"error: {failed} of {len(results)} inputs could not be classified", file=sys.stderr)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
