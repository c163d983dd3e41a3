"""Digits in a .npy array, the layouts and scales infer.py (and `pipeline predict`) read. Needs only numpy.

A .npy array holds prepared digits (white on black, centred: not cropped or centred again), one per row:
(N, 28, 28), (28, 28) or (N, 1, 28, 28). It is loaded without pickle. Its values, by NpyScale:
  auto: integer dtypes are pixels 0-255; floats with every value in [0, 1] are pixels 0-1; floats with any
        negative value are already normalized, (pixel/255 - mean) / std, the model's input; floats above 1
        with nothing negative are refused as ambiguous (0-255 pixels, or normalized?) until the scale is named;
  0-255, 0-1, normalized: that scale, whatever the dtype (values outside it are refused).
NaN or Inf anywhere refuses the file. Ships in every bundle beside infer.py.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import numpy as np


class NpyScale(str, Enum):  # noqa: UP042 (a str Enum reads the same on every Python)
    """How the values of a .npy array are read (the CLI's and infer.py's `--npy-scale` choices)."""
    auto = "auto"
    pixels_255 = "0-255"
    pixels_1 = "0-1"
    normalized = "normalized"


class ArrayError(ValueError):
    """A .npy file that holds no digits this module can read, and why."""


def read(path: Path, scale: NpyScale, pre: dict, size: tuple[int, int] = (28, 28)):
    """A .npy file -> (names, pixels, x): a name per row (`PATH[i]`; the path alone for one (28, 28) digit),
    uint8 pixels (N, H, W) on the 0-255 scale (for the not-a-digit statistics), and the model's input
    float32 (N, 1, H, W) by the manifest's `pre` (as given, for a normalized array)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ArrayError(f"{path}: not a readable .npy array ({exc})") from None
    height, width = size
    single = array.shape == (height, width)
    if single:
        array = array[None]
    elif array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (height, width):
        raise ArrayError(f"{path}: shape {array.shape} is not a digit layout: (N, {height}, {width}), "
                         f"({height}, {width}) or (N, 1, {height}, {width})")
    if len(array) == 0:
        raise ArrayError(f"{path}: no digits in it (a batch of 0)")
    if array.dtype.kind not in "uif":
        raise ArrayError(f"{path}: dtype {array.dtype} is not pixels (integers 0-255, or floats)")
    values = array.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        rows = sorted({int(i) for i in np.argwhere(bad)[:, 0]})
        raise ArrayError(f"{path} has {int(bad.sum())} NaN/Inf values (rows {rows[:5]}): refusing to classify")
    scale = _scale_of(values, array.dtype.kind, NpyScale(scale), path)
    if scale is NpyScale.normalized:  # the model's input as given; the pixels recovered for the statistics
        x = array.astype(np.float32)[:, None]
        pixels = (values * pre["std"][0] + pre["mean"][0]) / pre["scale"]
    else:
        pixels = values * (255.0 / (255.0 if scale is NpyScale.pixels_255 else 1.0))
        x = ((pixels * pre["scale"] - pre["mean"][0]) / pre["std"][0]).astype(np.float32)[:, None]
    names = [str(path)] if single else [f"{path}[{i}]" for i in range(len(array))]
    return names, np.clip(np.floor(pixels + 0.5), 0, 255).astype(np.uint8), x


def _scale_of(values: np.ndarray, kind: str, scale: NpyScale, path: Path) -> NpyScale:
    """The scale `auto` stands for, and a check that the values fit the scale."""
    low, high = float(values.min()), float(values.max())
    if scale is NpyScale.auto:
        if kind in "ui":
            scale = NpyScale.pixels_255
        elif low < 0:
            scale = NpyScale.normalized
        elif high <= 1:
            scale = NpyScale.pixels_1
        else:
            raise ArrayError(f"{path}: float values from {low:g} to {high:g}: pixels 0-255, or normalized? Say "
                             f"which with --npy-scale 0-255 or --npy-scale normalized")
    top = {NpyScale.pixels_255: 255.0, NpyScale.pixels_1: 1.0}.get(scale)
    if top is not None and (low < 0 or high > top):
        raise ArrayError(f"{path}: values from {low:g} to {high:g} are not pixels {scale.value}")
    return scale
