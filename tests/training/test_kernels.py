"""Portable kernels (training/kernels.py): the same weights whatever kernels the CPU would pick.

One machine cannot be another CPU, but it can make PyTorch dispatch as one would: oneDNN's ISA, ATen's CPU
capability and MKL's code path are environment variables. Pinned training overrides them and trains the same
bytes; unpinned, the same emulation changes the weights (so the override is what keeps them)."""

import hashlib

import pytest

from tests.conftest import TINY, run_cli

SMALL = [*TINY, "train.epochs=1", "train.subset=6000", "train.eval_subset=500"]
# What another x86-64 CPU would make PyTorch pick: no AVX-512 for oneDNN and ATen, MKL's AVX2 path.
AVX2_MACHINE = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
# And one that is older still, for oneDNN and MKL.
SSE_MACHINE = {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"}


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


@pytest.mark.slow
def test_unpinned_training_follows_the_cpu(tmp_path, mnist_dir):
    """The emulation is real: without the pins, the same environment trains other weights on this machine
    (where the machine's best ISA is AVX2 already, the two coincide and this proves nothing; skip)."""
    import torch

    if torch.backends.cpu.get_cpu_capability() == "AVX2":
        pytest.skip("this CPU's best is AVX2: the emulated machine is this one")
    native = _weights(tmp_path, mnist_dir, "native", {}, "train.portable_kernels=false")
    assert _weights(tmp_path, mnist_dir, "avx2", AVX2_MACHINE, "train.portable_kernels=false") != native
