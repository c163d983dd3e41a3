"""One module per pipeline stage. Each declares itself once, as `STAGE = Stage(...)` next to its `run`.

The declaration is the single source for everything around the stage: the config schema of the groups it
owns (validated at compose time), the params keys it reads, the paths it reads and writes, and its `run`.
The CLI command (pipeline/cli.py), the plumbing that calls `run` (pipeline/runner.py) and the dvc.yaml
check (pipeline/dvcfile.py) are all derived from it. Adding a stage touches one module here, one `conf/`
group and one dvc.yaml entry (which `pipeline dvc --write` generates and a test holds against this).

Only the standard library and pydantic are imported at module level, here and in every stage module's
top, so `pipeline --help` can read the declarations without torch or onnxruntime.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

# Pipeline order. `dvc.yaml`, the CLI and `pipeline timings` list stages in this order.
NAMES = ("prepare", "train", "export", "optimize", "quantize", "validate", "package", "bench", "report")


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
    table:    the pipeline.report_table function that prints its metrics (default: a one-line summary)
    headline: metrics -> a few flat numbers, written to metrics/summary/<stem>.json: what `dvc metrics show`
              and `dvc exp show` list (the detailed metrics file is a plain output); None: nothing listed
    deterministic: False for stages whose outputs are observations (timings), e.g. bench, report
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

    @property
    def module(self) -> str:
        return f"pipeline.stages.{self.name}"

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
    return importlib.import_module(f"pipeline.stages.{name}").STAGE


def all_stages() -> list[Stage]:
    return [load(name) for name in NAMES]
