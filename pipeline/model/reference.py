"""The PyTorch reference every parity check compares against: the checkpoint in eval mode, in float64.

Why float64: in float32 the reference logits depend on which kernels this CPU dispatches to (ATen's vector
width, MKL's code path, oneDNN's ISA), a few ulps apart, and those ulps reach every parity figure that
export, quantize, validate and package write. In float64 the kernels differ by ~1e-16; rounded to float32,
those differences vanish (a logit would have to lie within ~1e-16 of a float32 rounding boundary), so the
reference, and every figure computed from it, is the same bytes on any x86-64 CPU. It is also the better
reference: the checkpoint's function correctly rounded, not the sum of one CPU's float32 roundings.

Float64 costs ~2.5x the float32 forward pass, so each reference is computed once per checkpoint, model code
and images, and kept under .cache/reference/ (arrays only, keyed by their digest: reused only for the same
inputs; deleting the folder only costs time).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from pathlib import Path

import numpy as np

from pipeline.core.io import atomic_path, exclusive
from pipeline.model import checkpoint, lineage

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "reference"
log = logging.getLogger(__name__)


def logits(model_dir: Path, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """The checkpoint's logits on `x`, computed in float64 and rounded to float32 (computed in float32 where the
    model cannot run in float64, with a warning: then they may differ in their last bits between CPUs)."""
    model, _ = checkpoint.load(Path(model_dir))
    cached = CACHE / f"{_key(Path(model_dir), model, x)}.npy"
    with exclusive(cached):
        if cached.is_file():
            return np.load(cached, allow_pickle=False)
        result = _forward(model, x, batch)
        with atomic_path(cached) as staging, open(staging, "wb") as file:
            np.save(file, result, allow_pickle=False)
    return result


def _forward(model, x: np.ndarray, batch: int) -> np.ndarray:
    import torch

    chunks = [torch.from_numpy(x[i : i + batch]) for i in range(0, len(x), batch)]
    with torch.no_grad():
        try:
            model64 = model.double()
            return np.concatenate([model64(chunk.double()).numpy() for chunk in chunks]).astype(np.float32)
        except (RuntimeError, TypeError) as exc:  # e.g. a float32 tensor built inside forward()
            log.warning("reference in float32: %s does not run in float64 (%s)", type(model).__name__,
                        str(exc).splitlines()[0][:200])
            model32 = model.float()
            return np.concatenate([model32(chunk).numpy() for chunk in chunks])


def _key(model_dir: Path, model, x: np.ndarray) -> str:
    """Checkpoint, the source file of the model's class, the images and torch's version."""
    import torch

    digest = hashlib.sha256()
    digest.update(lineage.checkpoint_digest(model_dir).encode())
    source = inspect.getsourcefile(type(model))
    digest.update(Path(source).read_bytes() if source else type(model).__qualname__.encode())
    digest.update(f"{x.dtype}{x.shape}".encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(torch.__version__.encode())
    return digest.hexdigest()
