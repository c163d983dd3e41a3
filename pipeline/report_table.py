"""Terminal tables for stage results."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from pipeline.progress import console


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
    table = Table(title=f"{stage}: outputs", title_justify="left")
    table.add_column("output")
    table.add_column("path")
    table.add_column("size", justify="right")
    for name, path in outputs.items():
        table.add_row(name, str(path), human_size(_size(Path(path))))
    console.print(table)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}
    if scalars:
        console.print("  ".join(f"[bold]{k}[/]={_fmt(v)}" for k, v in scalars.items()))


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
