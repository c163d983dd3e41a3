"""Terminal tables for stage results."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.present.progress import console

_errors = Console(stderr=True)


def human_size(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return str(num_bytes)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def print_outputs(stage: str, outputs: dict[str, Path], metrics: dict) -> None:
    if outputs:
        _outputs_table(stage, outputs)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}
    if scalars:
        console.print("  ".join(f"[bold]{k}[/]={_fmt(v)}" for k, v in scalars.items()))


def print_notices(stage: str, notices: list[str]) -> None:
    """Lines a user must see (a rejected variant, one not judged), on stderr, unwrapped: each is one line
    a user can copy a command from."""
    for line in notices:
        _errors.print(f"{stage}: {line}", markup=False, highlight=False, soft_wrap=True)


def _outputs_table(stage: str, outputs: dict[str, Path]) -> None:
    table = Table(title=f"{stage}: outputs", title_justify="left")
    table.add_column("output")
    table.add_column("path")
    table.add_column("size", justify="right")
    for name, path in outputs.items():
        table.add_row(name, str(path), human_size(_size(Path(path))))
    console.print(table)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def variant_table(title: str, rows: dict[str, dict]) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("variant", "size", "nodes", "agreement", "max |Δlogit|", "accuracy"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, row in rows.items():
        table.add_row(
            name, human_size(row["bytes"]), str(row["nodes"]), f"{row['agreement']:.2%}",
            f"{row['max_abs_logit']:.2e}", f"{row['accuracy']:.2%}",
        )
    console.print(table)


def _node(row: dict) -> str:
    """`node_Conv_51 [features.1]`: the ONNX node and, where known, the PyTorch module it came from."""
    return f"{row['node']} [{row['module']}]" if row.get("module") else row["node"]


def parity_table(report: dict) -> None:
    """One row per variant, ✓/✗ per verdict, then where each failing variant diverges."""
    table = Table(title=f"parity vs PyTorch on {report['samples']} test images "
                        f"(PyTorch accuracy {report['torch_accuracy']:.2%})", title_justify="left")
    for column in ("variant", "kind", "accuracy", "Δacc (pt)", "agreement", "max |Δlogit|", "cos min", "gates"):
        table.add_column(column, justify="left" if column in ("variant", "kind", "gates") else "right")
    for name, row in report["variants"].items():
        failed = [g for g, v in row["gates"].items() if not v["passed"]]
        verdict = "[green]✓[/]" if not failed else "[red]✗ " + ", ".join(failed) + "[/]"
        table.add_row(name, row["kind"], f"{row['accuracy']:.2%}", f"{row['accuracy_delta_pt']:+.2f}",
                      f"{row['agreement']:.2%}", f"{row['max_abs_logit']:.2e}", f"{row['cosine_min']:.4f}", verdict)
    console.print(table)
    for name, row in report["variants"].items():
        divergence = row.get("divergence")
        if divergence:
            first = divergence["first_divergent"]
            where = (f"{_node(first)} ({first['op']}, rel error {first['rel_error']:.3g})" if first else "none")
            top = ", ".join(f"{_node(r)} {r['rel_error']:.3g}" for r in divergence["top"])
            console.print(f"[bold]{name}[/]: first divergent node: {where}; top by rel error: {top}")
    for message in report["failures"]:
        console.print(f"[red]✗ {message}[/]")


def timing_table(rows: list[tuple[str, float, float, dict]]) -> None:
    """Stage wall times, in pipeline order, with the phases a stage reports."""
    import datetime

    table = Table(title="pipeline cost: wall time of each stage's last run", title_justify="left")
    for column in ("stage", "seconds", "of which", "last run"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for stage, seconds, mtime, phases in rows:
        table.add_row(stage, f"{seconds:.1f}", ", ".join(f"{name} {s:.1f}" for name, s in phases.items()),
                      datetime.datetime.fromtimestamp(mtime).strftime("%H:%M:%S"))
    table.add_row("[bold]total[/]", f"[bold]{sum(row[1] for row in rows):.1f}[/]", "", "")
    console.print(table)


def prediction_table(results: list) -> None:
    """One row per input of `predict` (deploy/infer.py's Result): its label and probability, "not a digit?"
    with the reasons, or its error. Paths fold rather than being cut short."""
    failed = sum(r.error is not None for r in results)
    flagged = sum(bool(r.not_a_digit) for r in results)
    table = Table(title=f"{len(results)} inputs: {len(results) - failed} classified ({flagged} flagged not a "
                        f"digit?), {failed} could not be", title_justify="left")
    table.add_column("input", overflow="fold")
    table.add_column("label")
    table.add_column("probability", justify="right")
    table.add_column("note", overflow="fold")
    for r in results:  # names and messages are text, never markup (a file may be called "[bold].png")
        if r.error is not None:
            table.add_row(Text(r.name), "—", "—", Text(f"error: {r.error.removeprefix(f'{r.name}: ')}", "red"))
        elif r.not_a_digit:
            table.add_row(Text(r.name), Text(f"{r.label}?", "yellow"), f"{r.probability:.2%}",
                          Text(f"not a digit? {'; '.join(r.not_a_digit)}", "yellow"))
        else:
            table.add_row(Text(r.name), Text(r.label), f"{r.probability:.2%}", "")
    Console().print(table)


def ratio_parts(row: dict, key: str) -> tuple[str, str] | None:
    """A metrics row's ratio (`key`) and its interval (`key`_ci) as text, for a terminal table or the report;
    None where the row has no such ratio."""
    if key not in row:
        return None
    low, high = row[f"{key}_ci"]
    return f"{row[key]:.2f}×", f"[{low:.2f}, {high:.2f}]"


def _ratio(row: dict, key: str) -> str:
    parts = ratio_parts(row, key)
    return "—" if parts is None else " ".join(parts)


def peak_lines(peaks: dict) -> str:
    """Every measured peak, fp32 first (metrics files keep their keys sorted)."""
    order = [p for p in ("fp32", "int8", "bf16") if p in peaks] + sorted(set(peaks) - {"fp32", "int8", "bf16"})
    return "; ".join(peak_line(precision, peaks[precision]) for precision in order)


def peak_line(precision: str, peak: dict) -> str:
    """`fp32 220 GFLOP/s, best round 224 (onnxruntime MatMul (MLAS SGEMM), 1536×1536)`: a measured GEMM peak (the
    median over rounds of each round's best), its best round, and what gave it."""
    return (f"{precision} {peak['rate']:,.0f} {peak['unit']}, best round {peak['best']:,.0f} ({peak['backend']}, "
            f"{peak['size']}×{peak['size']})")


def share(row: dict) -> str:
    """A runner's share of its precision's peak with its interval, or a dash where no such peak was measured."""
    if row.get("share_of_peak") is None:
        return "—"
    low, high = row["share_of_peak_ci"]
    return f"{row['share_of_peak']:.0%} [{low:.0%}, {high:.0%}] of {row['precision']}"


def bench_table(m: dict) -> None:
    peaks = peak_lines(m["peaks"])
    table = Table(title=f"benchmark: {m['threads']} threads, batch-1 latency and batch-{m['batch']} throughput, "
                        f"ratios with 95 % intervals ({m['flops_per_image'] / 1e6:.2f} M operations/image; measured "
                        f"GEMM peaks: {peaks})", title_justify="left")
    columns = ("runner", "runtime", "p50 ms", "img/s", "b1 vs torch", "img/s vs torch", "img/s vs compile",
               "img/s vs shipped", "share of peak", "peak RSS", "accuracy")
    for column in columns:
        table.add_column(column, justify="left" if column in ("runner", "runtime") else "right")
    for name, r in m["variants"].items():
        rss = f"{r['peak_rss_mib']:.0f} MiB" if r.get("peak_rss_mib") else "—"
        accuracy = f"{r['accuracy']:.2%}" if r.get("accuracy") is not None else "—"
        runtime = r["runtime"] + (f" ({r['environment']}, a worker process)" if r.get("environment") else "")
        table.add_row(name, runtime, f"{r['latency_ms']['p50']:.3f}", f"{r['throughput']:,.0f}",
                      _ratio(r, "speedup_vs_torch"), _ratio(r, "throughput_vs_torch"),
                      _ratio(r, "throughput_vs_compile"), _ratio(r, "throughput_vs_shipped"), share(r), rss, accuracy)
    console.print(table)
    for runtime, ratio in m.get("int8_vs_fp32", {}).items():
        console.print(f"INT8/fp32 throughput on {runtime}: {ratio['ratio']:.2f}× [{ratio['low']:.2f}, "
                      f"{ratio['high']:.2f}] ({'INT8 pays' if ratio['int8_pays'] else 'INT8 does not pay'})")
    verdict = m["int8_targets"]
    if verdict.get("measured"):
        parts = [f"{k} {v['value']:.3g} {'✓' if v['met'] else '✗'}" for k, v in verdict.items()
                 if isinstance(v, dict) and "met" in v]
        console.print(f"INT8 artifact {verdict['artifact']} vs targets (throughput ≥ 1.3× fp32, accuracy drop "
                      f"≤ 0.2 pt, size ≤ 30 %): " + ", ".join(parts))
    for row in m.get("crossover", []):
        (t_low, t_high), (l_low, l_high) = row["throughput_ratio_ci"], row["latency_ratio_ci"]
        console.print(f"  crossover {row['model']:>24} {row['parameters']:>9,} params: INT8/fp32 throughput "
                      f"{row['throughput_ratio']:.2f}× [{t_low:.2f}, {t_high:.2f}], batch-1 speed-up "
                      f"{row['latency_ratio']:.2f}× [{l_low:.2f}, {l_high:.2f}], size {row['size_ratio']:.0%}")


def contract_table(changes: list, previous: str | None, version: str) -> None:
    """A release's contract diff against the previous release: every changed field and its weight."""
    table = Table(title=f"{version}: contract diff against {previous or 'nothing (first release)'}")
    for column in ("artifact", "field", "previous", "new", "bump"):
        table.add_column(column, overflow="fold")
    for change in changes:
        table.add_row(change.artifact, change.field, _brief(change.before), _brief(change.after), change.level)
    if not changes:
        table.add_row("—", "—", "—", "—", "first" if previous is None else "none")
    console.print(table)


def _brief(value) -> str:
    text = "—" if value is None else str(value)
    return text if len(text) <= 48 else text[:45] + "…"
