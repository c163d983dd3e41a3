"""Portable kernels (training/kernels.py): the same weights whatever kernels the CPU would pick.

One machine cannot be another CPU, but it can make PyTorch dispatch as one would: oneDNN's ISA, ATen's CPU
capability and MKL's code path are environment variables. Pinned training overrides them and trains the same
bytes; unpinned, the same emulation changes the weights (so the override is what keeps them)."""

import hashlib
import os
import subprocess
import sys

import pytest

from tests.conftest import TINY, run_cli
from training import kernels

SMALL = [*TINY, "train.epochs=1", "train.subset=2000", "train.eval_subset=500"]
# What another x86-64 CPU would make PyTorch pick: no AVX-512 for oneDNN and ATen, MKL's AVX2 path.
AVX2_MACHINE = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
# And one that is older still, for oneDNN and MKL.
SSE_MACHINE = {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"}
# An environment that asks MKL for its AVX-512 code: MKL_CBWR alone does not hold MKL to AVX2 then.
MKL_AVX512 = {"MKL_ENABLE_INSTRUCTIONS": "AVX512"}


def _weights(tmp_path, data, name: str, env: dict, *overrides: str) -> str:
    out = tmp_path / name
    result = run_cli("train", *SMALL, *overrides, f"paths.data={data}", f"paths.model={out}",
                     f"paths.metrics={tmp_path / 'm'}", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()


@pytest.mark.slow
def test_pinned_training_overrides_whatever_dispatch_the_environment_asks_for(tmp_path, mnist_dir):
    """The pins replace the dispatch variables a machine's environment sets, so every run below trains with
    the same settings and the same bytes: this proves the override (and determinism), not independence from
    the CPU, which one machine cannot show. That is shown by a clone on another CPU generation reproducing the
    committed dvc.lock's hashes (docs/configuration.md, reproducibility)."""
    native = _weights(tmp_path, mnist_dir, "native", {})
    assert _weights(tmp_path, mnist_dir, "avx2", AVX2_MACHINE) == native
    assert _weights(tmp_path, mnist_dir, "sse", SSE_MACHINE) == native
    assert _weights(tmp_path, mnist_dir, "mkl", MKL_AVX512) == native


@pytest.mark.slow
def test_unpinned_training_follows_the_cpu(tmp_path, mnist_dir):
    """The emulation is real: without the pins, the same environment trains other weights on this machine
    (where the machine's best ISA is AVX2 already, the two coincide and this proves nothing; skip)."""
    import torch

    if torch.backends.cpu.get_cpu_capability() == "AVX2":
        pytest.skip("this CPU's best is AVX2: the emulated machine is this one")
    native = _weights(tmp_path, mnist_dir, "native", {}, "train.portable_kernels=false")
    assert _weights(tmp_path, mnist_dir, "avx2", AVX2_MACHINE, "train.portable_kernels=false") != native


# ATen's convolution (oneDNN off, as pinned) and a matrix product: both reach MKL's GEMM.
GEMM = """import hashlib, torch
torch.backends.mkldnn.enabled = False
g = torch.Generator().manual_seed(0)
x, w = torch.randn(64, 16, 14, 14, generator=g), torch.randn(32, 16, 5, 5, generator=g)
a, b = torch.randn(257, 511, generator=g), torch.randn(511, 129, generator=g)
out = torch.nn.functional.conv2d(x, w).numpy().tobytes() + (a @ b).numpy().tobytes()
print(hashlib.sha256(out).hexdigest())"""


def _gemm_digest(env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", GEMM], env={**os.environ, **env}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_mkl_asked_for_avx512_computes_other_bytes_unless_its_dispatch_is_pinned():
    """Why MKL_ENABLE_INSTRUCTIONS is pinned beside MKL_CBWR: with every other pin, an environment that asks MKL
    for AVX-512 changes MKL's results on a CPU that has it; with it pinned, they are the pinned ones."""
    import torch

    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        pytest.skip("this CPU has no AVX-512 for MKL to dispatch to")
    others = {k: v for k, v in kernels.PINNED_ENV.items() if k != "MKL_ENABLE_INSTRUCTIONS"}
    pinned = _gemm_digest(kernels.PINNED_ENV)
    assert _gemm_digest({**others, **MKL_AVX512}) != pinned
    assert _gemm_digest({**MKL_AVX512, **kernels.PINNED_ENV}) == pinned
