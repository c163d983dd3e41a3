"""Session fixtures: real MNIST prepared once, a tiny CNN trained once on a subset, its ONNX variants.

Everything is real (the pinned wheel, real training, real ORT sessions); only the sizes are small.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import build, compose, to_plain

REPO = Path(__file__).resolve().parent.parent
# The wheel cache is shared with `make repro`, so the test suite downloads MNIST at most once.
CACHE = REPO / ".cache"
TINY = ["model=tiny", "train.epochs=2", "train.subset=20000", "train.eval_subset=2000"]


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 600):
    """`pipeline ARGS` in a fresh interpreter, the way a user or DVC runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_cfg():
    return compose(TINY)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    from pipeline.stages import prepare

    out = tmp_path_factory.mktemp("data") / "mnist"
    prepare.run(build(prepare.DataConfig, compose([]).data), out, CACHE)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_cfg, mnist_dir) -> Path:
    from pipeline.stages import train
    from training.config import TrainConfig

    out = tmp_path_factory.mktemp("model") / "model"
    train.run(build(TrainConfig, tiny_cfg.train), to_plain(tiny_cfg.model), mnist_dir, out, seed=0)
    return out


@pytest.fixture(scope="session")
def variants_dir(tmp_path_factory, tiny_cfg, tiny_model_dir, mnist_dir) -> Path:
    """exported, simplified, optimized and fp16 variants of the tiny model."""
    from pipeline.stages import export, optimize

    out = tmp_path_factory.mktemp("variants")
    export.run(build(export.ExportConfig, tiny_cfg.export), tiny_model_dir, mnist_dir, out / "exported",
               provenance={"source_commit": "test"})
    optimize.run(build(optimize.OptimizeConfig, tiny_cfg.optimize), out / "exported" / "model.onnx", out)
    return out


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, tiny_cfg, tiny_model_dir, mnist_dir, variants_dir) -> dict[str, Path]:
    """The tiny model quantized for x86 and ARM64, validated, and packaged for cpu_x86 and arm64_mobile."""
    from pipeline import onnx_utils
    from pipeline.stages import package, quantize, validate

    for name in ("int8_static", "int8_static_arm64"):
        qcfg = build(quantize.QuantizeConfig, tiny_cfg.quantize[name])
        qcfg = dataclasses.replace(qcfg, fallback=dataclasses.replace(qcfg.fallback, eval_samples=1000))
        quantize.run(qcfg, variants_dir / "simplified" / "model.onnx", mnist_dir, variants_dir / name, seed=0)
    kinds = {"simplified": "fp32", "optimized": "fp32", "int8_static": "int8", "int8_static_arm64": "int8"}
    vcfg = dataclasses.replace(build(validate.ValidateConfig, tiny_cfg.validate), samples=2000)
    parity = validate.run(vcfg, tiny_model_dir, mnist_dir,
                          {n: (onnx_utils.variant_path(variants_dir, n), k) for n, k in kinds.items()},
                          variants_dir / "simplified" / "model.onnx").metrics
    deploy = tmp_path_factory.mktemp("deploy")
    for target in ("cpu_x86", "arm64_mobile"):
        package.run(build(package.TargetConfig, tiny_cfg.target[target]), target, variants_dir, parity, mnist_dir,
                    deploy / target, provenance={"source_commit": "0123456789abcdef", "config_sha256": "c" * 64,
                                                 "dataset_digest": "d" * 64})
    return {"cpu_x86": deploy / "cpu_x86", "arm64_mobile": deploy / "arm64_mobile", "parity": parity}
