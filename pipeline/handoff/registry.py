"""The model registry: GTO's git tags over the artifacts dvc.yaml declares, and DVC's remote that holds the bytes.

A version is `gto register NAME REV --version vX.Y.Z`: an annotated tag `NAME@vX.Y.Z` on the release commit,
whose message carries the artifact's sha256 (the digest a deployment team checks against reaches them through
the registry, not through the store that serves the bytes). A stage is `gto assign NAME --version vX.Y.Z --stage
S` (a tag `NAME#S#N`); rolling back is assigning an earlier version. Tags are never moved, so one version names
one byte set.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.core.errors import PipelineError
from pipeline.handoff.contract import SEMVER, parse

# Committed in each release commit: release/release.json, the contract the next release is diffed against, and
# release/<artifact>.sha256 (sha256sum's format) that a team fetches from git (`dvc get REPO release/... --rev`),
# not from the store, and gives to the bundle's `verify.py --sha256`.
RELEASE_DIR = "release"
RELEASE_FILE = f"{RELEASE_DIR}/release.json"
STAGES = ("dev", "staging", "prod")


def tool(name: str) -> str:
    """A console script of this environment (gto, dvc), beside the interpreter."""
    return str(Path(sys.executable).parent / name)


def run(argv: list[str], repo: Path, what: str) -> str:
    done = subprocess.run(argv, cwd=repo, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()
        errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith(("ERROR", "❌"))]
        raise PipelineError(f"{what} failed: {(errors or lines[-1:])[0][:300]}")
    return done.stdout


def declared_artifacts(repo: Path) -> dict[str, dict]:
    """dvc.yaml's `artifacts:` (name -> path, type, meta)."""
    dvc_yaml = repo / "dvc.yaml"
    if not dvc_yaml.is_file():
        raise PipelineError(f"no dvc.yaml in {repo}: run from the repository root")
    declared = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("artifacts") or {}
    if not declared:
        raise PipelineError("dvc.yaml declares no artifacts: `pipeline dvc --write` declares the bundles and package")
    return declared


def versions(repo: Path, names: list[str]) -> list[str]:
    """Every version registered for any of `names`, oldest first."""
    tags = run(["git", "tag", "--list"], repo, "git tag").split()
    found = {t.split("@", 1)[1] for t in tags if "@" in t and t.split("@", 1)[0] in names
             and SEMVER.match(t.split("@", 1)[1])}
    return sorted(found, key=parse)


def release_record(repo: Path, name: str, version: str) -> dict:
    """The release.json committed with `name@version`."""
    text = run(["git", "show", f"{name}@{version}:{RELEASE_FILE}"], repo, f"reading {RELEASE_FILE} of {version}")
    return json.loads(text)


def commit(repo: Path, files: list[str], message: str) -> None:
    run(["git", "add", "--", *(f for f in files if (repo / f).exists())], repo, "git add")  # folders: new files too
    staged = subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=repo).returncode != 0
    if staged:
        run(["git", "commit", "-q", "-m", message], repo, "git commit")


def register(repo: Path, name: str, version: str, message: str) -> None:
    run([tool("gto"), "register", name, "HEAD", "--version", version, "--message", message], repo,
        f"gto register {name} {version}")


def assign(repo: Path, name: str, version: str, stage: str) -> None:
    if stage not in STAGES:
        raise PipelineError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    run([tool("gto"), "assign", name, "--version", version, "--stage", stage, "--force"], repo,
        f"gto assign {name} {version} {stage}")


def fetch(repo: Path, path: str, version_tag: str, dest: Path) -> Path:
    """An artifact's file as it was at a release tag, from the local DVC cache or the remote."""
    run([tool("dvc"), "get", ".", path, "--rev", version_tag, "-o", str(dest), "--force"], repo,
        f"fetching {path} at {version_tag}")
    return dest


def push(repo: Path, paths: list[str]) -> None:
    """Every object the release needs onto the default DVC remote, then the proof that each arrived: `dvc push`
    only warns (exit 0) about an object missing from the local cache, so the remote is asked again."""
    run([tool("dvc"), "push", *paths], repo, "dvc push")
    status = json.loads(run([tool("dvc"), "data", "status", "--not-in-remote", "--json"], repo,
                            "dvc data status") or "{}")
    missing = sorted(p for p in status.get("not_in_remote", []) if p in paths or any(p.startswith(f"{q}/")
                                                                                      for q in paths))
    if missing:
        raise PipelineError(f"the remote lacks what the release needs: {', '.join(missing)} (its object is in "
                            "neither the local cache nor the remote: `dvc repro` or `dvc fetch` it, then release "
                            "again)")


def after_earlier_tags() -> None:
    """Wait for the next second: git tags are dated to the second, and GTO and DVC take a stage's newest
    assignment by that date (ties by name, so `#prod#10` before `#prod#9`): an assignment made in the same
    second as the one before it could lose to it."""
    import time

    time.sleep(1.05 - time.time() % 1)


def has_remote(repo: Path) -> bool:
    return bool(run([tool("dvc"), "remote", "list"], repo, "dvc remote list").strip())
