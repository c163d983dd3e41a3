"""Train the configured CNN on MNIST, alone or under torchrun.

Inputs:  data_dir (IDX files from prepare); the model's `_target_` spec
Outputs: out_dir/model.pt (state_dict) + out_dir/model.json (how to rebuild the module);
         metrics: final test accuracy/loss, per-epoch history, wall time
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator

from pipeline.core.errors import PipelineError
from pipeline.core.io import atomic_dir
from pipeline.core.stage import Stage, StageResult
from pipeline.model import checkpoint
from pipeline.present.progress import progress_bar
from training.config import TrainConfig


def _names_a_class(spec: dict[str, Any]) -> dict[str, Any]:
    target = spec.get("_target_")
    if not isinstance(target, str) or target == "???" or "." not in target:
        raise ValueError("`_target_` must name an nn.Module class, e.g. model._target_=my_package.MyNet")
    return spec


# The model group is open: any class and its constructor arguments. checkpoint.build checks the arguments
# against the class's signature before any training starts.
ModelSpec = Annotated[dict[str, Any], AfterValidator(_names_a_class)]


def run(cfg: TrainConfig, model_spec: dict, data_dir: Path, out_dir: Path, *, seed: int) -> StageResult:
    checkpoint.build(model_spec)  # a wrong class or argument fails here, before data loading or torchrun
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
            "world_size": history.get("world_size", 1),
        },
        observations={"training_seconds": round(history.get("seconds", 0.0), 2)},
        plots={"train": history.get("epochs", [])},
    )


def _train_single(cfg: TrainConfig, model_spec: dict, data_dir: Path, out_dir: Path, seed: int) -> dict:
    from training import kernels

    return kernels.call(cfg.portable_kernels, _train_here, cfg, model_spec, data_dir, out_dir, seed)


def _train_here(cfg: TrainConfig, model_spec: dict, data_dir: Path, out_dir: Path, seed: int) -> dict:
    # training/ defines torch modules at its top, so it is heavy like torch itself: imported here, not at
    # module level, where `pipeline --help` reads this stage's declaration.
    from training import kernels
    from training.data import mnist_tensors
    from training.loop import fit, seed_everything

    seed_everything(seed, cfg.threads, cfg.portable_kernels)
    model = checkpoint.build(model_spec).to(memory_format=kernels.layout())
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


STAGE = Stage(
    name="train", run=run, help="Train the configured CNN (train.distributed.nproc_per_node=N for torchrun/DDP).",
    owns={"model": ModelSpec, "train": TrainConfig}, config={"cfg": "train", "model_spec": "model", "seed": "seed"},
    inputs={"data_dir": "${paths.data}"}, outputs={"out_dir": "${paths.model}"}, plots=("train",),
    headline=lambda m: {"accuracy": round(m["test_accuracy"], 4), "epochs": m["epochs"]},
)
