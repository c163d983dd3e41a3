"""MNIST in the IDX format: the layout of every MNIST mirror and of torchvision's MNIST/raw.

The prepare stage writes the four raw IDX files; training, calibration and validation read them. IDX is
byte-deterministic (unlike `np.savez`, whose zip entries carry timestamps), so DVC sees identical data
from identical inputs.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import PipelineError
from pipeline.data.preprocessing import normalize

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
TRAIN_CLASS_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_CLASS_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
_UBYTE = 0x08

TEST_IMAGES = 10000  # the size of MNIST's test set: the most any parity check can use


@dataclass(frozen=True)
class Mnist:
    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8


def encode_idx(array: np.ndarray) -> bytes:
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writer takes uint8, got {array.dtype}")
    header = struct.pack(">BBBB", 0, 0, _UBYTE, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def decode_idx(data: bytes, name: str) -> np.ndarray:
    """Parse raw or gzipped IDX bytes; a truncated or malformed file is a PipelineError naming it."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise PipelineError(f"{name}: corrupt or truncated gzip ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise PipelineError(f"{name}: not an IDX file (bad magic number)")
    if data[2] != _UBYTE:
        raise PipelineError(f"{name}: IDX element type 0x{data[2]:02x} is not unsigned byte")
    ndim = data[3]
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise PipelineError(f"{name}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    expected = header_len + int(np.prod(shape))
    if len(data) != expected:
        raise PipelineError(f"{name}: truncated IDX file ({len(data)} bytes, header says {expected})")
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def find_idx(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise PipelineError(f"missing IDX file {stem}[.gz] in {directory}")


def load(directory: Path) -> Mnist:
    directory = Path(directory)
    arrays = {}
    for key, stem in FILES.items():
        path = find_idx(directory, stem)
        arrays[key] = decode_idx(path.read_bytes(), path.name)
    return Mnist(**arrays)


def write(dataset: Mnist, directory: Path) -> dict[str, Path]:
    """Write the four raw IDX files into an existing (staging) directory."""
    written = {}
    for key, stem in FILES.items():
        path = Path(directory) / stem
        path.write_bytes(encode_idx(getattr(dataset, key)))
        written[key] = path
    return written


def verify(dataset: Mnist) -> None:
    """Shapes, dtype, label range and the canonical class counts of MNIST; anything else is refused."""
    expected_shapes = {
        "train_images": (60000, 28, 28),
        "train_labels": (60000,),
        "test_images": (10000, 28, 28),
        "test_labels": (10000,),
    }
    for key, shape in expected_shapes.items():
        array = getattr(dataset, key)
        if array.dtype != np.uint8 or array.shape != shape:
            raise PipelineError(f"{key}: expected uint8 {shape}, got {array.dtype} {array.shape}")
    for key, counts in (("train_labels", TRAIN_CLASS_COUNTS), ("test_labels", TEST_CLASS_COUNTS)):
        labels = getattr(dataset, key)
        if labels.max() > 9:
            raise PipelineError(f"{key}: label {int(labels.max())} is outside 0..9")
        found = tuple(int(c) for c in np.bincount(labels, minlength=10))
        if found != counts:
            raise PipelineError(f"{key}: class counts {found} are not canonical MNIST's {counts}")


def digest(directory: Path) -> str:
    """sha256 over the four IDX files in a fixed order: the dataset's identity in manifests."""
    combined = hashlib.sha256()
    for stem in FILES.values():
        combined.update(find_idx(Path(directory), stem).read_bytes())
    return combined.hexdigest()


def test_batch(data_dir: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` real test images, normalized exactly as in training, and their labels: what every
    parity check, calibration evaluation and golden file uses."""
    data = load(data_dir)
    return normalize(data.test_images[:count]), data.test_labels[:count].astype(np.int64)
