"""`pipeline`: one command per declared stage, plus the one-shot `export`, the project's files, the consumer side
and releases (pipeline/commands/, one module per role).

The stage commands come from the generated command table (pipeline/commands/declared.py, kept equal to the stage
declarations by `pipeline dvc --check`): each takes trailing Hydra overrides (`pipeline train train.epochs=1
model=tiny`) or, as DVC runs it, `--params params.yaml`; foreach stages take `--variant`/`--target` for one entry.
Every command imports what it runs when it runs, so `pipeline --help` starts without numpy, pydantic, torch or
onnxruntime (a test holds this).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipeline.commands import consumer, handoff, project, stages
from pipeline.packaging.release import VERSION
from pipeline.present import log as logs

app = typer.Typer(
    help="Train → export → optimize → quantize → validate → package, for ONNX Runtime deployment.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pipeline {VERSION}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")]
    = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say everything, library output included (else "
                                          "in .cache/logs/).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Say only warnings and errors (results still print).")]
    = False,
) -> None:
    """Train → export → optimize → quantize → validate → package, for ONNX Runtime deployment."""
    if verbose or quiet:
        logs.set_level("DEBUG" if verbose else "WARNING")


for _role in (stages, project, consumer, handoff):
    _role.register(app)


def main() -> None:
    app(prog_name="pipeline")


if __name__ == "__main__":
    sys.exit(main())
