"""Train the configured CNN on MNIST, alone or under torchrun.

Inputs:  data_dir (IDX files from prepare); the model's `_target_` spec
Outputs: out_dir/model.pt (state_dict) + out_dir/model.json (how to rebuild the module);
         metrics: final test accuracy/loss, per-epoch history, wall time
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.stages import StageResult
from training.config import TrainConfig


def run(cfg: TrainConfig, model_spec: dict, data_dir: Path, out_dir: Path, *, seed: int) -> StageResult:
    if cfg.distributed.world_size > 1:
        history = _train_distributed(cfg, model_spec, data_dir, out_dir, seed)
    else:
        history = _train_single(cfg, model_spec, data_dir, out_dir, seed)
    final = history["epochs"][-1] if history.get("epochs") else {}
    return StageResult(
        outputs={"model": Path(out_dir)},
        metrics={
            "test_accuracy": final.get("test_accuracy"),
            "test_loss": final.get("test_loss"),
            "train_loss": final.get("train_loss"),
            "epochs": cfg.epochs,
            "seconds": round(history.get("seconds", 0.0), 2),
            "world_size": history.get("world_size", 1),
            "history": history.get("epochs", []),
        },
    )


def _train_single(cfg: TrainConfig, model_spec: dict, data_dir: Path, out_dir: Path, seed: int) -> dict:
    import torch

    from pipeline import checkpoint
    from pipeline.io import atomic_dir
    from pipeline.progress import progress_bar
    from training.data import mnist_tensors
    from training.loop import fit, seed_everything

    seed_everything(seed, cfg.threads)
    model = checkpoint.build(model_spec).to(memory_format=torch.channels_last)
    train, test = mnist_tensors(Path(data_dir), cfg.subset, cfg.eval_subset)
    try:
        with progress_bar() as progress:
            history = fit(model, cfg, train, test, seed=seed, progress=progress)
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    with atomic_dir(Path(out_dir)) as staging:
        checkpoint.save(model, model_spec, staging, {"world_size": 1})
    return {"epochs": history.epochs, "seconds": history.seconds, "world_size": 1}


def _train_distributed(cfg: TrainConfig, model_spec: dict, data_dir: Path, out_dir: Path, seed: int) -> dict:
    from training.distributed import LaunchError, launch

    try:
        return launch(cfg, model_spec, Path(data_dir), Path(out_dir), seed)
    except LaunchError as exc:
        raise PipelineError(str(exc)) from None
