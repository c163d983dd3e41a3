"""Session fixtures: real MNIST prepared once, a tiny CNN trained once on a subset, its ONNX variants.

Everything is real (the pinned wheel, real training, real ORT sessions); only the sizes are small.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.core import runner
from pipeline.core.config import resolve
from pipeline.core.io import write_json
from pipeline.core.stage import StageResult, load
from pipeline.runtimes import envs
from pipeline.runtimes.envs import RuntimeUnavailable

REPO = Path(__file__).resolve().parent.parent
DEVICE_RUNS = REPO / "metrics" / "device_runs"
# The wheel cache is shared with `make repro`, so the test suite downloads MNIST at most once.
CACHE = REPO / ".cache"
TINY = ["model=tiny", "train.epochs=2", "train.subset=20000", "train.eval_subset=2000",
        # the tiny model's channels (8, 16, 32) one by one, one epoch of fine-tuning (as conf/experiment/ci.yaml)
        "prune.flops_budget=0.8", "prune.round_to=null", "prune.finetune.epochs=1"]


def config(*overrides: str):
    """The validated config of the tiny pipeline (+ overrides), as the CLI would run it."""
    return resolve(None, [*TINY, *overrides])


def with_groups(cfg, **groups):
    """The composed config with some groups replaced (a hand-built DataConfig, a stricter gate set)."""
    return SimpleNamespace(**{**vars(cfg), **groups})


def run_stage(name: str, cfg, item: str | None = None, **given) -> StageResult:
    """A stage's `run`, called as the runner calls it (core/runner.py `arguments`): the config values its
    declaration names, taken from the composed `cfg`, and its declared paths. A test gives the paths it uses
    by their keyword, and every output (nothing writes into the repository's artifacts/), plus run() options."""
    stage = load(name)
    beside = {k: v for k, v in _pruned_beside(given).items() if k in stage.inputs or k in stage.outputs}
    given = {**beside, **given}
    missing = set(stage.outputs) - set(given)
    assert not missing, f"{name}: the test must give its output paths {sorted(missing)}"
    return stage.run(**{**runner.arguments(stage, cfg, item), **given})


def _pruned_beside(given: dict) -> dict:
    """The pruned checkpoint and variants a test does not name lie beside the ones it names, as in artifacts/
    (model/ and pruned/; variants/simplified and variants/pruned), never the repository's own."""
    beside = {}
    if "model_dir" in given:
        beside["pruned_dir"] = Path(given["model_dir"]).parent / "pruned"
    if "out_dir" in given:  # export
        beside["pruned_out"] = Path(given["out_dir"]).parent / "pruned_exported"
    if "model_in" in given:  # optimize
        beside["pruned_in"] = Path(given["model_in"]).parent.parent / "pruned_exported" / "model.onnx"
    if "simplified_dir" in given:
        beside["pruned_dir"] = Path(given["simplified_dir"]).parent / "pruned"
    return beside


def copy_repository(dest: Path) -> Path:
    """dest/repo: the working tree's tracked and unignored files (what a commit of it would hold), in a fresh git
    repository with nothing committed."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout
    with open(dest / "repo.tar", "wb") as archive:
        subprocess.run(["tar", "-cf", "-", "--null", "-T", "-"], cwd=REPO, input=files, check=True, stdout=archive)
    repo = dest / "repo"
    repo.mkdir()
    subprocess.run(["tar", "-xf", str(dest / "repo.tar"), "-C", str(repo)], check=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 600):
    """`pipeline ARGS` in a fresh interpreter, the way a user or DVC runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )


