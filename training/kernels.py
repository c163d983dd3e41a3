"""Which CPU kernels training runs on, so that the same commit trains the same weights on any x86-64 CPU.

PyTorch picks kernels by the CPU it finds: oneDNN (mkldnn) by its best ISA, ATen's vectorized kernels by its
"CPU capability" (AVX-512 or AVX2), MKL by its code path; each rounds differently, and the weights (then every
downstream hash) differ between CPU generations. `portable` pins all three to what every x86-64 CPU with AVX2
runs the same way: oneDNN off (ATen's own convolutions, through MKL's GEMM), ATen at AVX2, MKL's conditional
numerical reproducibility at AVX2, and MKL's dispatch capped at AVX2 (an environment that asks MKL for AVX-512
with MKL_ENABLE_INSTRUCTIONS computes other bytes despite MKL_CBWR: tests/training/test_kernels.py). The
environment variables are read when torch and MKL start, so pinned training runs in a fresh interpreter (a
spawned process, or torchrun's workers) that starts with them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

PINNED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
              "ONEDNN_MAX_CPU_ISA": "AVX2"}
PINNED_CAPABILITY = "AVX2"
_channels_last = True  # oneDNN's fast layout; ATen's own convolutions are faster on the default one


def layout():
    """The memory format tensors and the model use in this process (set by `apply`)."""
    import torch

    return torch.channels_last if _channels_last else torch.contiguous_format


@contextlib.contextmanager
def environment(portable: bool) -> Iterator[None]:
    """os.environ with the pins while a child interpreter is started (it inherits them); restored after."""
    saved = {key: os.environ.get(key) for key in PINNED_ENV}
    if portable:
        os.environ.update(PINNED_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def apply(portable: bool) -> None:
    """In the training process, before any work: oneDNN off when pinned, and proof that the pins took (a
    process whose torch had already chosen its kernels would otherwise train unpinned, silently)."""
    import torch

    global _channels_last
    _channels_last = not portable
    torch.backends.mkldnn.enabled = not portable
    if portable and torch.backends.cpu.get_cpu_capability() != PINNED_CAPABILITY:
        raise RuntimeError(f"training pinned to {PINNED_CAPABILITY} kernels, but torch runs "
                           f"{torch.backends.cpu.get_cpu_capability()}: start it with {PINNED_ENV}")


def call(portable: bool, function, *args):
    """`function(*args)` here, or, with portable kernels, in a fresh interpreter that starts with the pins (torch
    reads them when it starts; this process may have started it already). A child that dies is one line."""
    if not portable:
        return function(*args)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from pipeline.core.errors import PipelineError

    try:
        with environment(True), ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(function, *args).result()
    except BrokenProcessPool:  # killed (out of memory, a signal): its staging folder never got the final name
        raise PipelineError("the training process died before it finished (killed, or out of memory); nothing was "
                            "written under the final name") from None
