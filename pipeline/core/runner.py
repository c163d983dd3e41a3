"""Run one declared stage from a validated config: the plumbing every CLI command shares.

From the stage's declaration it picks the config values and paths `run` receives (nothing else), calls it,
refuses outputs the declaration does not name, and writes the stage's files: metrics/<stage>.json
(deterministic), metrics/timings/<stage>.json (wall time, the machine and date, and other observations, which
nothing depends on) and metrics/plots/<plot>.csv. Heavy imports stay inside functions.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from pipeline.core.config import lookup
from pipeline.core.errors import PipelineError
from pipeline.core.io import write_json, write_text
from pipeline.core.machine import machine
from pipeline.core.provenance import source_commit
from pipeline.core.stage import Stage, StageResult, names
from pipeline.present import tables

_PATH_KEY = re.compile(r"\$\{paths\.(\w+)\}")


def items(stage: Stage, cfg, only: str | None) -> list[str | None]:
    """The runs one command makes: one for a plain stage; every key of its map (or one) for a foreach stage."""
    if stage.foreach is None:
        return [None]
    known = list(lookup(cfg, stage.foreach))
    if only is None:
        return known
    if only not in known:
        raise PipelineError(f"unknown {stage.foreach} entry {only!r} (configured: {', '.join(known) or 'none'})")
    return [only]


def path(cfg, template: str, item: str | None = None) -> Path:
    """A declared path template with `${paths.x}` and `${key}` filled in."""
    text = _PATH_KEY.sub(lambda m: str(getattr(cfg.paths, m.group(1))), template)
    if "${key}" in text:
        text = text.replace("${key}", str(item))
    return Path(text)


def arguments(stage: Stage, cfg, item: str | None) -> dict:
    """Exactly what the declaration says `run` receives: its config values and its paths."""
    kwargs = {arg: lookup(cfg, key.replace("${key}", str(item))) for arg, key in stage.config.items()}
    kwargs.update({arg: path(cfg, t, item) for arg, t in {**stage.inputs, **stage.outputs}.items()})
    if stage.foreach is not None:
        kwargs[stage.item_arg] = item
    return kwargs


def execute(stage: Stage, cfg, item: str | None = None, *, quiet: bool = False, **options) -> StageResult:
    """Run the stage once, write its metrics/observations/plots, print what it wrote."""
    started = time.perf_counter()
    result = stage.run(**arguments(stage, cfg, item), **options)
    _refuse_undeclared(stage, cfg, item, result)
    instance = stage.instance(item)
    observations = {"machine": machine(), **result.observations,
                    "wall_seconds": round(time.perf_counter() - started, 2), "source_commit": source_commit()}
    write_files(stage, cfg, item, result, observations)
    if not quiet:
        tables.print_outputs(instance, result.outputs, {} if stage.table else result.metrics)
        if stage.table:
            getattr(tables, stage.table)(result.metrics)
    tables.print_notices(instance, result.notices)
    if result.gate_failures:
        raise result.gate_failure_type("; ".join(result.gate_failures))
    return result


def write_files(stage: Stage, cfg, item: str | None, result: StageResult, observations: dict) -> None:
    write_json(path(cfg, stage.metrics_file, item), result.metrics)
    if stage.headline is not None:
        write_json(path(cfg, stage.summary_file, item), stage.headline(result.metrics))
    write_json(path(cfg, stage.timings_file, item), observations)
    for name, rows in result.plots.items():
        write_plot(path(cfg, stage.plot_file(name), item), rows)


def _refuse_undeclared(stage: Stage, cfg, item: str | None, result: StageResult) -> None:
    """A stage may write only what it declares: DVC would neither cache nor track anything else."""
    declared = [path(cfg, t, item).resolve() for t in stage.outputs.values()]
    for name, written in result.outputs.items():
        resolved = Path(written).resolve()
        if not any(resolved == d or d in resolved.parents for d in declared):
            raise PipelineError(f"stage {stage.name} wrote {written} ({name}), which its declaration does not list")
    undeclared = sorted(set(result.plots) - set(stage.plots))
    if undeclared:
        raise PipelineError(f"stage {stage.name} wrote undeclared plot(s) {', '.join(undeclared)}")


def write_plot(file: Path, rows: list[dict]) -> None:
    """Plot data for `dvc plots show`, as CSV: one row per line keeps large tables small and diffable."""
    import csv
    import io

    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text(file, buffer.getvalue())


def stage_timings(cfg) -> list[tuple[str, float, float, dict]]:
    """(run, wall seconds, when, {phase: seconds}) for the last run of each stage, in pipeline order."""
    import json

    rows = []
    for file in Path(cfg.paths.metrics, "timings").glob("*.json"):
        observed = json.loads(file.read_text())
        seconds = observed.get("wall_seconds")
        if isinstance(seconds, int | float):
            rows.append((file.stem, float(seconds), file.stat().st_mtime, observed.get("phases_s", {})))
    order = {name: i for i, name in enumerate(names())}
    return sorted(rows, key=lambda r: (order.get(r[0].split("_")[0], len(order)), r[0]))


def noop_repro_seconds() -> float | None:
    """Wall seconds of `dvc repro` in this repo when it has nothing to run; None when it ran a stage (or failed)."""
    import subprocess

    started = time.perf_counter()
    done = subprocess.run(["dvc", "repro"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return None if done.returncode != 0 or "Running stage" in done.stdout else seconds
