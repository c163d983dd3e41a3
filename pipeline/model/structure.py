"""A pruned model's shape, as data: which layers lost channels, recorded against a freshly built model.

Structured pruning changes a module's tensors and the integers that describe them (Conv2d.out_channels,
BatchNorm2d.num_features, ...). A checkpoint keeps only the state_dict (loaded with weights_only=True, never
unrestricted pickle) and the `_target_` spec, so a pruned checkpoint also records, per module, the attributes
and tensor shapes that differ from what the spec builds; `apply` re-applies them to a fresh build before the
state_dict loads. Torch-Pruning's own serialization pickles whole module dictionaries, which is what we avoid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.errors import PipelineError

if TYPE_CHECKING:
    from torch import nn


def record(model: nn.Module, fresh: nn.Module) -> dict[str, dict]:
    """{module name: {"attrs": {name: value}, "shapes": {tensor name: shape}}} wherever `model` differs from
    `fresh` (the same spec, built anew); {} for an unpruned model. JSON-ready."""
    fresh_modules = dict(fresh.named_modules())
    changes = {}
    for name, module in model.named_modules():
        reference = fresh_modules.get(name)
        if reference is None:
            raise PipelineError(f"cannot record the pruned structure: module {name!r} is not in a fresh build")
        attrs = {key: _json(value) for key, value in vars(module).items()
                 if key not in _MODES and not key.startswith("_") and _plain(value)
                 and vars(reference).get(key) != value}
        shapes = {key: list(tensor.shape) for key, tensor in _tensors(module).items()
                  if tuple(tensor.shape) != tuple(_tensors(reference)[key].shape)}
        if attrs or shapes:
            changes[name] = {"attrs": attrs, "shapes": shapes}
    return changes


def apply(model: nn.Module, changes: dict[str, dict]) -> nn.Module:
    """Give a freshly built `model` the recorded shapes (empty tensors, filled by load_state_dict next)."""
    import torch
    from torch import nn

    modules = dict(model.named_modules())
    for name, change in changes.items():
        module = modules.get(name)
        if module is None:
            raise PipelineError(f"the checkpoint's pruned structure names module {name!r}, which the model class "
                                "no longer has: prune again from this model")
        for key, value in change.get("attrs", {}).items():
            setattr(module, key, tuple(value) if isinstance(getattr(module, key, None), tuple) else value)
        for key, shape in change.get("shapes", {}).items():
            old = _tensors(module)[key]
            empty = torch.empty(shape, dtype=old.dtype)
            if key in module._parameters:
                module._parameters[key] = nn.Parameter(empty, requires_grad=old.requires_grad)
            else:
                module._buffers[key] = empty
    return model


def channels(model: nn.Module) -> dict[str, int]:
    """Output channels (or features) of every convolution and linear layer, by module name."""
    from torch import nn

    return {name: (m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features)
            for name, m in model.named_modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))}


_MODES = {"training"}  # state of the run, not of the shape


def _tensors(module: nn.Module) -> dict:
    return {k: v for k, v in {**module._parameters, **module._buffers}.items() if v is not None}


def _plain(value) -> bool:
    if isinstance(value, bool | int | float | str):
        return True
    return isinstance(value, tuple) and all(isinstance(v, int | float) for v in value)


def _json(value):
    return list(value) if isinstance(value, tuple) else value
