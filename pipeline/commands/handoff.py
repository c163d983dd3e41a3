"""Releases: version every declared artifact after the contract diff and the regression gate, and move a stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.commands.common import guarded


def register(app: typer.Typer) -> None:
    for command in (release, promote):
        app.command()(guarded(command))


def release(
    version: Annotated[str, typer.Argument(help="The semantic version to register, e.g. v1.2.0.")],
    stage: Annotated[str | None, typer.Option(help="Also assign this stage: dev, staging or prod.")] = None,
    accept_regression: Annotated[str | None, typer.Option(
        "--accept-regression", help="Release although the regression gate failed; the reason is recorded.")] = None,
    no_push: Annotated[bool, typer.Option("--no-push", help="Do not push to the DVC remote (a local release).")]
    = False,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds of the regression gate's timings (8 or more).")] = 8,
    per_round: Annotated[int, typer.Option(help="Batch-1 calls per round (a tenth as many batch calls).")] = 40,
    data: Annotated[Path, typer.Option(help="The MNIST folder the accuracy check reads.")] = Path("artifacts/data"),
) -> None:
    """Version every artifact dvc.yaml declares (GTO), after the contract diff and the regression gate against
    the previous release; push what it needs to the DVC remote. Exit 2: a version below what the diff needs;
    1: the regression gate failed."""
    from pipeline.handoff import publish, regression

    settings = regression.GateSettings(rounds=rounds, per_round=per_round)
    record = publish.release(Path.cwd(), version, stage, data, accept_regression=accept_regression,
                             settings=settings, push=not no_push)
    typer.echo(f"released {version} ({record['bump']}) of {', '.join(record['artifacts'])}"
               + (f", assigned to {stage}" if stage else ""))


def promote(
    version: Annotated[str, typer.Argument(help="A released version, e.g. v1.1.0 (an earlier one rolls back).")],
    stage: Annotated[str, typer.Option(help="The stage: dev, staging or prod.")],
) -> None:
    """Assign a released version of every artifact to a stage (GTO); rolling back is promoting an earlier one."""
    from pipeline.handoff import publish

    names = publish.promote(Path.cwd(), version, stage)
    typer.echo(f"{stage} is now {version} for {', '.join(names)}")
