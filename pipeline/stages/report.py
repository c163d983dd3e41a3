"""The page a person opens to pick a deployment variant: variants, gates, chosen artifact per target and
why, speed, the shipped CPU model's confusion matrix, training curves, and what the pipeline cost.

Inputs:  metrics/{train,validate,bench}.json, metrics/plots/train.csv, every bundle's manifest, data_dir
Outputs: out_dir/index.html (self-contained); plot data: the confusion matrix rows for `dvc plots show`
It renders the benchmark's timings, so it is an observation like bench (not byte-reproducible).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

import numpy as np

from pipeline.core.stage import Stage, StageResult
from pipeline.present import charts
from pipeline.runtimes.cells import where

CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
       "margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
       "th{background:#eee}td.n{text-align:right}td,th{overflow-wrap:anywhere}.ok{color:#2a7}"
       ".bad{color:#c00;font-weight:bold}")
# Pipeline order for variants; anything unlisted follows alphabetically.
VARIANT_ORDER = ("exported", "simplified", "optimized", "fp16")


def run(train_file: Path, parity_file: Path, bench_file: Path, train_plot: Path, deploy_dir: Path, data_dir: Path,
        out_dir: Path, *, cpu_target: str = "cpu_x86") -> StageResult:
    from pipeline.core.io import atomic_dir

    metrics = {"train": _json(train_file), "parity": _json(parity_file), "bench": _json(bench_file),
               "history": _csv(train_plot), "targets": _manifests(Path(deploy_dir))}
    confusion = confusion_matrix(Path(deploy_dir) / cpu_target, Path(data_dir)) \
        if (Path(deploy_dir) / cpu_target / "manifest.json").is_file() else None
    page = render(metrics, confusion, cpu_target)
    with atomic_dir(Path(out_dir)) as staging:
        (staging / "index.html").write_text(page)
    rows = [] if confusion is None else [
        {"actual": str(a), "predicted": str(p)} for a in range(10) for p in range(10) for _ in range(confusion[a, p])]
    return StageResult(outputs={"report": Path(out_dir) / "index.html"}, plots={"confusion": rows})


def _json(path: Path) -> dict:
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}


def _csv(path: Path) -> list[dict]:
    import csv

    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _manifests(deploy_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(deploy_dir.glob("*/manifest.json"))}


def confusion_matrix(bundle: Path, data_dir: Path) -> np.ndarray:
    """The shipped CPU model (as bundled) on the whole test set."""
    from pipeline.data import mnist
    from pipeline.data.preprocessing import normalize
    from pipeline.deploy.infer import Classifier

    data = mnist.load(data_dir)
    predicted, _ = Classifier(bundle).predict(normalize(data.test_images))
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (data.test_labels.astype(int), predicted.astype(int)), 1)
    return matrix


def render(m: dict, confusion: np.ndarray | None, cpu_target: str) -> str:
    sections = [f"<h1>MNIST → ONNX deployment report</h1>{_summary(m)}", _variants(m), _targets(m),
                _speed(m), _confusion(confusion, cpu_target), _training(m)]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Deployment report</title>"
            f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>\n")


def _summary(m: dict) -> str:
    parity, train = m.get("parity", {}), m.get("train", {})
    status = ("<span class='ok'>all parity gates pass</span>" if parity.get("passed")
              else "<span class='bad'>parity gates FAIL</span>" if parity else "not validated")
    accuracy = f"{train['test_accuracy']:.2%}" if train.get("test_accuracy") is not None else "?"
    return (f"<p>PyTorch test accuracy <b>{accuracy}</b> after {train.get('epochs', '?')} epochs "
            f"({train.get('seconds', '?')} s); {status} over {parity.get('samples', '?')} test images.</p>"
            + "".join(f"<p class='bad'>✗ {escape(f)}</p>" for f in parity.get("failures", [])))


def _variants(m: dict) -> str:
    parity, bench = m.get("parity", {}).get("variants", {}), m.get("bench", {}).get("variants", {})
    head = ("variant", "kind", "accuracy", "Δacc (pt)", "agreement", "max |Δlogit|", "cos min", "gates",
            "p50 ms", "img/s", "img/s vs torch eager", "size")
    rows = []
    for name, p in sorted(parity.items(), key=lambda item: _rank(item[0], VARIANT_ORDER)):
        b = bench.get(name, {})
        gates = "<span class='ok'>✓</span>" if p["passed"] else "<span class='bad'>✗ " + escape(
            ", ".join(g for g, v in p["gates"].items() if not v["passed"])) + "</span>"
        rows.append([escape(name), p["kind"], f"{p['accuracy']:.2%}", f"{p['accuracy_delta_pt']:+.2f}",
                     f"{p['agreement']:.2%}", f"{p['max_abs_logit']:.2e}", f"{p['cosine_min']:.4f}", gates,
                     _num(b.get("latency_ms", {}).get("p50"), "{:.3f}"), _num(b.get("throughput"), "{:,.0f}"),
                     _num(b.get("throughput_vs_torch"), "{:.2f}×"), _size(b.get("bytes"))])
    return "<h2>Variants (parity vs PyTorch, speed on this CPU)</h2>" + _table(head, rows)


def _targets(m: dict) -> str:
    rows = [[escape(name), f"<b>{escape(p['selection']['chosen'])}</b>", escape(p["selection"]["reason"]),
             ] for name, p in m.get("targets", {}).items()]
    return "<h2>Chosen artifact per target</h2>" + _table(("target", "chosen", "why"), rows) + _matrix(m)


def _matrix(m: dict) -> str:
    """Target × provider × runtime × architecture → verified (Δ, agreement) or not (why)."""
    rows = []
    for name, p in m.get("targets", {}).items():
        for r in p.get("verified_on", []):
            result = (f"✓ max |Δ| {r['max_abs_delta']:.2g}, top-1 {r['top1_agreement']:.0%} of {r['golden_samples']}"
                      if r["verified"] else f"✗ {r['reason']}")
            rows.append([escape(name), escape(r["provider"]), escape(r.get("package", "—")), escape(where(r)),
                         escape(result)])
    return ("<h2>Runtime matrix (each bundle's own verify.py, golden I/O)</h2>"
            + _table(("target", "provider", "runtime", "architecture", "result"), rows))


def _speed(m: dict) -> str:
    bench = m.get("bench")
    if not bench:
        return "<h2>Speed</h2><p>not benchmarked (run <code>pipeline bench</code>)</p>"
    rows = bench["variants"]
    scatter = charts.scatter({n: (r["latency_ms"]["p50"], r["accuracy"]) for n, r in rows.items() if r["accuracy"]},
                          "accuracy vs batch-1 latency", "batch-1 p50 latency (ms)", "test accuracy")
    bar = charts.bars({n: r["throughput"] for n, r in rows.items()}, "throughput",
                   f"images/s at batch {bench['batch']}, {bench['threads']} threads")
    cross = [[escape(c["model"]), f"{c['parameters']:,}", _ci(c, "throughput_ratio"), _ci(c, "latency_ratio"),
              f"{c['size_ratio']:.0%}"] for c in bench.get("crossover", [])]
    return ("<h2>Speed</h2>" + _shipped(bench) + scatter + bar
            + "<h3>Where INT8 pays off (INT8 / fp32, random-init models, 95 % intervals)</h3>"
            + _table(("model", "parameters", "throughput", "batch-1 speedup", "size"), cross))


def _shipped(bench: dict) -> str:
    """What won: per target, what it ships and how that compares with what a user would run instead."""
    from pipeline.measure.candidates import describe

    rows = []
    for name, t in bench.get("targets", {}).items():
        options = describe(t["session"], t.get("provider_options"))
        if "throughput" not in t:
            rows.append([escape(name), escape(t["runtime"]), escape(t["variant"]), escape(options),
                         escape(t["measured"]), "", "", "", "", ""])
            continue
        rows.append([escape(name), escape(t["runtime"]), escape(t["variant"]), escape(options),
                     f"{t['latency_ms_b1'] * 1000:.0f} µs", f"{t['throughput']:,.0f}", _ci(t, "speedup_vs_torch"),
                     _ci(t, "throughput_vs_torch"), _ci(t, "throughput_vs_compile"),
                     _ci(t, "throughput_vs_openvino")])
    head = ("target", "runtime", "variant", "session options", "batch-1 latency", "img/s", "b1 vs torch eager",
            "img/s vs torch eager", "img/s vs torch.compile", "img/s vs OpenVINO runtime fp32")
    return "<h3>What each target ships, against the alternatives (95 % intervals)</h3>" + _table(head, rows)


def _ci(row: dict, key: str) -> str:
    if key not in row:
        return "—"
    low, high = row[f"{key}_ci"]
    return f"{row[key]:.2f}× [{low:.2f}, {high:.2f}]"


def _confusion(matrix: np.ndarray | None, target: str) -> str:
    if matrix is None:
        return ""
    peak = matrix.max()
    cells = [[str(a)] + [f"<span style='background:rgba(52,101,164,{matrix[a, p] / peak:.2f});"
                         f"padding:0 4px'>{matrix[a, p]}</span>" for p in range(10)] for a in range(10)]
    accuracy = np.trace(matrix) / matrix.sum()
    return (f"<h2>Confusion matrix of the shipped {escape(target)} model ({accuracy:.2%})</h2>"
            + _table(("actual \\ predicted", *map(str, range(10))), cells))


def _training(m: dict) -> str:
    history = m.get("history", [])
    series = {key: [(h["epoch"], h[key]) for h in history] for key in ("train_loss", "test_loss")}
    accuracy = {"test_accuracy": [(h["epoch"], h["test_accuracy"]) for h in history]}
    return ("<h2>Training</h2>" + charts.lines(series, "loss per epoch", "epoch", "loss")
            + charts.lines(accuracy, "test accuracy per epoch", "epoch", "accuracy"))


def _table(head, rows) -> str:
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _cell(content: str) -> str:
    """Numbers right-aligned, words left-aligned."""
    numeric = content[:1].isdigit() or content[:1] in "+-−" or content.startswith("<span style")
    return f"<td class='n'>{content}</td>" if numeric else f"<td>{content}</td>"


def _rank(name: str, order: tuple[str, ...]) -> tuple[int, str]:
    prefix = next((i for i, p in enumerate(order) if name == p or name.startswith(f"{p}_")), len(order))
    return prefix, name


def _size(num_bytes: int | None) -> str:
    return "—" if num_bytes is None else f"{num_bytes / 1024:.1f} KB"


def _num(value, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


STAGE = Stage(
    name="report", run=run, help="Write artifacts/report/index.html from the metrics, and the confusion matrix plot.",
    inputs={"train_file": "${paths.metrics}/train.json", "parity_file": "${paths.metrics}/validate.json",
            "bench_file": "${paths.metrics}/bench.json", "train_plot": "${paths.metrics}/plots/train.csv",
            "deploy_dir": "${paths.deploy}", "data_dir": "${paths.data}"},
    outputs={"out_dir": "${paths.report}"}, plots=("confusion",), deterministic=False,
)