def pytest_configure(config):
    """`make test` runs the suite on pytest-xdist's workers, one per core, each held to a core of its own (its
    subprocesses inherit it): torch and onnxruntime size their thread pools by the cores they may use, so two
    workers do not fight over both cores, spinning."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(worker.removeprefix("gw")) % len(cores)]})


def pytest_collection_modifyitems(items):
    """Tests marked `longest` first, longest first, so that they start early instead of one worker finishing the
    run alone with one (xdist's work stealing moves the tests queued behind them to an idle worker). (Not a test
    that shares a module fixture with the rest of its module: that fixture would be built twice.)"""
    def minutes(item) -> float:
        marker = item.get_closest_marker("longest")
        return marker.kwargs.get("minutes", 1) if marker else 0

    items.sort(key=minutes, reverse=True)  # stable: the rest keep their order


# Set by .ci/run: there, a test that needs a tool this machine lacks (Chromium, Node, qemu, cmake) fails; elsewhere
# it is skipped, naming what is missing.
REQUIRE_TOOLS = "PIPELINE_TESTS_REQUIRE_TOOLS"


def _skipped_for_a_missing_tool(exc: Exception) -> None:
    if os.environ.get(REQUIRE_TOOLS):
        raise exc
    pytest.skip(f"this machine lacks what the test needs: {exc}")


def _tool_guard(item):
    try:
        return (yield)
    except RuntimeUnavailable as exc:
        _skipped_for_a_missing_tool(exc)


# A fixture's setup and the test itself: either may be the first to find the tool missing.
pytest_runtest_setup = pytest.hookimpl(wrapper=True)(_tool_guard)
pytest_runtest_call = pytest.hookimpl(wrapper=True)(_tool_guard)


@pytest.fixture(scope="session")
def committed_metrics(tmp_path_factory) -> Path:
    """A copy of the checkout's metrics/, taken once: tests read it, not the working tree, which a `dvc repro`
    running beside them may be rewriting."""
    import shutil

    return Path(shutil.copytree(REPO / "metrics", tmp_path_factory.mktemp("committed") / "metrics"))


@pytest.fixture(scope="session")
def tiny_cfg():
    return config()


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "mnist"
    run_stage("prepare", config(), out_dir=out, cache_dir=CACHE)
    return out


@pytest.fixture(scope="session")
def tiny_training(tmp_path_factory, tiny_cfg, mnist_dir) -> tuple[Path, StageResult]:
    """The tiny model trained once (and pruned beside it, as in artifacts/), with what the train stage returned."""
    out = tmp_path_factory.mktemp("model") / "model"
    trained = run_stage("train", tiny_cfg, data_dir=mnist_dir, out_dir=out, seed=0)
    run_stage("prune", tiny_cfg, model_dir=out, data_dir=mnist_dir, out_dir=out.parent / "pruned", seed=0)
    return out, trained


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_training) -> Path:
    return tiny_training[0]


def build_variants(cfg, model_dir: Path, data_dir: Path, out: Path) -> Path:
    """export + optimize into out/{exported,simplified,optimized,fp16} (and pruned_exported, pruned where a pruned
    checkpoint lies beside model_dir), as the DVC stages do."""
    run_stage("export", cfg, model_dir=model_dir, data_dir=data_dir, out_dir=out / "exported")
    run_stage("optimize", cfg, model_in=out / "exported" / "model.onnx", data_dir=data_dir,
              simplified_dir=out / "simplified", optimized_dir=out / "optimized", fp16_dir=out / "fp16")
    return out


def quantize_variant(cfg, name: str, variants: Path, model_dir: Path, data_dir: Path):
    return run_stage("quantize", cfg, name, model_in=variants / "simplified" / "model.onnx", model_dir=model_dir,
                     data_dir=data_dir, out_dir=variants / name, seed=0)


@pytest.fixture(scope="session")
def variants_dir(tmp_path_factory, tiny_cfg, tiny_model_dir, mnist_dir) -> Path:
    """exported, simplified, optimized and fp16 variants of the tiny model."""
    return build_variants(tiny_cfg, tiny_model_dir, mnist_dir, tmp_path_factory.mktemp("variants"))


def package_into(deploy: Path, cfg, target: str, variants_dir: Path, parity_file: Path, model_dir: Path,
                 data_dir: Path):
    """`pipeline package --target TARGET` with deploy/ as the output folder; the stage's result."""
    return run_stage("package", cfg, target, variants_dir=variants_dir, parity_file=parity_file,
                     model_dir=model_dir, data_dir=data_dir, device_runs=DEVICE_RUNS, out_dir=deploy / target,
                     archive=deploy / f"{target}.tar.gz", digest=deploy / f"{target}.tar.gz.sha256")


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, tiny_model_dir, mnist_dir, variants_dir) -> dict[str, Path]:
    """The tiny model quantized for x86 and ARM64, validated, and packaged for cpu_x86 and arm64_mobile."""
    cfg = config("quantize=[int8_static,int8_static_arm64]", "optimize.fp16.enabled=false")
    for name in cfg.quantize:
        quantize_variant(cfg, name, variants_dir, tiny_model_dir, mnist_dir)
    parity = run_stage("validate", cfg, model_dir=tiny_model_dir, data_dir=mnist_dir, variants_dir=variants_dir).metrics
    deploy = tmp_path_factory.mktemp("deploy")
    parity_file = write_json(deploy / "validate.json", parity)
    for target in ("cpu_x86", "arm64_mobile"):
        package_into(deploy, cfg, target, variants_dir, parity_file, tiny_model_dir, mnist_dir)
    return {"cpu_x86": deploy / "cpu_x86", "arm64_mobile": deploy / "arm64_mobile", "parity": parity,
            "parity_file": parity_file}


@pytest.fixture(scope="session")
def web_bundle(bundles, tiny_model_dir, mnist_dir, variants_dir, tmp_path_factory) -> Path:
    """The tiny model packaged for the web target: the page and onnxruntime-web, verified in Chromium."""
    envs.check_browser()  # RuntimeUnavailable: skipped (or, in CI, failed) naming what is missing
    deploy = tmp_path_factory.mktemp("web")
    package_into(deploy, config(), "web", variants_dir, bundles["parity_file"], tiny_model_dir, mnist_dir)
    return deploy / "web"
