"""The project's own files: params.yaml from conf/, dvc.yaml (and the CLI's command table) from the stage
declarations, the stages' timings, and docs/results.md from metrics/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.commands.common import Overrides, Params, config, guarded
from pipeline.core.errors import PipelineError


def register(app: typer.Typer) -> None:
    for command in (params, dvc, timings, results):
        app.command()(guarded(command))


def params(
    overrides: Overrides = None,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if params.yaml is not conf/ plus its recorded "
                                                         "overrides; name every key that differs and why.")] = False,
    reset: Annotated[bool, typer.Option("--reset", help="Drop the recorded overrides: params.yaml = conf/.")] = False,
    output: Annotated[Path, typer.Option("--output", help="Where to write the composition.")] = Path("params.yaml"),
) -> None:
    """Compose conf/ (+ overrides, recorded and kept until --reset) into params.yaml, which DVC tracks."""
    from pipeline.core import params_file
    from pipeline.core.io import write_text

    kept = [] if reset else params_file.merge(params_file.recorded(output), list(overrides or []))
    text = params_file.render(kept)
    current = output.read_text() if output.is_file() else None
    if check and current is None:
        raise PipelineError(f"{output.resolve()} not found: run from the repository root, or pass --output")
    if check:
        differs = current != text
        for line in params_file.explain(output) if current is not None else []:
            typer.echo(f"  {line}", err=differs)
        if differs:
            typer.echo(f"{output} differs from conf/ (+ its recorded overrides): `pipeline params` recomposes it, "
                       f"`pipeline params --reset` drops every override", err=True)
            raise typer.Exit(1)
        typer.echo(f"{output} matches conf/" + (f" with the overrides {' '.join(kept)}" if kept else ""))
        return
    if current != text:
        write_text(output, text)
    typer.echo(f"{'wrote' if current != text else 'up to date:'} {output} from conf/"
               + (f" with the overrides {' '.join(kept)} (kept until `pipeline params --reset`)" if kept else ""))


def dvc(
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if dvc.yaml differs from the declarations.")] = False,
    write: Annotated[bool, typer.Option("--write", help="Regenerate dvc.yaml from the declarations.")] = False,
    file: Annotated[Path, typer.Option("--file", help="The dvc.yaml to check or write.")] = Path("dvc.yaml"),
) -> None:
    """Hold dvc.yaml against the stage declarations: deps (inputs and every project module each stage
    imports), params (every key it reads), outs, metrics, plots and artifacts; and the CLI's command table."""
    from pipeline.commands import table
    from pipeline.core import dvcfile

    if write:
        dvcfile.write(file)
        table.write()
        typer.echo(f"wrote {file} and the command table from the stage declarations")
        return
    problems = [*(f"{file}: {p}" for p in dvcfile.check(file)), *table.check()]
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        typer.echo(f"{file} or the command table is out of date: run `pipeline dvc --write`", err=True)
        raise typer.Exit(1)
    if check:
        typer.echo(f"{file} matches the stage declarations")


def timings(
    overrides: Overrides = None,
    params: Params = None,
    noop_repro: Annotated[bool, typer.Option(
        "--noop-repro", help="Also time one `dvc repro` with nothing to do (DVC's own cost: hashing every dep, "
                             "reading dvc.lock and params.yaml); run it right after a `dvc repro`.")] = False,
) -> None:
    """Per-stage wall time of the last run of each stage (from metrics/timings/), in pipeline order."""
    from pipeline.core.runner import noop_repro_seconds, stage_timings
    from pipeline.present.tables import timing_table

    timing_table(stage_timings(config(params, overrides)))
    if noop_repro:
        seconds = noop_repro_seconds()
        typer.echo("dvc repro had work to do (or failed): no no-op time to report" if seconds is None else
                   f"a no-op dvc repro takes {seconds:.1f} s")


def results(
    check: Annotated[bool, typer.Option("--check", help="Exit 1, showing the difference, if the file is not what "
                                                         "metrics/ gives (a test holds the committed one).")] = False,
    output: Annotated[Path, typer.Option("--output", help="The generated page.")] = Path("docs/results.md"),
    metrics: Annotated[Path, typer.Option("--metrics", help="The metrics folder to read.")] = Path("metrics"),
) -> None:
    """The results page from metrics/: accuracy, parity gates, what each target ships, the shipped bundles'
    speed-ups, the GEMM peaks and each runner's share, each with its machine and date."""
    from pipeline.core.io import write_text
    from pipeline.present import results as results_page

    if not metrics.is_dir():
        raise PipelineError(f"{metrics.resolve()} not found: run from the repository root, or pass --metrics")
    text = results_page.markdown(metrics)
    current = output.read_text() if output.is_file() else None
    if check:
        changed = results_page.difference(current, text, str(output))
        if changed:
            typer.echo("\n".join(changed), err=True)
            typer.echo(f"{output} differs from what {metrics}/ gives: `pipeline results` rewrites it", err=True)
            raise typer.Exit(1)
        typer.echo(f"{output} matches {metrics}/")
        return
    results_page.show(metrics)
    if current != text:
        write_text(output, text)
    typer.echo(f"{'wrote' if current != text else 'up to date:'} {output} from {metrics}/")
