"""Benchmark the shipped CPU bundle against what a user would run instead, in one process and one run.

Inputs:  model_dir (torch eager, torch.compile), the variants, validate's accuracies, the shipped bundles
Runners: torch eager; torch.compile (inductor; its warm-up reported apart); the shipped bundle with its
         manifest's session options; every variant on the ORT CPU EP (bench.session: graph level applied at
         load); the OpenVINO runtime on the fp32 and INT8 QDQ models; each of `runtime_targets` (openvino) as
         shipped, on its own runtime in that runtime's environment (a worker process, runtimes/remote.py),
         and the fp32 baseline there with the same options
Outputs: metrics/bench.json: batch-1 latency and batch-N throughput per runner, size, peak RSS, the precision
         it computes in and its effective G(FL)OP/s as a share of that precision's measured GEMM peak (fp32, int8,
         bf16 where a runner uses it: measure/peak.py), every ratio vs torch eager, torch.compile, the shipped
         cpu_x86 bundle, ORT fp32 and the OpenVINO runtime fp32 with a bootstrap interval, what won, INT8 vs
         fp32 on each runtime, the INT8 targets, the INT8 crossover; observations: the phases' wall time (the
         runner adds the machine and date).
Measurement: interleaved rounds (A B C, B C A, …), per-round medians; the ratios are the figures to quote. A
         runner in a worker process takes its turns like the others, timed on its side of the pipe; the GEMM
         peak probes take theirs in the throughput rounds, so each share pairs a runner and the peak by round.
"""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt

from pipeline.benchmark import runners
from pipeline.benchmark.crossover import CrossoverConfig, Timing, sweep
from pipeline.core.errors import PipelineError
from pipeline.core.stage import Schema, Stage, StageResult
from pipeline.measure import peak
from pipeline.measure.flops import flops_per_image
from pipeline.measure.rss_probe import peak_rss_mib
from pipeline.measure.timing import Phases, interleaved, ratio_interval
from pipeline.model import lineage, onnx_utils
from pipeline.model.quantization import variant_kinds

EAGER, COMPILED = runners.EAGER, runners.COMPILED


class Int8Targets(Schema):
    """What the CPU x86 INT8 artifact should reach against ORT fp32 (reported, not enforced)."""
    min_throughput_ratio: PositiveFloat
    max_accuracy_drop_pt: float
    max_size_ratio: PositiveFloat


class Peers(Schema):
    """The alternatives a user would pick instead of our bundle, measured in the same run."""
    torch_compile: bool
    openvino: bool


class PruningPair(Schema):
    pruned: str
    unpruned: str


class BenchConfig(Schema):
    threads: PositiveInt
    warmup: PositiveInt
    latency_runs: PositiveInt
    rounds: int = Field(ge=3)
    throughput_batch: PositiveInt
    throughput_runs: PositiveInt
    baseline: str
    int8_artifact: str
    shipped_target: str
    runtime_targets: list[str]
    session: dict[str, Any]
    peers: Peers
    confidence: float = Field(gt=0.5, lt=1)
    int8_targets: Int8Targets
    crossover: CrossoverConfig | None
    pruning: PruningPair | None


