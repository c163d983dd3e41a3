"""Structured (channel) pruning with Torch-Pruning's dependency graph: channels are removed physically, so the
exported ONNX graph is smaller and faster, not a dense graph full of zeros.

The pruner removes the least important channels step by step (globally ranked, or the same share per layer)
until the model's multiply-accumulates fall within `flops_budget` of the unpruned model's. `round_to` keeps
each layer's channels a multiple of the runtime's vector block (ONNX Runtime's NCHWc convolutions compute in
blocks of 16 channels on AVX-512, 8 on AVX2: 12 channels cost what 16 do). The output layer and the layers
named in `ignore` keep every channel; so does a layer the dependency graph cannot prune, and each is named.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from pipeline.model import structure
from training import kernels
from training.config import PruneConfig, TrainConfig
from training.loop import Distillation, History, fit

IMPORTANCE = {
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "lamp": lambda: tp.importance.LAMPImportance(p=2),
    "fpgm": lambda: tp.importance.FPGMImportance(p=2),
    "bn_scale": lambda: tp.importance.BNScaleImportance(),
}


class PruningError(ValueError):
    """The configuration cannot be met on this model (a name it lacks, a budget out of reach)."""


@dataclass
class Pruned:
    macs: tuple[int, int]  # before, after
    params: tuple[int, int]
    channels: dict[str, tuple[int, int]]  # layer -> (before, after), for layers that lost channels
    left_whole: dict[str, str] = field(default_factory=dict)  # layer -> why it kept every channel


def prune(model: nn.Module, cfg: PruneConfig, example: torch.Tensor) -> Pruned:
    """Prune `model` in place to cfg.flops_budget of its multiply-accumulates."""
    modules = dict(model.named_modules())
    unknown = [name for name in cfg.ignore if name not in modules]
    if unknown:
        raise PruningError(f"prune.ignore names {', '.join(unknown)}, not a module of {type(model).__name__} "
                           f"(its layers: {', '.join(structure.channels(model))})")
    outputs = _output_layers(model, example)
    kept = {**{name: "the output layer" for name in outputs}, **{name: "prune.ignore" for name in cfg.ignore}}
    before = structure.channels(model)
    macs0, params0 = tp.utils.count_ops_and_params(model, example)
    pruner = tp.pruner.BasePruner(
        model, example, importance=IMPORTANCE[cfg.importance](), global_pruning=cfg.global_pruning,
        pruning_ratio=cfg.max_layer_ratio, max_pruning_ratio=cfg.max_layer_ratio, iterative_steps=cfg.steps,
        ignored_layers=[modules[name] for name in kept], round_to=cfg.round_to,
    )
    prunable = _prunable(pruner, modules)
    macs = macs0
    for _ in range(cfg.steps):
        if macs <= cfg.flops_budget * macs0:
            break
        pruner.step()
        macs, _ = tp.utils.count_ops_and_params(model, example)
    if macs > cfg.flops_budget * macs0:
        raise PruningError(
            f"prune.flops_budget={cfg.flops_budget} is out of reach: {macs / macs0:.2f} of the multiply-accumulates "
            f"remain with prune.max_layer_ratio={cfg.max_layer_ratio}, round_to={cfg.round_to} and "
            f"{len(kept)} layer(s) kept whole; raise prune.flops_budget or prune.max_layer_ratio"
            + (", or lower prune.round_to (a layer cannot lose a whole block of its channels)" if cfg.round_to else ""))
    after = structure.channels(model)
    _, params = tp.utils.count_ops_and_params(model, example)
    left_whole = {name: kept.get(name) or ("no channel removed" if name in prunable
                                           else "the dependency graph cannot prune it")
                  for name in before if after[name] == before[name]}
    return Pruned(macs=(int(macs0), int(macs)), params=(int(params0), int(params)),
                  channels={name: (before[name], after[name]) for name in before if after[name] != before[name]},
                  left_whole=left_whole)


def finetune(student: nn.Module, teacher: nn.Module, cfg: PruneConfig, train: TrainConfig, train_set, test_set, *,
             seed: int, progress, epochs: int | None = None) -> History:
    """Fine-tune the pruned `student` in place with train's loop (its batch size, augmentation and pins) for
    cfg.finetune's epochs (or `epochs`) at its peak rate, distilling from `teacher`, the unpruned model."""
    student, teacher = (m.to(memory_format=kernels.layout()) for m in (student, teacher))
    schedule = train.model_copy(update={"epochs": epochs or cfg.finetune.epochs, "max_lr": cfg.finetune.max_lr})
    distill = Distillation(teacher.eval(), cfg.finetune.distill_weight, cfg.finetune.temperature)
    return fit(student, schedule, train_set, test_set, seed=seed, progress=progress, teacher=distill)


def _output_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The layers whose output is the model's output (their channels are the classes): the last convolution
    or linear layer to run."""
    order: list[str] = []
    names = {module: name for name, module in model.named_modules()}
    hooks = [m.register_forward_hook(lambda m, _i, _o: order.append(names[m]))
             for m in names if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
    return order[-1:]


def _prunable(pruner, modules: dict[str, nn.Module]) -> set[str]:
    """Layers some dependency group can remove output channels from."""
    names = {module: name for name, module in modules.items()}
    roots = set()
    for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                          root_module_types=pruner.root_module_types):
        for dep, _ in group:
            module = dep.target.module
            if module in names and dep.handler in (tp.prune_conv_out_channels, tp.prune_linear_out_channels):
                roots.add(names[module])
    return roots
