"""Compose the Hydra config from conf/ (or load the composed params.yaml DVC tracks), then validate it.

conf/ is the source of truth for every value; the schemas (pydantic, declared by the stages that own each
group) say only what is allowed. `pipeline params` writes the composition to params.yaml exactly as DVC's
Hydra integration does (`dvc exp run -S ...`): resolved, then `OmegaConf.to_yaml`. Both ways into a
command, conf/ + overrides and `--params params.yaml`, go through the same validation before any work
starts: a bad value is one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

from pipeline.core.errors import ConfigError, PipelineError
from pipeline.core.stage import Schema, all_stages

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from pydantic import BaseModel

CONFIG_NAME = "config"
# `model._target_=my.Net` alone starts from the empty `custom` model spec, so the default model's own
# arguments (width) do not leak into another class.
_TARGET_OVERRIDE = re.compile(r"^\+{0,2}model\._target_=")
_GROUP_OVERRIDE = re.compile(r"^\+{0,2}model=")


def conf_dir() -> Path:
    """conf/ of the current directory, else of the source checkout this package was installed from."""
    explicit = os.environ.get("PIPELINE_CONF_DIR")
    if explicit:
        return Path(explicit).resolve()
    here = Path.cwd() / "conf"
    if (here / f"{CONFIG_NAME}.yaml").is_file():
        return here.resolve()
    return (Path(__file__).resolve().parents[2] / "conf").resolve()


def compose(overrides: list[str] | None = None, config_dir: Path | None = None) -> DictConfig:
    """Compose conf/ with Hydra overrides; any unknown key or option is a one-line PipelineError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = _custom_model(list(overrides or []))
    directory = config_dir or conf_dir()
    if not (directory / f"{CONFIG_NAME}.yaml").is_file():
        raise PipelineError(f"no Hydra config at {directory}/{CONFIG_NAME}.yaml (run from the repository root)")
    try:
        with initialize_config_dir(str(directory), version_base=None):
            cfg = hydra_compose(config_name=CONFIG_NAME, overrides=overrides)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(f"bad config override: {one_line(exc)}") from None
    OmegaConf.set_struct(cfg, True)
    return cfg


def _custom_model(overrides: list[str]) -> list[str]:
    """`model._target_=my.Net model.channels=32` starts from the empty `custom` spec, whose keys the user adds:
    the default model's arguments do not leak into another class, and no `+` is needed to add arguments."""
    if any(_GROUP_OVERRIDE.match(o) for o in overrides) and "model=custom" not in overrides:
        return overrides
    if not any(_TARGET_OVERRIDE.match(o) for o in overrides) and "model=custom" not in overrides:
        return overrides
    rewritten = [f"+{o}" if o.startswith("model.") and not _TARGET_OVERRIDE.match(o) else o for o in overrides]
    return rewritten if "model=custom" in rewritten else ["model=custom", *rewritten]


def load_params(path: Path) -> DictConfig:
    """Load an already-composed params.yaml (what DVC tracks)."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"params file not found: {path} (run `pipeline params` to compose it)")
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, ValueError, OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read {path} as YAML: {one_line(exc)}") from None
    except Exception as exc:  # yaml's scanner/parser errors have no common public base here
        raise PipelineError(f"cannot read {path} as YAML: {one_line(exc)}") from None
    if not isinstance(cfg, DictConfig) or "paths" not in cfg:
        raise PipelineError(f"{path} is not a composed pipeline config (no `paths` section; "
                            f"write one with `pipeline params`)")
    return cfg


def resolve(params: Path | None, overrides: list[str], *, extra: dict[str, Any] | None = None):
    """The validated config a CLI command runs with: params.yaml as DVC tracks it, or conf/ + overrides.

    `extra` sets keys after composition (a CLI option such as `--opset` that maps to a config key), so they
    are validated like everything else.
    """
    global _INVOCATION
    if params is not None and overrides:
        raise PipelineError(
            "overrides cannot be combined with --params (edit conf/, or use `dvc exp run -S key=value`)"
        )
    raw = to_plain(load_params(params) if params is not None else compose(overrides))
    _INVOCATION = Invocation(params, tuple(overrides))
    for dotted, value in (extra or {}).items():
        _set(raw, dotted, value)
    return validate(raw)


class Invocation(NamedTuple):
    """How this process's config was made: the params file DVC runs with, or conf/ plus these overrides."""
    params: Path | None
    overrides: tuple[str, ...]

    def command(self, stage: str, *options: str) -> str:
        """The `pipeline` command that runs `stage` on the same config (DVC's path: `dvc repro`, whose
        params.yaml is the config; a command with the user's own overrides would not be)."""
        if self.params is not None:
            return f"dvc repro (or `pipeline {stage} --params {self.params}`)"
        return " ".join(["pipeline", stage, *options, *(shlex.quote(o) for o in self.overrides)])


_INVOCATION = Invocation(None, ())


def invocation() -> Invocation:
    """The last resolve()'s inputs: advice that names a command repeats them, so it never rebuilds from
    another config (a `dvc repro` advised to someone on overrides would retrain params.yaml's model)."""
    return _INVOCATION


def validate(raw: dict):
    """The composed config as typed objects, or one PipelineError line naming each bad key and value."""
    from pydantic import ValidationError

    try:
        validated = schema().model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"bad config: {describe_errors(exc)}") from None
    # Groups are fields under an alias (a group named `validate` would shadow pydantic's own method);
    # commands read them by group name: cfg.train, cfg.validate.gates, cfg.quantize["int8_static"].
    return SimpleNamespace(**{field.alias: getattr(validated, name)
                              for name, field in type(validated).model_fields.items()})


@functools.cache
def schema() -> type[BaseModel]:
    """The whole config's schema: `seed`, `paths`, and each stage's own groups (its `owns`)."""
    from pydantic import Field, create_model

    groups: dict[str, Any] = {"seed": _non_negative_int(), "paths": Paths}
    for stage in all_stages():
        groups.update(stage.owns)
    fields = {f"group_{name}": (spec, Field(alias=name)) for name, spec in groups.items()}
    return create_model("PipelineConfig", __base__=Schema, **fields)


def _non_negative_int():
    from typing import Annotated

    from pydantic import Field

    return Annotated[int, Field(ge=0, strict=True)]


class Paths(Schema):
    """Where each stage reads and writes; dvc.yaml interpolates the same keys from params.yaml."""
    data: str
    model: str
    pruned: str
    variants: str
    deploy: str
    model_package: str
    report: str
    metrics: str
    cache: str


def describe_errors(exc, limit: int = 3) -> str:
    """pydantic's errors as `key=value: what is allowed`, joined on one line."""
    parts = []
    for error in exc.errors()[:limit]:
        key = ".".join(str(p) for p in error["loc"])
        if error["type"] == "missing":
            parts.append(f"{key} is missing")
        elif error["type"] == "extra_forbidden":
            parts.append(f"{key} is not a known key")
        else:
            parts.append(f"{key}={error['input']!r}: {error['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def lookup(cfg, dotted: str):
    """`cfg.validate.gates` or `cfg.quantize['int8_static']` from a dotted key."""
    value = cfg
    for part in dotted.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def _set(raw: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[last] = value


def to_yaml(cfg: DictConfig) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg)


def to_plain(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def one_line(exc: BaseException) -> str:
    """A library's whole message on one line: the first line alone often cuts off the cause (Hydra lists
    the valid options on the lines after "Could not find")."""
    text = (str(exc).strip() or type(exc).__name__).split("Config search path")[0].strip()
    return re.sub(r"\s*\n\s*", " ", text)[:500]
