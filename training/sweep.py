"""The pruning sweep: pruned models at several FLOP budgets against the same architectures trained from scratch.

For each budget the trained model is pruned (as the prune stage does, `training/pruning.py`) and fine-tuned;
the pruned architecture is also re-initialized and trained from scratch. Both get the same data: `subset`
training images. The budget of the scratch model is the pruned model's whole history in epochs: the parent's
`train.epochs` plus the fine-tuning epochs, all over the subset. (The parent itself saw the full training set,
so the comparison favours pruning where the subset is small; the page says so.)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pipeline.core.errors import PipelineError
from pipeline.model import accuracy_gate, checkpoint
from training import kernels, pruning
from training.config import PruneConfig, TrainConfig
from training.loop import fit, predictions, seed_everything


def point(prune_cfg: PruneConfig, train_cfg: TrainConfig, budget: float, epochs: int, parent: nn.Module, train_set,
          test_set, seed: int, progress) -> dict:
    """One budget: the pruned and the from-scratch model's test accuracy, the pruned model's shape and ONNX.
    `parent` (the trained model, loaded once) is left as it is: teacher and student are copies."""
    teacher, student = copy.deepcopy(parent), copy.deepcopy(parent)
    try:
        pruned = pruning.prune(student, prune_cfg.model_copy(update={"flops_budget": budget}),
                               torch.zeros(1, 1, 28, 28))
    except pruning.PruningError as exc:
        raise PipelineError(f"prune_sweep.budgets: {exc}") from None
    scratch = _reinitialized(copy.deepcopy(student), seed).to(memory_format=kernels.layout())
    pruning.finetune(student, teacher, prune_cfg, train_cfg, train_set, test_set, seed=seed, progress=progress,
                     epochs=epochs)
    fit(scratch, train_cfg.model_copy(update={"epochs": train_cfg.epochs + epochs}), train_set, test_set, seed=seed,
        progress=progress)
    images, labels = test_set
    right = {"pruned": (predictions(student, images) == labels).numpy(),
             "scratch": (predictions(scratch, images) == labels).numpy()}
    return {
        "budget": budget,
        "macs_ratio": round(pruned.macs[1] / pruned.macs[0], 4),
        "channels": {name: list(pair) for name, pair in pruned.channels.items()},
        "pruned_accuracy": float(right["pruned"].mean()),
        "scratch_accuracy": float(right["scratch"].mean()),
        "better": better(right["pruned"], right["scratch"]),
        "student": student.to(memory_format=torch.contiguous_format).eval(),
    }


def better(pruned_right, scratch_right, confidence: float = 0.95) -> str:
    """"pruning" or "scratch" where the paired test shows one more accurate on these images (each side's
    one-sided bound at (1 + confidence) / 2: a two-sided decision at `confidence`), else "neither shown"."""
    one_sided = (1 + confidence) / 2
    if accuracy_gate.paired_drop(scratch_right, pruned_right, one_sided)["drop_upper_pt"] < 0:
        return "pruning"  # even the most scratch could beat pruning by is below zero
    if accuracy_gate.paired_drop(pruned_right, scratch_right, one_sided)["drop_upper_pt"] < 0:
        return "scratch"
    return "neither shown"


def _reinitialized(model: nn.Module, seed: int) -> nn.Module:
    """The same layers and shapes, every parameter drawn anew (each module's own reset_parameters)."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def run_all(prune_cfg: PruneConfig, train_cfg: TrainConfig, budgets: list[float], epochs: int, subset: int,
            model_dir, data_dir, seed: int, opset: int) -> tuple[float, list[dict]]:
    """The unpruned model's test accuracy, and every budget's point with the pruned model as ONNX bytes (exported
    at `opset`, for timing)."""
    from pipeline.model.torch_export import export_module
    from pipeline.present.progress import progress_bar
    from training.data import mnist_tensors

    seed_everything(seed, train_cfg.threads, train_cfg.portable_kernels)
    train_set, test_set = mnist_tensors(data_dir, subset)
    images, labels = test_set
    parent, _ = checkpoint.load(model_dir)
    unpruned = float((predictions(copy.deepcopy(parent), images) == labels).float().mean())
    points = []
    with progress_bar() as progress:
        for budget in budgets:
            result = point(prune_cfg, train_cfg, budget, epochs, parent, train_set, test_set, seed, progress)
            proto = export_module(result.pop("student"), opset=opset, dynamic_batch=True)
            points.append({**result, "onnx": proto.SerializeToString()})
    return unpruned, points
