"""What every command shares: the one way a command fails (its kind's word and exit code, never a traceback),
and the Hydra overrides / --params pair of the commands that read the config."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from pipeline.core.errors import GateFailure, PipelineError

Overrides = Annotated[list[str] | None, typer.Argument(help="Hydra overrides, e.g. train.epochs=1 model=tiny")]
Params = Annotated[
    Path | None, typer.Option("--params", help="Run with this composed params file (as DVC does) instead of conf/.")
]


def guarded(fn):
    """Bad input: one line on stderr, exit 2. A failed gate: its kind's word, exit 1 (pipeline/core/errors.py).
    A bundle whose provider is missing here: exit 3. Never a traceback for any."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # The consumer code ships standalone, with exception types of its own (imported when a command runs).
        from pipeline.deploy.contents import BundleError
        from pipeline.deploy.golden import GoldenMismatch
        from pipeline.deploy.infer import InputError
        from pipeline.deploy.session import ProviderMissing

        try:
            return fn(*args, **kwargs)
        except (PipelineError, GateFailure) as exc:
            typer.echo(f"{exc.label}: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except (BundleError, InputError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except GoldenMismatch as exc:
            typer.echo(f"verification failed: {exc}", err=True)
            raise typer.Exit(1) from None
        except ProviderMissing as exc:
            typer.echo(f"not verified: {exc}", err=True)
            raise typer.Exit(3) from None

    return wrapper


def config(params: Path | None, overrides: list[str] | None, **extra):
    """The validated config a command runs with: params.yaml as DVC tracks it, or conf/ + overrides."""
    from pipeline.core.config import resolve

    return resolve(params, list(overrides or []), extra=extra)
