"""torchrun + DistributedDataParallel, 2 processes on this machine (gloo, loopback only)."""

import json
import os
import socket

import pytest

from pipeline.core.errors import PipelineError
from pipeline.model import checkpoint
from tests.conftest import REPO, TINY, config, run_cli, run_stage, with_groups
from tests.documented import documented
from training.config import TrainConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_cfg(*overrides: str) -> tuple[TrainConfig, dict]:
    cfg = config("train.distributed.nproc_per_node=2", f"train.distributed.master_port={_free_port()}", *overrides)
    return cfg.train, cfg.model


@pytest.fixture
def importable_tests(monkeypatch):
    """Workers are fresh interpreters: let them import tests.helpers like this process does."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


@pytest.mark.slow
def test_two_processes_train_a_checkpoint_that_exports_like_a_single_process_one(tmp_path, mnist_dir, tiny_model_dir):
    """The configuration page's command, as written (plus the tiny config and a free port), through the CLI."""
    trained = run_cli(*documented("pipeline train train.distributed.nproc_per_node=2")[1:], *TINY,
                      f"train.distributed.master_port={_free_port()}", f"paths.data={mnist_dir}",
                      f"paths.model={tmp_path / 'model'}", f"paths.metrics={tmp_path / 'metrics'}")
    assert trained.returncode == 0, trained.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics" / "train.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs"] == 2
    single = json.loads((tiny_model_dir / "model.json").read_text())
    assert json.loads((tmp_path / "model" / "model.json").read_text())["parameters"] == single["parameters"]
    assert metrics["test_accuracy"] > 0.95  # single-process on this config reaches ~0.98
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["model.json", "model.pt"]  # rank 0 only
    model, _ = checkpoint.load(tmp_path / "model")
    small = config("export.parity_samples=64")
    exported = run_stage("export", small, model_dir=tmp_path / "model", data_dir=mnist_dir, out_dir=tmp_path / "onnx")
    assert exported.metrics["parity"]["agreement"] == 1.0 and model.training is False


@pytest.mark.slow
def test_a_worker_that_dies_fails_the_launch_with_a_clear_message(tmp_path, mnist_dir, importable_tests):
    cfg, _ = _ddp_cfg("train.distributed.timeout_s=120")
    spec = {"_target_": "tests.helpers.user_models.DiesOnRank1"}
    with pytest.raises(PipelineError, match=r"distributed training failed: .*(exitcode|exit code).*17"):
        run_stage("train", with_groups(config(), train=cfg, model=spec), data_dir=mnist_dir,
                  out_dir=tmp_path / "model", seed=0)
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_a_launch_that_cannot_finish_is_killed_at_its_timeout(tmp_path, mnist_dir):
    """nnodes=2 with only this node started: rendezvous waits for a peer that never comes."""
    cfg, spec = _ddp_cfg("train.distributed.nnodes=2", "train.distributed.timeout_s=8")
    with pytest.raises(PipelineError, match="did not finish within 8s; all workers killed"):
        run_stage("train", with_groups(config(), train=cfg, model=spec), data_dir=mnist_dir,
                  out_dir=tmp_path / "model", seed=0)
