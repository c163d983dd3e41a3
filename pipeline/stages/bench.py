"""Benchmark torch eager and every ONNX variant on the CPU EP, in one process and one run.

Inputs:  model_dir (torch eager), the variants, their parity accuracies (from validate)
Outputs: metrics (metrics/bench.json): batch-1 latency p50/p90/p99, batch-N throughput, size, peak RSS,
         effective GFLOP/s vs the machine's peak, ratios vs torch eager and vs ORT fp32, the INT8 targets,
         and the INT8-vs-fp32 crossover by model size; plot data for `dvc plots show`
Measurement: latencies interleaved in rounds (A B C, B C A, …) so drift hits every variant alike; the
ratios are the figures to quote, not the absolute times.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import PositiveFloat, PositiveInt

from pipeline.stages import Schema, Stage, StageResult

EAGER = "torch_eager"


class CrossoverConfig(Schema):
    models: list[dict[str, Any]]
    quantize: str
    calibration_samples: PositiveInt


class Int8Targets(Schema):
    """What the CPU x86 INT8 artifact should reach against ORT fp32 (reported, not enforced)."""

    min_throughput_ratio: PositiveFloat
    max_accuracy_drop_pt: float
    max_size_ratio: PositiveFloat


class BenchConfig(Schema):
    threads: PositiveInt
    warmup: PositiveInt
    latency_runs: PositiveInt
    rounds: PositiveInt
    throughput_batch: PositiveInt
    throughput_runs: PositiveInt
    baseline: str
    int8_artifact: str
    int8_targets: Int8Targets
    crossover: CrossoverConfig | None


def run(cfg: BenchConfig, quantize: dict, fp16: bool, seed: int, model_dir: Path, variants_dir: Path,
        parity_file: Path, data_dir: Path) -> StageResult:
    import torch

    from pipeline import lineage, onnx_utils
    from pipeline.errors import PipelineError
    from pipeline.flops import flops_per_image, peak_gflops
    from pipeline.stages.validate import variant_kinds

    variants = {name: onnx_utils.variant_path(Path(variants_dir), name) for name in variant_kinds(quantize, fp16)}
    variants = {name: path for name, path in variants.items() if path.is_file()}
    if cfg.baseline not in variants:
        raise PipelineError(f"bench.baseline {cfg.baseline!r} is not built: run the pipeline up to optimize first")
    lineage.require_current(variants, Path(model_dir), stage="bench")
    accuracies = _accuracies(Path(parity_file))
    torch.set_num_threads(cfg.threads)
    runners = {EAGER: _torch_runner(model_dir), **{n: _onnx_runner(p, cfg.threads) for n, p in variants.items()}}
    latency, throughput = measure(cfg, runners)
    flops = flops_per_image(variants[cfg.baseline])
    peak = peak_gflops(cfg.threads)
    rows = {}
    for name in runners:
        path = Path(model_dir) / "model.pt" if name == EAGER else variants[name]
        rows[name] = {
            "latency_ms": latency[name],
            "throughput": throughput[name],
            "bytes": path.stat().st_size if name == EAGER else onnx_utils.model_bytes(path),
            "peak_rss_mib": peak_rss(name, Path(model_dir) if name == EAGER else path, cfg),
            "effective_gflops": throughput[name] * flops / 1e9,
            "accuracy": accuracies.get(name),
        }
    _add_ratios(rows, cfg.baseline)
    metrics = {
        "threads": cfg.threads, "batch": cfg.throughput_batch, "baseline": cfg.baseline,
        "flops_per_image": flops, "machine_peak": peak, "variants": rows,
        "int8_targets": int8_verdict(rows, cfg),
    }
    crossover_quantize = quantize.get(cfg.crossover.quantize) if cfg.crossover else None
    if cfg.crossover and cfg.crossover.models and crossover_quantize is not None:
        from pipeline.crossover import sweep

        metrics["crossover"] = sweep(cfg, quantize_cfg=crossover_quantize, data_dir=Path(data_dir), seed=seed)
    plot = [{"variant": name, "latency_ms": row["latency_ms"]["p50"], "throughput": row["throughput"],
             "accuracy": row["accuracy"]} for name, row in rows.items()]
    return StageResult(metrics=metrics, plots={"bench": plot})


def _accuracies(parity_file: Path) -> dict[str, float | None]:
    """Each variant's test accuracy from validate (and PyTorch's), or none when validate has not run."""
    if not parity_file.is_file():
        return {}
    report = json.loads(parity_file.read_text())
    return {**{n: e["accuracy"] for n, e in report.get("variants", {}).items()}, EAGER: report.get("torch_accuracy")}


def _torch_runner(model_dir: Path):
    import torch

    from pipeline import checkpoint

    model, _ = checkpoint.load(model_dir)

    def run(x: np.ndarray):
        with torch.no_grad():
            return model(torch.from_numpy(x))

    return run


def _onnx_runner(path: Path, threads: int):
    from pipeline import onnx_utils

    sess = onnx_utils.session(path, threads=threads)
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def measure(cfg: BenchConfig, runners: dict) -> tuple[dict, dict]:
    """Batch-1 latency percentiles and batch-N throughput for every runner, both interleaved."""
    from pipeline.timing import interleaved_latency_ms, percentiles, throughput

    one = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    many = np.random.default_rng(1).standard_normal((cfg.throughput_batch, 1, 28, 28)).astype(np.float32)
    times = interleaved_latency_ms({n: functools.partial(r, one) for n, r in runners.items()}, rounds=cfg.rounds,
                                   per_round=max(1, cfg.latency_runs // cfg.rounds), warmup=cfg.warmup)
    rates: dict[str, list[float]] = {n: [] for n in runners}
    for _ in range(3):
        for name, runner in runners.items():
            rates[name].append(throughput(functools.partial(runner, many), batch=cfg.throughput_batch,
                                          runs=max(1, cfg.throughput_runs // 3), warmup=1))
    return {n: percentiles(t) for n, t in times.items()}, {n: float(np.median(r)) for n, r in rates.items()}


def peak_rss(name: str, path: Path, cfg: BenchConfig) -> float | None:
    kind = "torch" if name == EAGER else "onnx"
    cmd = [sys.executable, "-m", "pipeline.rss_probe", kind, str(path), str(cfg.threads), str(cfg.throughput_batch)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return float(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else None


def _add_ratios(rows: dict, baseline: str) -> None:
    eager, ort = rows[EAGER], rows[baseline]
    for row in rows.values():
        row["speedup_vs_torch"] = eager["latency_ms"]["p50"] / row["latency_ms"]["p50"]
        row["throughput_vs_torch"] = row["throughput"] / eager["throughput"]
        row["speedup_vs_ort_fp32"] = ort["latency_ms"]["p50"] / row["latency_ms"]["p50"]
        row["throughput_vs_ort_fp32"] = row["throughput"] / ort["throughput"]
        row["size_vs_ort_fp32"] = row["bytes"] / ort["bytes"]


def int8_verdict(rows: dict, cfg: BenchConfig) -> dict:
    """The CPU x86 INT8 artifact against its targets (bench.int8_targets), with the numbers, met or not."""
    artifact, targets = cfg.int8_artifact, cfg.int8_targets
    if artifact not in rows:
        return {"artifact": artifact, "measured": False}
    row, base = rows[artifact], rows[cfg.baseline]
    drop = None if row["accuracy"] is None or base["accuracy"] is None else (base["accuracy"] - row["accuracy"]) * 100
    checks = {
        "throughput_ratio": (row["throughput_vs_ort_fp32"],
                             row["throughput_vs_ort_fp32"] >= targets.min_throughput_ratio),
        "accuracy_drop_pt": (drop, drop is not None and drop <= targets.max_accuracy_drop_pt),
        "size_ratio": (row["size_vs_ort_fp32"], row["size_vs_ort_fp32"] <= targets.max_size_ratio),
    }
    return {"artifact": artifact, "targets": targets.model_dump(), "measured": True,
            **{k: {"value": v, "met": bool(ok)} for k, (v, ok) in checks.items()},
            "all_met": all(ok for _, ok in checks.values())}


STAGE = Stage(
    name="bench", run=run,
    help="Latency, throughput, size and memory of torch eager and every variant; ratios from one run.",
    owns={"bench": BenchConfig},
    config={"cfg": "bench", "quantize": "quantize", "fp16": "optimize.fp16.enabled", "seed": "seed"},
    inputs={"model_dir": "${paths.model}", "variants_dir": "${paths.variants}",
            "parity_file": "${paths.metrics}/validate.json", "data_dir": "${paths.data}"},
    plots=("bench",), code=("pipeline/rss_probe.py",), deterministic=False,
)
