"""The report's HTML (artifacts/report/index.html): sections, tables and charts from what the report stage
gathered (metrics, manifests, the confusion matrix). It only formats: the stage computes every fact it shows.
"""

from __future__ import annotations

from html import escape

import numpy as np

from pipeline.present import charts
from pipeline.present.notes import Notes
from pipeline.present.tables import ratio_parts

# Words and numbers never break inside a cell: a table wider than the window scrolls in its own box (.wide);
# prose wraps a long word (an absolute path in a note) rather than widen the page;
# numbers and intervals stay on one line, and charts shrink to the window.
CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}@media(max-width:600px){body{margin:"
       "1em}}p,li{overflow-wrap:break-word}.wide{overflow-x:auto;margin:1em 0}table{border-collapse:collapse}"
       "td,th{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top;overflow-wrap:normal;"
       "word-break:normal;hyphens:none}th{background:#eee}td.n{text-align:right;white-space:nowrap}"
       "td.why>div{min-width:16em}svg{max-width:100%;height:auto}.ok{color:#2a7}.bad{color:#c00;font-weight:bold}"
       ".note,.notes{color:#555}.w{white-space:nowrap}.ci{display:block;font-size:85%;color:#555}")
# What each loss in metrics/plots/train.csv is (training/loop.py): the train loss is the training objective,
# cross-entropy with train.label_smoothing on randomly shifted batches (train.augment_shift), averaged over the
# epoch while the weights change; the test loss is plain cross-entropy on the test set after the epoch.
LOSSES = {"train_loss": "train loss (label-smoothed, on augmented batches, mean over the epoch)",
          "test_loss": "test loss (plain cross-entropy, test set after the epoch)"}
# Pipeline order for variants; anything unlisted follows alphabetically.
VARIANT_ORDER = ("exported", "simplified", "optimized", "fp16")


def render(m: dict, confusion: np.ndarray | None, cpu_target: str) -> str:
    sections = [f"<h1>MNIST → ONNX deployment report</h1>{_summary(m)}", _variants(m), _targets(m),
                _speed(m), _pruning(m.get("sweep", {})), _confusion(confusion, cpu_target), _training(m)]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Deployment report</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>\n")


def _summary(m: dict) -> str:
    parity, train = m.get("parity", {}), m.get("train", {})
    status = ("<span class='ok'>all parity gates pass</span>" if parity.get("passed")
              else "<span class='bad'>parity gates FAIL</span>" if parity else "not validated")
    accuracy = f"{train['test_accuracy']:.2%}" if train.get("test_accuracy") is not None else "?"
    return (f"<p>PyTorch test accuracy <b>{accuracy}</b> after {train.get('epochs', '?')} epochs "
            f"({_training_time(m.get('timings', {}).get('train', {}))}); {status} over "
            f"{parity.get('samples', '?')} test images.</p>"
            + "".join(f"<p class='bad'>✗ {escape(f)}</p>" for f in parity.get("failures", [])))


def _training_time(observed: dict) -> str:
    """train's observations: the training loop's time and the whole stage's (loading data, writing files)."""
    loop, wall = observed.get("training_seconds"), observed.get("wall_seconds")
    if loop is None and wall is None:
        return "training time not recorded: metrics/timings/train.json is missing"
    if loop is None:
        return f"{wall:.0f} s for the train stage"
    return f"{loop:.0f} s of training" + (f", {wall:.0f} s for the whole stage" if wall is not None else "")


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
    return ("<h2>Variants (parity vs PyTorch; speed on the benchmark machine, see Speed)</h2>"
            + _table(head, rows))


def _targets(m: dict) -> str:
    notes, rows = Notes(), []
    for name, p in m.get("targets", {}).items():
        chosen = p["selection"]["chosen"]
        why = notes.add(_without_label(p["selection"]["reason"], chosen), _own_names(name, p))
        rows.append([escape(name), f"<b>{escape(chosen)}</b>", escape(p["session_text"]), why])
    rows = [[*row[:3], _Why(notes.cell(row[3]))] for row in rows]
    return ("<h2>Chosen artifact per target</h2>" + _table(("target", "chosen", "session options", "why"), rows)
            + notes.html() + _matrix(m))


def _without_label(reason: str, chosen: str) -> str:
    """A timed selection's reason opens with the chosen candidate's label, which the row's other cells show."""
    return reason.split(": ", 1)[1] if reason.startswith(f"{chosen} @ ") and ": " in reason else reason


def _own_names(target: str, manifest: dict) -> dict[str, str]:
    """The names that make a reason this row's own: its target and its providers."""
    return {target: "target", **{p: "provider" for p in manifest.get("target", {}).get("providers", [])}}


def _matrix(m: dict) -> str:
    """Target × provider × runtime × architecture → verified (Δ, agreement) or not (why: a reason several rows
    give is a note below the table)."""
    notes, rows = Notes(), []
    for name, p in m.get("targets", {}).items():
        for r in p.get("verified_on", []):
            result = (f"✓ max |Δ| {r['max_abs_delta']:.2g}, top-1 {r['top1_agreement']:.0%} of {r['golden_samples']}"
                      if r["verified"] else notes.add(r["reason"], {name: "target", r["provider"]: "provider"}))
            rows.append([escape(name), escape(r["provider"]), escape(r.get("package", "—")), escape(r["where"]),
                         result])
    rows = [[*row[:4], _Why(escape(row[4]) if isinstance(row[4], str) else notes.cell(row[4], "✗ "))]
            for row in rows]
    return ("<h2>Runtime matrix (each bundle's own verify.py, golden I/O)</h2>"
            + _table(("target", "provider", "runtime", "architecture", "result"), rows) + notes.html())


def _speed(m: dict) -> str:
    bench = m.get("bench")
    if not bench:
        return "<h2>Speed</h2><p>not benchmarked (run <code>pipeline bench</code>)</p>"
    rows = bench["variants"]
    bar = charts.bars({n: r["throughput"] for n, r in rows.items()}, "throughput",
                   f"images/s at batch {bench['batch']}, {bench['threads']} threads")
    cross = [[escape(c["model"]), f"{c['parameters']:,}", _ci(c, "throughput_ratio"), _ci(c, "latency_ratio"),
              f"{c['size_ratio']:.0%}"] for c in bench.get("crossover", [])]
    return ("<h2>Speed</h2>" + _machine(bench, m.get("timings", {}).get("bench", {}))
            + _shipped(bench, m.get("timings", {}).get("package_web", {}), m.get("targets", {}))
            + _ranked(rows, m.get("parity", {}).get("samples")) + bar
            + "<h3>Where INT8 pays off (INT8 / fp32, random-init models, 95 % intervals)</h3>"
            + _table(("model", "parameters", "throughput", "batch-1 speedup", "size"), cross))


def _machine(bench: dict, observed: dict) -> str:
    """Where and when bench measured, from its observations (older runs did not record the machine)."""
    machine = observed.get("machine")
    threads = f"{bench['threads']} threads"
    if not machine:
        return (f"<p class='machine'>Measured with {threads} on a machine this bench run did not record "
                "(CPU model and date are recorded from the next <code>pipeline bench</code> on).</p>")
    return (f"<p class='machine'>Measured on <b>{escape(machine['cpu'])}</b> ({machine['logical_cpus']} logical "
            f"CPUs, {escape(machine['architecture'])}) with <b>{threads}</b>, on "
            f"<b>{escape(machine['measured_at'][:10])}</b>.</p>")


def _ranked(rows: dict, samples: int | None) -> str:
    """Every runner by batch-1 latency, fastest first, with its accuracy: accuracies that differ by a handful of
    test images read better as numbers than as points on an axis."""
    ranked = sorted(rows.items(), key=lambda item: item[1]["latency_ms"]["p50"])
    measured = [r["accuracy"] for _, r in ranked if r.get("accuracy") is not None]
    best = max(measured, default=None)
    body = []
    for rank, (name, r) in enumerate(ranked, 1):
        accuracy = r.get("accuracy")
        if accuracy is None:
            accuracy_cells = [_Why("not evaluated: validate has no accuracy for this runner"), ""]
        else:
            missed = "—" if samples is None else f"{round((best - accuracy) * samples):d}"
            accuracy_cells = [f"{accuracy:.2%}", missed]
        body.append([str(rank), escape(name), escape(r["runtime"]), f"{r['latency_ms']['p50'] * 1000:,.0f} µs",
                     *accuracy_cells])
    spread = ("" if best is None or samples is None else
              f" Accuracies span {round((best - min(measured)) * samples)} of {samples:,} test images.")
    head = ("#", "runner / variant", "runtime", "batch-1 p50 latency", "test accuracy",
            "test images behind the best")
    return ("<h3>Every runner, fastest first at batch 1, with its test accuracy</h3>"
            + (f"<p class='note'>{spread.strip()}</p>" if spread else "") + _table(head, body))


def _shipped(bench: dict, web_observed: dict, manifests: dict[str, dict]) -> str:
    """What won: per target, what it ships and how that compares with what a user would run instead. A target
    bench cannot run says why on its row, with the batch-1 latency package measured where there is one."""
    rows = []
    for name, t in bench.get("targets", {}).items():  # session options: under Chosen artifact per target
        lead = [escape(name), escape(t["variant"]), escape(t["runtime"])]
        if "throughput" in t:
            rows.append([*lead, f"{t['latency_ms_b1'] * 1000:,.0f} µs", f"{t['throughput']:,.0f}",
                         _ci(t, "speedup_vs_torch"), _ci(t, "throughput_vs_torch"), _ci(t, "throughput_vs_compile"),
                         _ci(t, "throughput_vs_openvino")])
            continue
        in_browser = t.get("format", manifests.get(name, {}).get("target", {}).get("format")) == "web"
        latency = _package_latency(web_observed) if in_browser else None
        if latency is not None:
            rows.append([*lead, f"{latency * 1000:,.0f} µs",
                         _Why("batch-1 latency timed by package in headless Chromium (onnxruntime-web, one thread); "
                              "no throughput or ratios: bench has no browser runner", span=5)])
        elif in_browser or "by package" in t.get("measured", ""):
            rows.append([*lead, _Why("not timed here: package times this target in its own runtime and its "
                                     "timing was not recorded; bench has no runner for it", span=6)])
        else:
            rows.append([*lead, _Why(escape(t.get("measured", "not timed")), span=6)])
    head = ("target", "variant", "runtime", "batch-1 latency", "img/s", "b1 vs torch eager", "img/s vs torch eager",
            "img/s vs torch.compile", "img/s vs OpenVINO runtime fp32")
    return "<h3>What each target ships, against the alternatives (95 % intervals)</h3>" + _table(head, rows)


def _package_latency(observed: dict) -> float | None:
    """The chosen candidate's median batch-1 latency (ms) from package's selection observations."""
    selection = observed.get("selection", {})
    chosen = selection.get("candidates", {}).get(selection.get("chosen"), {})
    return chosen.get("median_ms")


def _ci(row: dict, key: str) -> str:
    parts = ratio_parts(row, key)
    return "—" if parts is None else f"{parts[0]}<span class='ci'>{parts[1]}</span>"


def _pruning(sweep: dict) -> str:
    """The pruning front (prune_sweep stage): accuracy against batch-1 latency, pruned vs trained from scratch."""
    points = sweep.get("points", [])
    if not points:
        return ""
    unpruned = sweep["unpruned"]
    start = [(unpruned["latency_ms"], unpruned["accuracy"])]
    chart = charts.lines({"pruned + fine-tuned": start + [(p["latency_ms"], p["pruned_accuracy"]) for p in points],
                          "same net from scratch": [(p["latency_ms"], p["scratch_accuracy"]) for p in points]},
                         "test accuracy vs batch-1 latency (ORT CPU EP)", "batch-1 latency (ms)", "test accuracy",
                         integer_x=False)
    rows = [(f"{p['budget']:.0%}", f"{p['macs_ratio']:.0%}", f"{p['pruned_accuracy']:.2%}",
             f"{p['scratch_accuracy']:.2%}", p["better"],
             _num(p["latency_ms"], ".4f"), f"{p['speedup_b1']['ratio']:.2f}×",
             f"{p['throughput_ratio']['ratio']:.2f}×") for p in points]
    return (f"<h2>Pruning: accuracy against speed</h2><p>Unpruned: {unpruned['accuracy']:.2%} at "
            f"{unpruned['latency_ms']:.4f} ms. Each budget pruned and fine-tuned {sweep['finetune_epochs']} "
            f"epoch(s) on {sweep['subset']:,} images; from scratch: the same architecture, {sweep['scratch_epochs']} "
            f"epochs on those images (metrics/prune_sweep.json).</p>" + chart
            + _table(("FLOP budget", "MACs left", "pruned", "from scratch", "more accurate", "batch-1 ms", "speed-up",
                      f"batch-{sweep['batch']} ratio"), rows))


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
    series = {label: [(h["epoch"], h[key]) for h in history] for key, label in LOSSES.items()}
    accuracy = {"test accuracy (test set, after each epoch)": [(h["epoch"], h["test_accuracy"]) for h in history]}
    return ("<h2>Training</h2>" + charts.lines(series, "loss per epoch", "epoch", "cross-entropy loss")
            + charts.lines(accuracy, "test accuracy per epoch", "epoch", "accuracy"))


class _Why(str):
    """A cell of prose (a reason, a verdict): it wraps between words, and may span the cells it explains."""
    def __new__(cls, text: str, span: int = 1):
        cell = super().__new__(cls, text)
        cell.span = span
        return cell


def _table(head, rows) -> str:
    """In its own horizontally scrolling box, so a wide table never widens the page or breaks a word."""
    header = "".join(f"<th>{_whole_words(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<div class='wide'><table><tr>{header}</tr>{body}</table></div>"


def _cell(content: str) -> str:
    """Numbers right-aligned on one line, words left-aligned, prose wrapping between words."""
    if isinstance(content, _Why):
        span = f" colspan='{content.span}'" if content.span > 1 else ""
        return f"<td class='why'{span}><div>{_whole_words(content)}</div></td>"
    numeric = content[:1].isdigit() or content[:1] in "+-−" or content.startswith("<span style")
    return f"<td class='n'>{content}</td>" if numeric else f"<td>{_whole_words(content)}</td>"


def _whole_words(html: str) -> str:
    """Words the browser would otherwise break at a hyphen, slash or bar (`batch-1`, `img/s`, `|Δlogit|`)
    kept on one line; the text between them still wraps at spaces. Tags are left as they are."""
    import re

    return "".join(part if part.startswith("<") else re.sub(r"[^\s<>]*[-/|][^\s<>]*",
                                                            lambda word: f"<span class='w'>{word[0]}</span>", part)
                   for part in re.split(r"(<[^>]+>)", html))


def _rank(name: str, order: tuple[str, ...]) -> tuple[int, str]:
    prefix = next((i for i, p in enumerate(order) if name == p or name.startswith(f"{p}_")), len(order))
    return prefix, name


def _size(num_bytes: int | None) -> str:
    return "—" if num_bytes is None else f"{num_bytes / 1024:.1f} KB"


def _num(value, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)
