"""A trained model on disk: model.pt (a state_dict, loaded only with weights_only=True) and model.json,
the Hydra `_target_` spec that rebuilds the module, so export needs no code of the training run.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.errors import PipelineError
from pipeline.core.io import write_json
from pipeline.model import structure

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch is imported where a function needs it: lineage reads these names in stages that never touch torch
# (package, quantize), and `import torch` costs those stage processes 2 s each.
WEIGHTS = "model.pt"
SPEC = "model.json"
STRUCTURE = "pruned_structure"  # model.json key: what structure.apply re-applies before the weights load


def build(spec: dict) -> nn.Module:
    """Instantiate the module a `_target_` spec names (the config's `model` subtree).

    The arguments are checked against the class's signature first, so a key left over from another model
    (the default model's `width` after `model._target_=my.Net` through `dvc exp run -S`) is one line that
    says what to change, not a TypeError from inside Hydra.
    """
    from hydra.utils import get_class
    from torch import nn

    target = spec.get("_target_")
    if not isinstance(target, str):
        raise PipelineError("model spec has no `_target_` naming the nn.Module class")
    _importable_from_here()
    try:
        cls = get_class(target)
    except Exception as exc:  # Hydra wraps ImportError/AttributeError in its own types
        raise PipelineError(f"model._target_={target}: cannot import it ({_root_cause(exc)})") from None
    _check_arguments(cls, target, {k: v for k, v in spec.items() if not k.startswith("_")})
    try:
        module = cls(**{k: v for k, v in spec.items() if not k.startswith("_")})
    except Exception as exc:  # a user's constructor can raise anything; name the class, args and cause
        args = ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "_target_")
        raise PipelineError(f"cannot build model {target}({args}): {_root_cause(exc)}") from None
    if not isinstance(module, nn.Module):
        raise PipelineError(f"{target} built a {type(module).__name__}, not an nn.Module")
    return module


def _importable_from_here() -> None:
    """`_target_` may name a class importable from where the pipeline runs, as `python -m pipeline.cli` sees it;
    the `pipeline` console script does not put the working directory on sys.path, so add it (last: it never
    shadows an installed package)."""
    import os
    import sys

    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)


def _check_arguments(cls, target: str, kwargs: dict) -> None:
    import inspect

    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # builtins without a signature: let the constructor decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        accepted = ", ".join(params) or "no arguments"
        key = unknown[0]
        raise PipelineError(
            f"model.{key}={kwargs[key]!r} is not an argument of {target} (it takes: {accepted}): start from an "
            f"empty spec with `model=custom model._target_={target}`, or drop the key with `~model.{key}`"
        )


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:300]


def save(model: nn.Module, spec: dict, out_dir: Path, extra: dict | None = None) -> dict[str, Path]:
    """Write weights and spec into `out_dir` (a staging directory: the caller renames it into place); a pruned
    model's shape is recorded beside the spec (pipeline/model/structure.py)."""
    import torch

    out_dir = Path(out_dir)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out_dir / WEIGHTS)
    parameters = sum(p.numel() for p in model.parameters())
    with torch.random.fork_rng():  # a fresh build's random init must not move the caller's random stream
        changes = structure.record(model, build(spec))
    write_json(out_dir / SPEC, {"model": spec, "parameters": parameters, **({STRUCTURE: changes} if changes else {}),
                                **(extra or {})})
    return {"weights": out_dir / WEIGHTS, "spec": out_dir / SPEC}


def load(model_dir: Path) -> tuple[nn.Module, dict]:
    """Rebuild the module from model.json and load model.pt; any problem is one PipelineError line."""
    model_dir = Path(model_dir)
    spec_path, weights_path = model_dir / SPEC, model_dir / WEIGHTS
    for path in (spec_path, weights_path):
        if not path.is_file():
            raise PipelineError(f"missing checkpoint file {path}")
    try:
        written = json.loads(spec_path.read_text())
        spec, changes = written["model"], written.get(STRUCTURE, {})
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise PipelineError(f"{spec_path} is not a model spec (expected JSON with a `model` key)") from None
    model = structure.apply(build(spec), changes)
    state = load_state_dict(weights_path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise PipelineError(f"{weights_path} does not fit {spec['_target_']}: {str(exc).splitlines()[1:2]}") from None
    return model.eval(), spec


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"{path} is not a loadable state_dict checkpoint ({reason[:160]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PipelineError(f"{path} is not a state_dict (expected a dict of tensors)")
    return state
