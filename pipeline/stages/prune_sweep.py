"""The accuracy-vs-latency front of pruning, each point against the same architecture trained from scratch.

Inputs:  model_dir (the trained checkpoint), data_dir, the unpruned simplified model (the speed reference)
Outputs: metrics/prune_sweep.json and metrics/plots/prune_sweep.csv (`dvc plots show`: the front): per FLOP
         budget, the pruned model's channels, multiply-accumulates, test accuracy, the from-scratch model's test
         accuracy, and the pruned model's batch-1 latency and batch-N throughput against the unpruned model's,
         interleaved in one run, with intervals (pipeline/measure/timing.py)
The prune stage ships one budget with its full fine-tuning; the sweep draws the front cheaply (`subset` images,
`epochs` of fine-tuning; budgets of the scratch models: training/sweep.py). Timings make it an observation.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveInt

from pipeline.core.stage import Schema, Stage, StageResult
from pipeline.measure.timing import InProcess, idle_after, interleaved, ratio_interval
from training.config import PruneConfig, TrainConfig


class SweepConfig(Schema):
    budgets: list[float] = Field(min_length=1)
    subset: PositiveInt
    epochs: PositiveInt
    rounds: int = Field(ge=3)
    latency_runs: PositiveInt
    throughput_batch: PositiveInt
    throughput_runs: PositiveInt
    confidence: float = Field(gt=0.5, lt=1)


def run(cfg: SweepConfig, prune: PruneConfig, train: TrainConfig, opset: int, session: dict[str, Any],
        model_dir: Path, data_dir: Path, unpruned: Path, *, seed: int) -> StageResult:
    from training import kernels, sweep

    unpruned_accuracy, points = kernels.call(train.portable_kernels, sweep.run_all, prune, train, cfg.budgets,
                                             cfg.epochs, cfg.subset, Path(model_dir), Path(data_dir), seed, opset)
    with tempfile.TemporaryDirectory(prefix="prune-sweep-") as scratch:
        models = {}
        for p in points:
            models[_name(p)] = Path(scratch) / f"{p['budget']}.onnx"
            models[_name(p)].write_bytes(p.pop("onnx"))
        latency, rates = _timed(cfg, session, Path(unpruned), models)
    rows = []
    for p in points:
        name = _name(p)
        speedup = ratio_interval(latency["unpruned"], latency[name], confidence=cfg.confidence)
        throughput = ratio_interval(rates[name], rates["unpruned"], confidence=cfg.confidence)
        rows.append({**p, "latency_ms": _median(latency[name]), "speedup_b1": speedup,
                     "throughput": _median(rates[name]), "throughput_ratio": throughput})
    plot = [{k: r[k] for k in ("budget", "macs_ratio", "latency_ms", "throughput", "pruned_accuracy",
                               "scratch_accuracy")} for r in rows]
    plot.append({"budget": 1.0, "macs_ratio": 1.0, "latency_ms": _median(latency["unpruned"]),
                 "throughput": _median(rates["unpruned"]), "pruned_accuracy": unpruned_accuracy,
                 "scratch_accuracy": unpruned_accuracy})
    return StageResult(
        metrics={"points": rows,
                 "unpruned": {"accuracy": unpruned_accuracy, "latency_ms": _median(latency["unpruned"]),
                              "throughput": _median(rates["unpruned"])},
                 "subset": cfg.subset, "finetune_epochs": cfg.epochs, "scratch_epochs": train.epochs + cfg.epochs,
                 "batch": cfg.throughput_batch, "rounds": cfg.rounds, "session": session},
        plots={"prune_sweep": plot})


def _timed(cfg: SweepConfig, session: dict, unpruned: Path, models: dict[str, Path]) -> tuple[dict, dict]:
    import numpy as np

    from pipeline.deploy.session import open_session

    one = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    many = np.random.default_rng(1).standard_normal((cfg.throughput_batch, 1, 28, 28)).astype(np.float32)
    timed = {}
    for name, model in {"unpruned": unpruned, **models}.items():
        opened = open_session(model, session, [("CPUExecutionProvider", {})])
        feed = opened.get_inputs()[0].name
        run = functools.partial(opened.run, None)
        timed[name] = InProcess(lambda r=run, f=feed: r({f: one}), lambda r=run, f=feed: r({f: many}),
                                cfg.throughput_batch, idle_after(session))
    idle = {name: t.idle_s for name, t in timed.items()}
    latency = interleaved({n: functools.partial(t.latency, cfg.latency_runs, 5) for n, t in timed.items()},
                          rounds=cfg.rounds, idle_s=idle)
    rates = interleaved({n: functools.partial(t.throughput, cfg.throughput_runs, 1) for n, t in timed.items()},
                        rounds=cfg.rounds, idle_s=idle)
    return latency, rates


def _name(point: dict) -> str:
    return f"budget {point['budget']}"


def _median(values: list[float]) -> float:
    import statistics

    return float(statistics.median(values))


STAGE = Stage(
    name="prune_sweep", run=run,
    help="Pruned models at several FLOP budgets vs the same architectures trained from scratch: accuracy, speed.",
    owns={"prune_sweep": SweepConfig},
    config={"cfg": "prune_sweep", "prune": "prune", "train": "train", "opset": "export.opset",
            "session": "bench.session", "seed": "seed"},
    inputs={"model_dir": "${paths.model}", "data_dir": "${paths.data}",
            "unpruned": "${paths.variants}/simplified/model.onnx"},
    plots=("prune_sweep",), deterministic=False,
)
