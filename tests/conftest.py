"""Session fixtures: real MNIST prepared once, a tiny CNN trained once on a subset, its ONNX variants.

Everything is real (the pinned wheel, real training, real ORT sessions); only the sizes are small.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.config import resolve

REPO = Path(__file__).resolve().parent.parent
DEVICE_RUNS = REPO / "metrics" / "device_runs.json"
# The wheel cache is shared with `make repro`, so the test suite downloads MNIST at most once.
CACHE = REPO / ".cache"
TINY = ["model=tiny", "train.epochs=2", "train.subset=20000", "train.eval_subset=2000"]


def config(*overrides: str):
    """The validated config of the tiny pipeline (+ overrides), as the CLI would run it."""
    return resolve(None, [*TINY, *overrides])


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 600):
    """`pipeline ARGS` in a fresh interpreter, the way a user or DVC runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_cfg():
    return config()


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    from pipeline.stages import prepare

    out = tmp_path_factory.mktemp("data") / "mnist"
    prepare.run(config().data, out, CACHE)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_cfg, mnist_dir) -> Path:
    from pipeline.stages import train

    out = tmp_path_factory.mktemp("model") / "model"
    train.run(tiny_cfg.train, tiny_cfg.model, mnist_dir, out, seed=0)
    return out


def build_variants(cfg, model_dir: Path, data_dir: Path, out: Path) -> Path:
    """export + optimize into out/{exported,simplified,optimized,fp16}, as the DVC stages do."""
    from pipeline.stages import export, optimize

    export.run(cfg.export, cfg.validate.gates["fp32"], model_dir, data_dir, out / "exported")
    optimize.run(cfg.optimize, cfg.validate.gates, out / "exported" / "model.onnx", data_dir,
                 out / "simplified", out / "optimized", out / "fp16")
    return out


def quantize_variant(cfg, name: str, variants: Path, model_dir: Path, data_dir: Path):
    from pipeline.stages import quantize

    return quantize.run(cfg.quantize[name], cfg.validate.gates, variants / "simplified" / "model.onnx", model_dir,
                        data_dir, variants / name, variant=name, seed=0)


@pytest.fixture(scope="session")
def variants_dir(tmp_path_factory, tiny_cfg, tiny_model_dir, mnist_dir) -> Path:
    """exported, simplified, optimized and fp16 variants of the tiny model."""
    return build_variants(tiny_cfg, tiny_model_dir, mnist_dir, tmp_path_factory.mktemp("variants"))


def package_into(deploy: Path, target_cfg, target: str, variants_dir: Path, parity_file: Path, model_dir: Path,
                 data_dir: Path):
    """`pipeline package --target TARGET` with deploy/ as the output folder; the stage's result."""
    from pipeline.stages import package

    return package.run(target_cfg, variants_dir, parity_file, model_dir, data_dir, DEVICE_RUNS, deploy / target,
                       deploy / f"{target}.tar.gz", deploy / f"{target}.tar.gz.sha256", target=target)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, tiny_model_dir, mnist_dir, variants_dir) -> dict[str, Path]:
    """The tiny model quantized for x86 and ARM64, validated, and packaged for cpu_x86 and arm64_mobile."""
    from pipeline.core.io import write_json
    from pipeline.stages import validate

    cfg = config("quantize=[int8_static,int8_static_arm64]", "optimize.fp16.enabled=false", "validate.samples=2000",
                 "quantize.int8_static.eval_samples=1000", "quantize.int8_static_arm64.eval_samples=1000")
    for name in cfg.quantize:
        quantize_variant(cfg, name, variants_dir, tiny_model_dir, mnist_dir)
    parity = validate.run(cfg.validate, cfg.quantize, False, tiny_model_dir, mnist_dir, variants_dir).metrics
    deploy = tmp_path_factory.mktemp("deploy")
    parity_file = write_json(deploy / "validate.json", parity)
    for target in ("cpu_x86", "arm64_mobile"):
        package_into(deploy, cfg.target[target], target, variants_dir, parity_file, tiny_model_dir, mnist_dir)
    return {"cpu_x86": deploy / "cpu_x86", "arm64_mobile": deploy / "arm64_mobile", "parity": parity,
            "parity_file": parity_file}
