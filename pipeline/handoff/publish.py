"""`pipeline release` and `pipeline promote`: versions a deployment team can ask for, promote and roll back.

release VERSION [--stage S]: the contract of every artifact dvc.yaml declares (contract.py), diffed against the
previous release's (its committed release.json); a version smaller than the diff needs is refused (exit 2, naming
the field). Then the regression gate (regression.py) for every bundle this machine's runtime runs: exit 1 unless
--accept-regression "<reason>", which the release records. Then every object the release needs is pushed to the
DVC remote and checked there, release.json and dvc.yaml (its artifacts' meta) are committed, each artifact is
registered with GTO at that commit with its sha256 in the tag's message, and the stage is assigned.
promote VERSION --stage S: assign a released version to a stage (rolling back is promoting an earlier one).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pipeline.core.errors import PipelineError, RegressionGateFailure
from pipeline.core.io import sha256_file, write_json, write_text
from pipeline.deploy.contents import safe_extract
from pipeline.handoff import contract, registry, regression
from pipeline.present.tables import contract_table


def release(repo: Path, version: str, stage: str | None, data_dir: Path, *, accept_regression: str | None = None,
            settings: regression.GateSettings | None = None, push: bool = True) -> dict:
    settings = settings or regression.GateSettings()
    contract.parse(version)
    if stage is not None and stage not in registry.STAGES:
        raise PipelineError(f"unknown stage {stage!r} (stages: {', '.join(registry.STAGES)})")
    declared = registry.declared_artifacts(repo)
    history = registry.versions(repo, list(declared))
    if version in history:
        raise PipelineError(f"{version} is already released: a version names one byte set (next: "
                            f"{contract.bumped(history[-1], 'patch')})")
    previous = history[-1] if history else None
    current = {name: artifact_contract(repo, a) for name, a in declared.items()}
    before = _previous_contracts(repo, declared, previous)
    gate = _regression(repo, declared, previous, data_dir, settings) if previous else {}
    shown = {name: f"{check}: {r['checks'][check]['shows_change']}" for name, r in gate.items()
             for check in r["checks"] if r["checks"][check].get("shows_change")}
    changes = contract.diff(before, current, shown) if previous else []
    contract_table(changes, previous, version)
    bump = contract.check_claim(changes, previous, version)
    failed = {name: regression.failure_line(r, settings) for name, r in gate.items() if r["failed"]}
    if failed and not accept_regression:
        raise RegressionGateFailure("; ".join(f"{n}: {line}" for n, line in failed.items()))
    if push:
        if not registry.has_remote(repo):
            raise PipelineError("no DVC remote to push the release to: `dvc remote add -d NAME URL` (docs/handoff.md)"
                                ", or --no-push for a release that stays on this machine")
        registry.push(repo, [a["path"] for a in declared.values()])
    record = {"version": version, "previous": previous, "bump": bump, "artifacts": current,
              "changes": [c.__dict__ for c in changes], "regression": gate,
              "accepted_regression": accept_regression if failed else None, "pushed": push}
    write_json(repo / registry.RELEASE_FILE, record)
    for name, facts in current.items():
        archive = Path(declared[name]["path"]).name
        write_text(repo / registry.RELEASE_DIR / f"{name}.sha256", f"{facts['sha256']}  {archive}\n")
    registry.commit(repo, [registry.RELEASE_DIR, "dvc.yaml", "dvc.lock"], f"release {version}")
    for name, facts in current.items():
        registry.register(repo, name, version, f"{name} {version}: sha256 {facts['sha256']} ({declared[name]['path']})")
    if stage is not None:
        registry.after_earlier_tags()
        for name in current:
            registry.assign(repo, name, version, stage)
    return record


def promote(repo: Path, version: str, stage: str) -> list[str]:
    """Assign `stage` to the released `version` of every artifact it registered."""
    declared = registry.declared_artifacts(repo)
    released = [n for n in declared if version in registry.versions(repo, [n])]
    if not released:
        known = ", ".join(registry.versions(repo, list(declared))) or "none"
        raise PipelineError(f"{version} is not released (released: {known})")
    registry.after_earlier_tags()
    for name in released:
        registry.assign(repo, name, version, stage)
    return released


def artifact_contract(repo: Path, artifact: dict) -> dict:
    """A declared artifact's contract: a bundle's from its manifest, the model package's from its variants."""
    path = repo / artifact["path"]
    if not path.exists():
        raise PipelineError(f"{artifact['path']} is not built: `make repro` first")
    if path.is_file():  # a bundle's .tar.gz; its folder beside it holds the same files
        manifest = json.loads((path.parent / path.name.removesuffix(".tar.gz") / "manifest.json").read_text())
        return contract.bundle_contract(manifest, sha256_file(path))
    manifest = json.loads((path / "manifest.json").read_text())
    variants = next(iter(manifest["components"].values()))["variants"]
    return {"providers": [v["ep"] for v in variants.values()], "variant": sorted(variants),
            "sha256": _tree_digest(path)}


def _tree_digest(folder: Path) -> str:
    import hashlib

    lines = "".join(f"{p.relative_to(folder).as_posix()}\t{sha256_file(p)}\n"
                    for p in sorted(folder.rglob("*")) if p.is_file())
    return hashlib.sha256(lines.encode()).hexdigest()


def _previous_contracts(repo: Path, declared: dict, previous: str | None) -> dict:
    if previous is None:
        return {}
    for name in declared:
        if previous in registry.versions(repo, [name]):
            return registry.release_record(repo, name, previous)["artifacts"]
    return {}


def _regression(repo: Path, declared: dict, previous: str, data_dir: Path,
                settings: regression.GateSettings) -> dict:
    """The gate for every bundle whose first provider this onnxruntime has and whose batch is free."""
    import onnxruntime as ort

    results = {}
    for name, artifact in declared.items():
        folder = repo / artifact["path"].removesuffix(".tar.gz")
        if not artifact["path"].endswith(".tar.gz") or previous not in registry.versions(repo, [name]):
            continue
        target = json.loads((folder / "manifest.json").read_text())["target"]
        if target.get("fixed_batch") or target["providers"][0] not in ort.get_available_providers() \
                or target.get("format") != "onnx":
            continue
        with tempfile.TemporaryDirectory(prefix="release-") as scratch:
            archive = registry.fetch(repo, artifact["path"], f"{name}@{previous}", Path(scratch) / "previous.tar.gz")
            old = safe_extract(archive, Path(scratch) / "previous")
            results[name] = regression.compare(folder, old, data_dir, settings)
    return results
