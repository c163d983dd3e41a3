"""The PyTorch reference (pipeline/model/reference.py): computed in float64 and kept as float32, so the same
bytes whatever kernels the CPU would pick (float32 itself is not), and computed once per checkpoint, model
code and images."""

import hashlib
import subprocess
import sys

import numpy as np

from pipeline.model import reference
from tests.conftest import REPO
from tests.training.test_kernels import AVX2_MACHINE, SSE_MACHINE

FORWARD = """
import sys, numpy as np
from pathlib import Path
from pipeline.data import mnist
from pipeline.model import checkpoint, reference
model, _ = checkpoint.load(Path(sys.argv[1]))
x, _ = mnist.test_batch(Path(sys.argv[2]), 2000)
if sys.argv[3] == "float32":
    model.float(); import torch
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
else:
    out = reference._forward(model, x, 500)
sys.stdout.write(__import__("hashlib").sha256(out.tobytes()).hexdigest())
"""


def _digest(model_dir, data_dir, precision: str, env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", FORWARD, str(model_dir), str(data_dir), precision], cwd=REPO,
                          env={**__import__("os").environ, **env}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_reference_is_the_same_bytes_whatever_kernels_the_cpu_would_pick(tiny_model_dir, mnist_dir):
    native = _digest(tiny_model_dir, mnist_dir, "float64", {})
    assert _digest(tiny_model_dir, mnist_dir, "float64", AVX2_MACHINE) == native
    assert _digest(tiny_model_dir, mnist_dir, "float64", SSE_MACHINE) == native
    # The emulation is real: in float32, the older CPU's kernels give other bits.
    assert _digest(tiny_model_dir, mnist_dir, "float32", SSE_MACHINE) != _digest(tiny_model_dir, mnist_dir,
                                                                                "float32", {})


def test_the_reference_is_computed_once_per_checkpoint_and_images(tiny_model_dir, mnist_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(reference, "CACHE", tmp_path)
    from pipeline.data import mnist

    x, _ = mnist.test_batch(mnist_dir, 300)
    first = reference.logits(tiny_model_dir, x)
    assert first.dtype == np.float32 and first.shape == (300, 10) and len(list(tmp_path.iterdir())) == 1
    monkeypatch.setattr(reference, "_forward", lambda *a: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert hashlib.sha256(reference.logits(tiny_model_dir, x).tobytes()).digest() == hashlib.sha256(
        first.tobytes()).digest()
    monkeypatch.undo()
    monkeypatch.setattr(reference, "CACHE", tmp_path)
    reference.logits(tiny_model_dir, x[:100])  # other images: another entry
    assert len(list(tmp_path.iterdir())) == 2
