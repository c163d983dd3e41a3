"""How each CLI command calls its stage from a composed config.

A stage receives only its own typed config subtree and explicit paths (from the config's `paths`, the
same keys dvc.yaml interpolates); this module does that plumbing, writes the stage's metrics file, and
prints what the stage wrote. Heavy imports stay inside the functions: `pipeline --help` imports none.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.errors import PipelineError

# What `export --quantize X` adds after export → simplify → optimize: the quantize variant it builds.
QUANTIZE_VARIANT = {"int8": "int8_static", "int8-static": "int8_static", "int8-dynamic": "int8_dynamic"}
EAGER_BASELINE = "optimized"  # the ORT fp32 variant the benchmark's ratios are taken against
CPU_INT8_ARTIFACT = "int8_static"


def finish(cfg, stage: str, result, started: float) -> dict:
    """Write metrics/<stage>.json (with the stage's wall time) and print what the stage wrote."""
    from pipeline.io import write_json
    from pipeline.report_table import print_outputs

    metrics = {**result.metrics, "wall_seconds": round(time.perf_counter() - started, 2)}
    write_json(metrics_dir(cfg) / f"{stage}.json", metrics)
    print_outputs(stage, result.outputs, metrics)
    return metrics


def metrics_dir(cfg) -> Path:
    return Path(cfg.paths.metrics)


def unknown(kind: str, name: str, known: list[str]) -> PipelineError:
    return PipelineError(f"unknown {kind} {name!r} (configured: {', '.join(known) or 'none'})")


def provenance(cfg) -> dict:
    from pipeline import mnist
    from pipeline.config import to_plain
    from pipeline.provenance import config_hash, source_commit

    return {
        "source_commit": source_commit(),
        "config_sha256": config_hash(to_plain(cfg.model), to_plain(cfg.train), to_plain(cfg.export), int(cfg.seed)),
        "dataset_digest": mnist.digest(Path(cfg.paths.data)),
    }


def variant_kinds(cfg) -> dict[str, str]:
    """Every ONNX variant the config produces, in pipeline order, with its gate kind."""
    kinds = {"exported": "fp32", "simplified": "fp32", "optimized": "fp32"}
    if cfg.optimize.fp16.enabled:
        kinds["fp16"] = "fp16"
    for name, qcfg in cfg.quantize.items():
        kinds[name] = "int8_dynamic" if qcfg.mode == "dynamic" else "int8"
    return kinds


def variant(cfg, name: str) -> Path:
    from pipeline import onnx_utils

    return onnx_utils.variant_path(Path(cfg.paths.variants), name)


def run_prepare(cfg):
    from pipeline.config import build
    from pipeline.stages import prepare

    return prepare.run(build(prepare.DataConfig, cfg.data), Path(cfg.paths.data), Path(cfg.paths.cache))


def run_train(cfg):
    from pipeline.config import build, to_plain
    from pipeline.stages import train
    from training.config import TrainConfig

    return train.run(build(TrainConfig, cfg.train), to_plain(cfg.model), Path(cfg.paths.data), Path(cfg.paths.model),
                     seed=int(cfg.seed))


def run_export(cfg, opset: int | None = None):
    import dataclasses

    from pipeline.config import build
    from pipeline.stages import export

    export_cfg = build(export.ExportConfig, cfg.export)
    if opset is not None:
        export_cfg = dataclasses.replace(export_cfg, opset=opset)
    return export.run(export_cfg, Path(cfg.paths.model), Path(cfg.paths.data), Path(cfg.paths.variants) / "exported",
                      provenance=provenance(cfg))


def run_optimize(cfg, *, fp16: bool | None = None):
    import dataclasses

    from pipeline.config import build
    from pipeline.stages import optimize

    optimize_cfg = build(optimize.OptimizeConfig, cfg.optimize)
    if fp16 is not None:
        optimize_cfg = dataclasses.replace(optimize_cfg, fp16=dataclasses.replace(optimize_cfg.fp16, enabled=fp16))
    return optimize.run(optimize_cfg, variant(cfg, "exported"), Path(cfg.paths.variants))


def run_quantize(cfg, name: str):
    from pipeline.config import build
    from pipeline.stages import quantize

    if name not in cfg.quantize:
        raise unknown("quantize variant", name, list(cfg.quantize))
    return quantize.run(build(quantize.QuantizeConfig, cfg.quantize[name]), variant(cfg, "simplified"),
                        Path(cfg.paths.data), Path(cfg.paths.variants) / name, seed=int(cfg.seed))


def run_validate(cfg, *, explain: bool) -> dict:
    """Run the gates, write metrics/parity.json and print it, whatever the verdict."""
    from pipeline.config import build
    from pipeline.io import write_json
    from pipeline.report_table import parity_table
    from pipeline.stages import validate

    started = time.perf_counter()
    variants = {name: (variant(cfg, name), kind) for name, kind in variant_kinds(cfg).items()}
    result = validate.run(build(validate.ValidateConfig, cfg.validate), Path(cfg.paths.model), Path(cfg.paths.data),
                          variants, variant(cfg, "simplified"), explain=explain)
    report = {**result.metrics, "wall_seconds": round(time.perf_counter() - started, 2)}
    write_json(metrics_dir(cfg) / "parity.json", report)
    parity_table(report)
    return report


def parity_report(cfg, *, required: bool) -> dict:
    path = metrics_dir(cfg) / "parity.json"
    if path.is_file():
        return json.loads(path.read_text())
    if required:
        raise PipelineError(f"{path} not found: run `pipeline validate` first (targets ship only validated variants)")
    return {"variants": {}}


def run_package(cfg, target: str):
    from pipeline.config import build
    from pipeline.stages import package

    if target not in cfg.target:
        raise unknown("target", target, list(cfg.target))
    return package.run(build(package.TargetConfig, cfg.target[target]), target, Path(cfg.paths.variants),
                       parity_report(cfg, required=True), Path(cfg.paths.data), Path(cfg.paths.deploy) / target,
                       provenance=provenance(cfg))


def run_bench(cfg):
    from pipeline.config import build
    from pipeline.stages import bench, quantize

    bench_cfg = build(bench.BenchConfig, cfg.bench)
    variants = {name: variant(cfg, name) for name in variant_kinds(cfg) if variant(cfg, name).is_file()}
    if EAGER_BASELINE not in variants:
        raise PipelineError(f"{variant(cfg, EAGER_BASELINE)} not found: run the pipeline up to optimize first")
    parity = parity_report(cfg, required=False)
    accuracies = {name: entry["accuracy"] for name, entry in parity["variants"].items()}
    accuracies[bench.EAGER] = parity.get("torch_accuracy")
    crossover = None
    if bench_cfg.crossover and bench_cfg.crossover.quantize in cfg.quantize:
        crossover = {"quantize_cfg": build(quantize.QuantizeConfig, cfg.quantize[bench_cfg.crossover.quantize]),
                     "data_dir": Path(cfg.paths.data), "seed": int(cfg.seed)}
    return bench.run(bench_cfg, Path(cfg.paths.model), variants, accuracies, baseline=EAGER_BASELINE,
                     int8_artifact=CPU_INT8_ARTIFACT, crossover_inputs=crossover)


def run_report(cfg):
    from pipeline.stages import report

    return report.run(metrics_dir(cfg), Path(cfg.paths.deploy), Path(cfg.paths.data), Path(cfg.paths.report))


def write_plot(cfg, name: str, rows: list[dict]) -> None:
    """Data for `dvc plots show` (top-level `plots:` in dvc.yaml), as CSV: one row per line keeps the
    10k-row confusion data small and its git diffs readable."""
    import csv
    import io

    from pipeline.io import write_text

    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text(metrics_dir(cfg) / "plots" / f"{name}.csv", buffer.getvalue())


def stage_timings(cfg) -> dict[str, tuple[float, float]]:
    """Each stage's wall time and when it last ran, from its metrics file."""
    rows = {}
    for path in sorted(metrics_dir(cfg).glob("*.json")):
        seconds = json.loads(path.read_text()).get("wall_seconds")
        if isinstance(seconds, int | float):
            rows[path.stem] = (seconds, path.stat().st_mtime)
    return rows
