"""Prune the trained model's channels to a FLOP budget, fine-tune it, and gate its accuracy on the unpruned one.

Inputs:  model_dir (the trained checkpoint), data_dir (MNIST)
Outputs: out_dir/model.pt + model.json (a checkpoint like train's, with the pruned shape recorded:
         pipeline/model/structure.py); metrics: multiply-accumulates and parameters before/after, each layer's
         channels, the layers left whole and why, the fine-tuning history, and the paired accuracy gate
The fine-tuning runs the training loop with the train config's pins (portable kernels, threads), so the same
commit gives the same bytes on any x86-64 CPU. A failing gate writes everything, then exits 1.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import AccuracyGateFailure, PipelineError
from pipeline.core.io import atomic_dir
from pipeline.core.stage import Stage, StageResult
from pipeline.model import accuracy_gate, checkpoint, lineage
from pipeline.present.chatter import captured
from pipeline.present.progress import progress_bar
from training.config import PruneConfig, TrainConfig


def run(cfg: PruneConfig, train: TrainConfig, model_dir: Path, data_dir: Path, out_dir: Path, *,
        seed: int) -> StageResult:
    from training import kernels

    checkpoint.load(Path(model_dir))  # a missing or broken checkpoint fails here, before a process starts
    outcome = kernels.call(train.portable_kernels, _prune_here, cfg, train, Path(model_dir), Path(data_dir),
                           Path(out_dir), seed)
    gate, failed = outcome["accuracy_gate"], outcome["gate_failure"]  # the verdict the checkpoint records
    metrics = {**outcome["pruned"], "finetune": {"epochs": cfg.finetune.epochs,
                                                 "distill_weight": cfg.finetune.distill_weight},
               "accuracy_gate": {**gate, "max_drop_pt": cfg.gate.max_drop_pt, "passed": failed is None}}
    return StageResult(
        outputs={"pruned": Path(out_dir)}, metrics=metrics,
        observations={"finetune_seconds": round(outcome["seconds"], 2)},
        plots={"prune": outcome["epochs"]},
        gate_failures=[f"pruned: {failed} (to get past it: raise prune.flops_budget={cfg.flops_budget} or "
                       f"prune.finetune.epochs={cfg.finetune.epochs}, or allow more with "
                       f"prune.gate.max_drop_pt={cfg.gate.max_drop_pt})"] if failed else [],
        gate_failure_type=AccuracyGateFailure,
    )


def _prune_here(cfg: PruneConfig, train: TrainConfig, model_dir: Path, data_dir: Path, out_dir: Path,
                seed: int) -> dict:
    # torch and Torch-Pruning load here, in the (pinned) process that prunes, not where --help reads the stage.
    import torch

    from training import pruning
    from training.data import mnist_tensors
    from training.loop import predictions, seed_everything

    seed_everything(seed, train.threads, train.portable_kernels)
    teacher, spec = checkpoint.load(model_dir)
    student, _ = checkpoint.load(model_dir)
    try:
        with captured("prune"):  # Torch-Pruning's warnings (unwrapped parameters it prunes by their last dim)
            pruned = pruning.prune(student, cfg, torch.zeros(1, 1, 28, 28))
    except pruning.PruningError as exc:
        raise PipelineError(str(exc)) from None
    train_set, test_set = mnist_tensors(data_dir, train.subset)
    with progress_bar() as progress:
        history = pruning.finetune(student, teacher, cfg, train, train_set, test_set, seed=seed, progress=progress)
    images, labels = test_set
    right = {name: (predictions(model, images) == labels).numpy() for name, model in (("unpruned", teacher),
                                                                                      ("pruned", student))}
    gate = accuracy_gate.paired_drop(right["unpruned"], right["pruned"], cfg.gate.confidence)
    failure = accuracy_gate.verdict(gate, cfg.gate.max_drop_pt)
    # The checkpoint carries its verdict: export, validate and package build nothing from one that failed.
    verdict = {"passed": failure is None, "drop_upper_pt": gate["drop_upper_pt"], "max_drop_pt": cfg.gate.max_drop_pt}
    with atomic_dir(out_dir) as staging:
        checkpoint.save(student, spec, staging, {lineage.PRUNED_FROM: lineage.checkpoint_digest(model_dir),
                                                 lineage.ACCURACY_GATE: verdict})
    return {
        "pruned": {
            "macs": {"unpruned": pruned.macs[0], "pruned": pruned.macs[1],
                     "ratio": round(pruned.macs[1] / pruned.macs[0], 4)},
            "parameters": {"unpruned": pruned.params[0], "pruned": pruned.params[1]},
            "channels": {name: list(pair) for name, pair in pruned.channels.items()},
            "left_whole": pruned.left_whole,
        },
        "accuracy_gate": gate,
        "gate_failure": failure,
        "epochs": history.epochs,
        "seconds": history.seconds,
    }


STAGE = Stage(
    name="prune", run=run,
    help="Prune channels to a FLOP budget (Torch-Pruning), fine-tune with distillation, gate accuracy vs unpruned.",
    owns={"prune": PruneConfig}, config={"cfg": "prune", "train": "train", "seed": "seed"},
    inputs={"model_dir": "${paths.model}", "data_dir": "${paths.data}"}, outputs={"out_dir": "${paths.pruned}"},
    plots=("prune",),
    # Columns `dvc metrics show` already has (its table must stay narrow): the drop bound is in metrics/prune.json.
    headline=lambda m: {"accuracy": round(m["accuracy_gate"]["accuracy"], 4),
                        "gates_passed": f"{int(m['accuracy_gate']['passed'])}/1"},
)
