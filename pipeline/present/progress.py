"""Rich progress bars and tables, in one style for every stage."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Wide enough for the result tables when output goes to a CI log rather than a terminal.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )
