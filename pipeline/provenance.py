"""Where an artifact came from: source commit, config hash, dataset digest."""

from __future__ import annotations

import hashlib
import json
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


def config_hash(*subtrees: dict) -> str:
    """sha256 of the config subtrees that shaped an artifact, canonically JSON-encoded."""
    return hashlib.sha256(json.dumps(subtrees, sort_keys=True).encode()).hexdigest()
