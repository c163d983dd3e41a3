"""Compose the Hydra config from conf/, or load the composed params.yaml that DVC tracks.

conf/ is the source of truth. `pipeline params` writes its composition to params.yaml exactly as DVC's
Hydra integration does (`dvc exp run -S ...`): resolved, then `OmegaConf.to_yaml`. Stages run by DVC read
params.yaml (`--params params.yaml`), so what DVC hashed is what ran.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from omegaconf import DictConfig

CONFIG_NAME = "config"
PARAMS_FILE = Path("params.yaml")


def conf_dir() -> Path:
    """conf/ of the current directory, else of the source checkout this package was installed from."""
    explicit = os.environ.get("PIPELINE_CONF_DIR")
    if explicit:
        return Path(explicit).resolve()
    here = Path.cwd() / "conf"
    if (here / f"{CONFIG_NAME}.yaml").is_file():
        return here.resolve()
    return (Path(__file__).resolve().parent.parent / "conf").resolve()


def compose(overrides: list[str] | None = None, config_dir: Path | None = None) -> DictConfig:
    """Compose conf/ with Hydra overrides; any unknown key or option is a one-line PipelineError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    directory = config_dir or conf_dir()
    if not (directory / f"{CONFIG_NAME}.yaml").is_file():
        raise PipelineError(f"no Hydra config at {directory}/{CONFIG_NAME}.yaml")
    try:
        with initialize_config_dir(str(directory), version_base=None):
            cfg = hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides or []))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise PipelineError(f"bad config override: {_first_line(exc)}") from None
    OmegaConf.set_struct(cfg, True)
    return cfg


def load_params(path: Path) -> DictConfig:
    """Load an already-composed params.yaml (what DVC tracks); keys are locked like a composed config."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"params file not found: {path} (run `pipeline params` to compose it)")
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, ValueError, OSError) as exc:
        raise PipelineError(f"cannot read {path}: {_first_line(exc)}") from None
    if not isinstance(cfg, DictConfig) or "paths" not in cfg:
        raise PipelineError(f"{path} is not a composed pipeline config (no `paths` section)")
    OmegaConf.set_struct(cfg, True)
    return cfg


def resolve(params: Path | None, overrides: list[str]) -> DictConfig:
    """The config a CLI command runs with: params.yaml as DVC tracks it, or conf/ plus overrides."""
    if params is None:
        return compose(overrides)
    if overrides:
        raise PipelineError(
            "overrides cannot be combined with --params (edit conf/, or use `dvc exp run -S key=value`)"
        )
    return load_params(params)


def to_yaml(cfg: DictConfig) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg)


def to_plain(cfg) -> dict:
    """A config subtree as plain Python values, which is all a stage receives."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def build(cls, subtree):
    """A stage's typed config from its subtree: nested dataclasses built too, unknown keys refused."""
    import dataclasses
    import typing

    data = subtree if isinstance(subtree, dict) else to_plain(subtree)
    if not isinstance(data, dict):
        raise PipelineError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise PipelineError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        nested = _dataclass_in(hints[name])
        kwargs[name] = build(nested, value) if nested and isinstance(value, dict) else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise PipelineError(f"{cls.__name__}: {exc}") from None


def _dataclass_in(hint):
    import dataclasses
    import typing

    candidates = (hint, *typing.get_args(hint))
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)
