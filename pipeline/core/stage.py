"""How a stage is declared: once, as `STAGE = Stage(...)` next to its `run`, in a module of pipeline/stages/.

The declaration is the single source for everything around the stage: the config schema of the groups it
owns (validated at compose time), the params keys it reads, the paths it reads and writes, and its `run`.
The CLI command (pipeline/cli.py), the plumbing that calls `run` (pipeline/core/runner.py) and dvc.yaml
(pipeline/core/dvcfile.py) are all derived from it, and so is the pipeline order (from what each stage reads
and writes). Adding a stage is one module in pipeline/stages/ and one `conf/` group; `pipeline dvc --write`
regenerates dvc.yaml and a test holds it against the declarations.

Stage modules import project modules at their top, and heavy libraries (torch, onnxruntime, onnx) only inside
functions, so `pipeline --help` reads every declaration without loading them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.core.errors import GateFailure, ParityGateFailure

STAGES_PACKAGE = "pipeline.stages"  # every module there that declares a STAGE is a stage

class Schema(BaseModel):
    """Base of every config schema: unknown keys are errors, values are immutable, and there are no
    defaults here: every value lives in conf/ (one place), so the schema only says what is allowed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class StageResult:
    """What a stage wrote and what it measured; the runner turns it into files and a table.

    metrics are deterministic (the same inputs give the same values) and go to metrics/<stage>.json, which
    later stages may depend on. observations are run-dependent (timings, the source commit) and go to
    metrics/timings/<stage>.json, which nothing depends on, so re-running a stage never invalidates others.
    """

    outputs: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    observations: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, list[dict]] = field(default_factory=dict)
    # Gates that failed: the runner writes every file first, then exits 1 with these messages.
    gate_failures: list[str] = field(default_factory=list)
    gate_failure_type: type[GateFailure] = ParityGateFailure  # the kind of gate they are (core/errors.py)
    # What the user must see in the terminal, not only in JSON (a rejected variant, a stale one): one line each.
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Stage:
    """A stage, declared once.

    owns:     config group -> schema, for the groups this stage owns (part of the composed config's schema)
    config:   run() keyword -> config key it receives ("train", "quantize.${key}", "seed"); these are the
              stage's DVC params, so nothing it reads escapes dvc.yaml
    inputs:   run() keyword -> path template it reads ("${paths.data}", "${paths.variants}/simplified")
    outputs:  run() keyword -> path template it writes (DVC outs)
    foreach:  config map with one DVC stage per key (`quantize@int8_static`); `${key}` in templates is the
              key, passed to run() as `item_arg`
    plots:    names of the plot tables it writes (metrics/plots/<name>.csv)
    code:     project files it reads that no import reaches (scripts it copies, modules run with -m)
    flags:    run() boolean keywords the CLI offers as --flags (not DVC params: they change no output file)
    file_options: run() keywords the CLI offers as --option PATH, default None (package --sign-key)
    table:    the pipeline.present.tables function that prints its metrics (default: a one-line summary)
    headline: metrics -> a few flat numbers, written to metrics/summary/<stem>.json: what `dvc metrics show`
              and `dvc exp show` list (the detailed metrics file is a plain output); None: nothing listed
    deterministic: False for stages whose outputs are observations (timings), e.g. bench, report
    artifacts: DVC artifacts (dvc.yaml `artifacts:`, what `pipeline release` versions): name template -> the
              output keyword it is; `${key}` is the foreach entry, its underscores made dashes ([a-z0-9-] names)
    artifact_meta: (entry, the stage's metrics or {}) -> the artifact's description, labels and meta
    """

    name: str
    run: Callable[..., StageResult]
    help: str
    owns: dict[str, Any] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    foreach: str | None = None
    item_arg: str = "item"
    plots: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    flags: dict[str, str] = field(default_factory=dict)
    file_options: dict[str, str] = field(default_factory=dict)
    table: str | None = None
    headline: Callable[[dict], dict] | None = None
    deterministic: bool = True
    dvc_flags: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)
    artifact_meta: Callable[[str | None, dict], dict] | None = None

    @property
    def module(self) -> str:
        return f"{STAGES_PACKAGE}.{self.name}"

    def instance(self, item: str | None) -> str:
        """The name of one run's files: `quantize_int8_static` for `quantize@int8_static`."""
        return self.name if item is None else f"{self.name}_{item}"

    @property
    def dvc_cmd(self) -> str:
        item = f" --{self.item_arg} ${{key}}" if self.foreach else ""
        flags = f" {self.dvc_flags}" if self.dvc_flags else ""
        return f"pipeline {self.name} --params params.yaml{item}{flags}"

    @property
    def file_stem(self) -> str:
        return self.name if self.foreach is None else f"{self.name}_${{key}}"

    @property
    def metrics_file(self) -> str:
        return f"${{paths.metrics}}/{self.file_stem}.json"

    @property
    def summary_file(self) -> str:
        return f"${{paths.metrics}}/summary/{self.file_stem}.json"

    @property
    def timings_file(self) -> str:
        return f"${{paths.metrics}}/timings/{self.file_stem}.json"

    def plot_file(self, plot: str) -> str:
        return f"${{paths.metrics}}/plots/{plot}.csv"


def load(name: str) -> Stage:
    return importlib.import_module(f"{STAGES_PACKAGE}.{name}").STAGE


def all_stages() -> list[Stage]:
    """Every module in pipeline/stages/ that declares a STAGE, in pipeline order: a stage comes after every
    stage whose files it reads (its declared outputs, metrics and plots), ties by name. Adding a stage is
    adding its module; nothing lists the names."""
    package = importlib.import_module(STAGES_PACKAGE)
    found = [importlib.import_module(f"{STAGES_PACKAGE}.{m.name}") for m in pkgutil.iter_modules(package.__path__)]
    return _in_order({s.name: s for s in (getattr(m, "STAGE", None) for m in found) if isinstance(s, Stage)})


def names() -> list[str]:
    return [s.name for s in all_stages()]


def _writes(stage: Stage) -> list[str]:
    return [*stage.outputs.values(), stage.metrics_file, *(stage.plot_file(p) for p in stage.plots)]


def _overlaps(a: str, b: str) -> bool:
    """Whether two path templates name the same file or one a folder above the other. A `${key}` part
    (one entry of a foreach stage) is a name of its own: `variants/${key}` is inside `variants`, but is not
    taken for `variants/exported`, which another stage declares by name."""
    a_parts, b_parts = a.split("/"), b.split("/")
    shorter = min(len(a_parts), len(b_parts))
    return a_parts[:shorter] == b_parts[:shorter]


def _in_order(stages: dict[str, Stage]) -> list[Stage]:
    after = {name: {other for other, o in stages.items() if other != name
                    and any(_overlaps(w, r) for w in _writes(o) for r in s.inputs.values())}
             for name, s in stages.items()}
    ordered: list[Stage] = []
    while after:
        ready = sorted(name for name, needs in after.items() if not needs)
        if not ready:
            raise RuntimeError(f"stages read each other's outputs in a circle: {', '.join(sorted(after))}")
        ordered.append(stages[ready[0]])
        after = {name: needs - {ready[0]} for name, needs in after.items() if name != ready[0]}
    return ordered
