"""The source commit a run came from: an observation (metrics/timings/), never part of an artifact, so a
fresh clone of any commit rebuilds the same bytes (artifacts carry content digests: pipeline.model.lineage)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def source_commit(repo: Path = Path(".")) -> str:
    """HEAD's commit, with '-dirty' when tracked files differ from it; 'unknown' outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
