"""One module per pipeline stage, each with one public `run(cfg, inputs..., out_dir) -> StageResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StageResult:
    """What a stage wrote and what it measured; the CLI turns it into metrics files and a table."""

    outputs: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
