"""The page a person opens to pick a deployment variant: variants, gates, chosen artifact per target and
why, speed, the shipped CPU model's confusion matrix, training curves, and what the pipeline cost.

Inputs:  metrics/{train,validate,bench}.json, metrics/plots/train.csv, every bundle's manifest, data_dir;
         observations: train's and bench's timings (training time; the machine and date of the benchmark) and
         package's for the web target (its batch-1 latency in Chromium, which bench cannot time)
Outputs: out_dir/index.html (self-contained); plot data: the confusion matrix rows for `dvc plots show`
It renders the benchmark's timings, so it is an observation like bench (not byte-reproducible).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.core.io import atomic_dir
from pipeline.core.stage import Stage, StageResult
from pipeline.data import mnist
from pipeline.data.preprocessing import normalize
from pipeline.deploy.infer import Classifier
from pipeline.measure.candidates import describe
from pipeline.present.report_page import render
from pipeline.runtimes.cells import where


def run(train_file: Path, parity_file: Path, bench_file: Path, train_plot: Path, deploy_dir: Path, data_dir: Path,
        out_dir: Path, train_timings: Path | None = None, bench_timings: Path | None = None,
        web_timings: Path | None = None, sweep_file: Path | None = None, *, cpu_target: str) -> StageResult:
    metrics = {"train": _json(train_file), "parity": _json(parity_file), "bench": _json(bench_file),
               "sweep": _json(sweep_file),
               "history": _csv(train_plot), "targets": _manifests(Path(deploy_dir)),
               "timings": {"train": _json(train_timings), "bench": _json(bench_timings),
                           "package_web": _json(web_timings)}}
    confusion = confusion_matrix(Path(deploy_dir) / cpu_target, Path(data_dir)) \
        if (Path(deploy_dir) / cpu_target / "manifest.json").is_file() else None
    page = render(metrics, confusion, cpu_target)
    with atomic_dir(Path(out_dir)) as staging:
        (staging / "index.html").write_text(page)
    rows = [] if confusion is None else [
        {"actual": str(a), "predicted": str(p)} for a in range(10) for p in range(10) for _ in range(confusion[a, p])]
    return StageResult(outputs={"report": Path(out_dir) / "index.html"}, plots={"confusion": rows})


def _json(path: Path | None) -> dict:
    return json.loads(Path(path).read_text()) if path is not None and Path(path).is_file() else {}


def _csv(path: Path) -> list[dict]:
    import csv

    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _manifests(deploy_dir: Path) -> dict[str, dict]:
    """Each bundle's manifest, with what the page shows in words: its session options, and where each runtime
    record ran."""
    manifests = {p.parent.name: json.loads(p.read_text()) for p in sorted(deploy_dir.glob("*/manifest.json"))}
    for manifest in manifests.values():
        target = manifest["target"]
        manifest["session_text"] = describe(target["session"], (target.get("provider_options") or [{}])[0])
        for record in manifest.get("verified_on", []):
            record["where"] = where(record)
    return manifests


def confusion_matrix(bundle: Path, data_dir: Path) -> np.ndarray:
    """The shipped CPU model (as bundled) on the whole test set."""
    data = mnist.load(data_dir)
    predicted, _ = Classifier(bundle, allow_fallback=True).predict(normalize(data.test_images))
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (data.test_labels.astype(int), predicted.astype(int)), 1)
    return matrix


STAGE = Stage(
    name="report", run=run, help="Write artifacts/report/index.html from the metrics, and the confusion matrix plot.",
    inputs={"train_file": "${paths.metrics}/train.json", "parity_file": "${paths.metrics}/validate.json",
            "bench_file": "${paths.metrics}/bench.json", "train_plot": "${paths.metrics}/plots/train.csv",
            "deploy_dir": "${paths.deploy}", "data_dir": "${paths.data}",
            "train_timings": "${paths.metrics}/timings/train.json",
            "bench_timings": "${paths.metrics}/timings/bench.json",
            "web_timings": "${paths.metrics}/timings/package_web.json",
            "sweep_file": "${paths.metrics}/prune_sweep.json"},
    outputs={"out_dir": "${paths.report}"}, plots=("confusion",), deterministic=False,
    config={"cpu_target": "bench.shipped_target"},
)