def run(cfg: BenchConfig, quantize: dict, fp16: bool, seed: int, opset: int, model_dir: Path, variants_dir: Path,
        parity_file: Path, deploy_dir: Path, data_dir: Path, pruned_dir: Path) -> StageResult:
    import torch

    kinds = variant_kinds(quantize, fp16)
    variants = {name: onnx_utils.variant_path(Path(variants_dir), name) for name in kinds}
    variants = {name: path for name, path in variants.items() if path.is_file()}
    if cfg.baseline not in variants:
        raise PipelineError(f"bench.baseline {cfg.baseline!r} is not built: run the pipeline up to optimize first")
    lineage.require_current(variants, Path(model_dir), stage="bench", pruned_dir=Path(pruned_dir))
    accuracies = _accuracies(Path(parity_file))
    manifests = {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(deploy_dir).glob("*/manifest.json"))}
    torch.set_num_threads(cfg.threads)
    phase = Phases()
    with contextlib.ExitStack() as workers:
        with phase("runners (torch.compile, workers)"):
            timed, info = runners.assemble(cfg, Path(model_dir), variants, Path(deploy_dir), manifests, workers)
        for meta in info.values():  # what a runner computes in decides which peak it is held to
            meta.setdefault("precision", "int8" if kinds.get(meta["variant"], "fp32").startswith("int8") else "fp32")
        with phase("GEMM peak probes"):
            gemms = peak.probes(cfg.threads, {meta["precision"] for meta in info.values()})
        with phase("interleaved rounds"):
            latency, rates, gemm_rates = measure(cfg, timed, gemms)
    flops = flops_per_image(variants[cfg.baseline])
    peaks = peak.peaks(gemm_rates, gemms)
    rows = {}
    for name, meta in info.items():
        path = meta.get("path")
        throughput = float(np.median(rates[name]))
        rows[name] = {
            **{k: v for k, v in meta.items() if k != "path"},
            "latency_ms": {"p50": float(np.median(latency[name])), "rounds": len(latency[name]),
                           "per_round": max(1, cfg.latency_runs // cfg.rounds)},
            "throughput": throughput,
            "bytes": onnx_utils.model_bytes(path) if path and path.suffix in (".onnx", ".ort") else None,
            "peak_rss_mib": _probe_rss(meta, path, cfg, phase),
            "effective_gops": throughput * flops / 1e9,
            **peak.share(rates[name], flops, peaks.get(meta["precision"]), cfg.confidence),
            "accuracy": accuracies.get(meta.get("variant", name)),
        }
    _add_ratios(rows, latency, rates, cfg)
    metrics = {
        "threads": cfg.threads, "batch": cfg.throughput_batch, "baseline": cfg.baseline, "flops_per_image": flops,
        "peaks": peaks, "variants": rows, "int8_targets": int8_verdict(rows, cfg),
        "winner": winner(rows, runners.shipped_row(cfg.shipped_target)),
        "int8_vs_fp32": int8_vs_fp32(rows, rates, cfg, set(quantize)),
        "targets": shipped_targets(rows, manifests),
        "pruned_vs_unpruned": pruned_vs_unpruned(rows, latency, rates, variants, cfg),
    }
    crossover_quantize = quantize.get(cfg.crossover.quantize) if cfg.crossover else None
    if cfg.crossover and cfg.crossover.models and crossover_quantize is not None:
        with phase("INT8 crossover"):
            timing = Timing(cfg.session, cfg.throughput_batch, cfg.rounds, cfg.confidence)
            metrics["crossover"] = sweep(cfg.crossover, timing, quantize_cfg=crossover_quantize, opset=opset,
                                         data_dir=Path(data_dir), seed=seed)
    plot = [{"variant": name, "latency_ms": row["latency_ms"]["p50"], "throughput": row["throughput"],
             "accuracy": row["accuracy"]} for name, row in rows.items()]
    above = [f"{name} ran at {row['share_of_peak']:.0%} of the {row['precision']} GEMM peak (interval from "
             f"{row['share_of_peak_ci'][0]:.0%}): a measurement error (operation count or peak probe), not a result"
             for name, row in rows.items() if row["share_of_peak_ci"] and row["share_of_peak_ci"][0] > 1]
    return StageResult(metrics=metrics, plots={"bench": plot}, observations={"phases_s": phase.seconds},
                       notices=above)


def _accuracies(parity_file: Path) -> dict[str, float | None]:
    """Each variant's test accuracy from validate (and PyTorch's), or none when validate has not run."""
    if not parity_file.is_file():
        return {}
    report = json.loads(parity_file.read_text())
    return {**{n: e["accuracy"] for n, e in report.get("variants", {}).items()}, EAGER: report.get("torch_accuracy")}


def measure(cfg: BenchConfig, timed: dict, gemms: dict | None = None) -> tuple[dict, dict, dict]:
    """Per-round median batch-1 latency and per-round batch-N throughput of every runner, interleaved; the GEMM
    probes take turns in the throughput rounds (their rates per round come back apart)."""
    for runner in timed.values():
        runner.latency(runs=cfg.warmup, warmup=0)
    per_round = max(1, cfg.latency_runs // cfg.rounds)
    idle_s = {n: r.idle_s for n, r in timed.items()}
    latency = interleaved({n: functools.partial(r.latency, per_round, 2) for n, r in timed.items()}, rounds=cfg.rounds,
                          idle_s=idle_s)
    per_round = max(1, cfg.throughput_runs // cfg.rounds)
    turns = {n: functools.partial(r.throughput, per_round, 1) for n, r in timed.items()}
    rates = interleaved(peak.alongside(turns, gemms or {}), rounds=cfg.rounds, idle_s=idle_s)
    return latency, rates, {n: rates.pop(n) for n in gemms or {}}


def _probe_rss(meta: dict, path: Path | None, cfg: BenchConfig, phase: Phases) -> float | None:
    if not meta.get("rss"):
        return None
    with phase("peak RSS probes"):
        return peak_rss_mib(meta["rss"], path.parent if meta["rss"] == "torch" else path, cfg.threads,
                            cfg.throughput_batch)


def _add_ratios(rows: dict, latency: dict, rates: dict, cfg: BenchConfig) -> None:
    """Speed-ups (latency) and throughput ratios against torch eager, torch.compile, the shipped bundle and
    ORT fp32, each with a bootstrap interval over the paired rounds."""
    references = {"torch": EAGER, "compile": COMPILED, "shipped": runners.shipped_row(cfg.shipped_target),
                  "ort_fp32": cfg.baseline,
                  "openvino": f"openvino_{cfg.baseline}"}
    for name, row in rows.items():
        for key, ref in references.items():
            if ref not in rows:
                continue
            speedup = ratio_interval(latency[ref], latency[name], confidence=cfg.confidence)
            rate = ratio_interval(rates[name], rates[ref], confidence=cfg.confidence)
            row[f"speedup_vs_{key}"], row[f"speedup_vs_{key}_ci"] = speedup["ratio"], [speedup["low"], speedup["high"]]
            row[f"throughput_vs_{key}"], row[f"throughput_vs_{key}_ci"] = rate["ratio"], [rate["low"], rate["high"]]
        if row.get("bytes") and rows[cfg.baseline].get("bytes"):
            row["size_vs_ort_fp32"] = row["bytes"] / rows[cfg.baseline]["bytes"]


def pruned_vs_unpruned(rows: dict, latency: dict, rates: dict, variants: dict[str, Path], cfg: BenchConfig) -> dict:
    """The pruned model against the unpruned one on each runtime timed here: batch-1 speed-up and batch-N
    throughput ratio with their intervals, and what each computes (FLOPs per image), weighs and scores."""
    if cfg.pruning is None or not {cfg.pruning.pruned, cfg.pruning.unpruned} <= set(variants):
        return {}
    pair = (cfg.pruning.pruned, cfg.pruning.unpruned)
    about = {name: {"flops_per_image": flops_per_image(variants[name]), "bytes": rows[name]["bytes"],
                    "parameters": onnx_utils.parameter_count(variants[name]), "accuracy": rows[name]["accuracy"]}
             for name in pair}
    result = {"pruned": pair[0], "unpruned": pair[1], "models": about, "runtimes": {}}
    for runtime, prefix in (("ONNX Runtime CPU EP", ""), ("OpenVINO runtime (CPU plugin)", "openvino_")):
        pruned, unpruned = f"{prefix}{pair[0]}", f"{prefix}{pair[1]}"
        if pruned in rows and unpruned in rows:
            result["runtimes"][runtime] = {
                "latency_ms_b1": [rows[pruned]["latency_ms"]["p50"], rows[unpruned]["latency_ms"]["p50"]],
                "speedup_b1": ratio_interval(latency[unpruned], latency[pruned], confidence=cfg.confidence),
                "throughput_ratio": ratio_interval(rates[pruned], rates[unpruned], confidence=cfg.confidence)}
    return result


def int8_vs_fp32(rows: dict, rates: dict, cfg: BenchConfig, quantized: set[str]) -> dict:
    """INT8 throughput over fp32 on each runtime, with its interval: where INT8 does not pay, ship fp32."""
    pairs = {"onnxruntime": (cfg.int8_artifact, cfg.baseline),
             "openvino": (f"openvino_{cfg.int8_artifact}", f"openvino_{cfg.baseline}")}
    for target in cfg.runtime_targets:  # the shipped INT8 model against fp32 under its own options
        shipped = rows.get(f"shipped_{target}")
        if shipped and shipped["variant"] in quantized:
            pairs[shipped["environment"]] = (f"shipped_{target}", f"{target}_ep_{cfg.baseline}")
    result = {}
    for runtime, (int8, fp32) in pairs.items():
        if int8 in rates and fp32 in rates:
            ratio = ratio_interval(rates[int8], rates[fp32], confidence=cfg.confidence)
            result[runtime] = {**ratio, "int8": rows[int8]["variant"], "int8_pays": ratio["low"] > 1.0}
    return result


def shipped_targets(rows: dict, manifests: dict[str, dict]) -> dict:
    """What each target ships (runtime, variant, session options) and, where it was measured here, how it
    compares with torch eager, torch.compile and the OpenVINO runtime."""
    table = {}
    for manifest in manifests.values():
        name = manifest["target"]["name"]
        entry = {"runtime": f"onnxruntime, {manifest['target']['providers'][0]}",
                 "variant": manifest["model"]["variant"], "session": manifest["target"]["session"],
                 "format": manifest["target"]["format"],
                 "provider_options": (manifest["target"].get("provider_options") or [{}])[0]}
        row = rows.get(runners.shipped_row(name))
        if row:
            entry.update({"runtime": row["runtime"],
                          "latency_ms_b1": row["latency_ms"]["p50"], "throughput": row["throughput"],
                          **{k: row[k] for k in row if k.startswith(("speedup_vs", "throughput_vs"))}})
        elif "at batch 1 on" in manifest["selection"]["reason"]:
            entry["measured"] = (f"batch 1 on its own runtime by package (metrics/timings/package_{name}.json); "
                                 "bench has no browser runner")
        else:
            entry["measured"] = f"not timed: no runtime here has {manifest['target']['providers'][0]}"
        table[name] = entry
    return table


def winner(rows: dict, shipped: str) -> dict:
    """Fastest at batch 1 and at batch N among everything measured, and where the shipped bundle stands."""
    fastest = min(rows, key=lambda n: rows[n]["latency_ms"]["p50"])
    busiest = max(rows, key=lambda n: rows[n]["throughput"])
    return {"latency": {"runner": fastest, "runtime": rows[fastest]["runtime"]},
            "throughput": {"runner": busiest, "runtime": rows[busiest]["runtime"]},
            "shipped": {k: v for k, v in rows.get(shipped, {}).items()
                        if k.startswith(("speedup_vs", "throughput_vs"))}}


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
    config={"cfg": "bench", "quantize": "quantize", "fp16": "optimize.fp16.enabled", "seed": "seed",
            "opset": "export.opset"},
    inputs={"model_dir": "${paths.model}", "pruned_dir": "${paths.pruned}", "variants_dir": "${paths.variants}",
            "parity_file": "${paths.metrics}/validate.json", "deploy_dir": "${paths.deploy}",
            "data_dir": "${paths.data}"},
    plots=("bench",), table="bench_table", code=("pipeline/runtimes/worker.py",),
    deterministic=False,
    headline=lambda m: {key: round(m["winner"]["shipped"][source], 2) if source in m["winner"]["shipped"] else None
                        for key, source in (("b1_vs_torch", "speedup_vs_torch"),
                                            ("throughput_vs_compile", "throughput_vs_compile"))},
)
