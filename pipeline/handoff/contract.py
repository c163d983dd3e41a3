"""What a release promises a deployment team, per artifact, and how much a new release changes it.

The contract of a bundle is read from its manifest; the model package's from its variants. Each field has a
weight, and the version bump a release needs is the heaviest changed field's:
- major: what a consumer's code depends on: input name, shape and dtype; preprocessing (mean, std, scale, layout,
  colour); output name, shape and dtype; class labels; opset; providers; an artifact removed;
- minor: what it runs but does not code against: variant, accuracy, latency (only when the regression gate's
  interval shows a change), runtime versions; an artifact added;
- patch: the same contract, other bytes.
The same bytes for every artifact is nothing to release: a version names one byte set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.core.errors import PipelineError

LEVELS = ("patch", "minor", "major")
MAJOR_FIELDS = ("inputs", "outputs", "preprocessing", "class_labels", "opset", "providers")
MINOR_FIELDS = ("variant", "accuracy", "latency", "runtime_versions")
SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


def bundle_contract(manifest: dict, archive_sha256: str) -> dict:
    """One bundle's contract, from its manifest, and the digest of the bytes it ships as."""
    pre = manifest["preprocessing"]
    return {
        "inputs": [_tensor(t) for t in manifest["io"]["inputs"]],
        "outputs": [_tensor(t) for t in manifest["io"]["outputs"]],
        "preprocessing": {k: pre.get(k) for k in ("mean", "std", "scale", "layout", "color", "shape", "dtype")},
        "class_labels": list(manifest["class_labels"]),
        "opset": manifest["model"]["opset"],
        "providers": list(manifest["target"]["providers"]),
        "variant": manifest["model"]["variant"],
        "accuracy": manifest["parity"].get("accuracy"),
        "runtime_versions": sorted({manifest["provenance"]["packaged_with"],
                                    *(r["package"] for r in manifest["verified_on"] if r.get("verified"))}),
        "sha256": archive_sha256,
    }


def _tensor(entry: dict) -> dict:
    return {"name": entry["name"], "shape": entry["shape"], "dtype": entry["dtype"]}


@dataclass(frozen=True)
class Change:
    artifact: str
    field: str
    before: object
    after: object
    level: str


def diff(previous: dict[str, dict], current: dict[str, dict], latency_changed: dict[str, str] | None = None
         ) -> list[Change]:
    """Every changed field of every artifact, with its weight. `latency_changed`: artifact -> what the regression
    gate showed (only artifacts whose interval lies wholly beyond its margin)."""
    changes = [Change(a, "artifact", None, "added", "minor") for a in current if a not in previous]
    changes += [Change(a, "artifact", "present", None, "major") for a in previous if a not in current]
    for artifact in sorted(previous.keys() & current.keys()):
        before, after = previous[artifact], current[artifact]
        for field in (*MAJOR_FIELDS, *MINOR_FIELDS, "sha256"):
            if field == "latency":
                continue
            if before.get(field) != after.get(field):
                level = "major" if field in MAJOR_FIELDS else "minor" if field in MINOR_FIELDS else "patch"
                changes.append(Change(artifact, field, before.get(field), after.get(field), level))
    for artifact, shown in (latency_changed or {}).items():
        changes.append(Change(artifact, "latency", None, shown, "minor"))
    return changes


def needed_bump(changes: list[Change]) -> str | None:
    """The smallest bump these changes allow; None when nothing changed (nothing to release)."""
    if not changes:
        return None
    return max((c.level for c in changes), key=LEVELS.index)


def parse(version: str) -> tuple[int, int, int]:
    match = SEMVER.match(version)
    if match is None:
        raise PipelineError(f"version {version!r} is not semantic (vMAJOR.MINOR.PATCH, e.g. v1.2.0)")
    return tuple(int(g) for g in match.groups())


def bumped(previous: str | None, level: str) -> str:
    """The next version after `previous` at `level` (the first release is v0.1.0)."""
    if previous is None:
        return "v0.1.0"
    major, minor, patch = parse(previous)
    return {"major": f"v{major + 1}.0.0", "minor": f"v{major}.{minor + 1}.0", "patch": f"v{major}.{minor}.{patch + 1}"
            }[level]


def bump_of(previous: str, version: str) -> str:
    """Which bump `version` is over `previous`; PipelineError when it is not one step above it."""
    old, new = parse(previous), parse(version)
    for level, candidate in (("major", bumped(previous, "major")), ("minor", bumped(previous, "minor")),
                             ("patch", bumped(previous, "patch"))):
        if version == candidate:
            return level
    raise PipelineError(f"version {version} does not follow {previous} (next: {bumped(previous, 'patch')}, "
                        f"{bumped(previous, 'minor')} or {bumped(previous, 'major')})" if new > old else
                        f"version {version} is not above the previous release {previous}")


def check_claim(changes: list[Change], previous: str | None, version: str) -> str:
    """The version a release claims, refused (PipelineError, exit 2) when its bump is smaller than the diff's,
    naming the field that needs more."""
    parse(version)
    if previous is None:
        return "first"
    needed = needed_bump(changes)
    if needed is None:
        raise PipelineError(f"nothing to release: every artifact has the same bytes as {previous}")
    claimed = bump_of(previous, version)
    if LEVELS.index(claimed) < LEVELS.index(needed):
        field = next(c for c in changes if c.level == needed)
        raise PipelineError(f"{version} is a {claimed} release, but {field.artifact}'s {field.field} changed "
                            f"({_short(field.before)} → {_short(field.after)}), which needs a {needed} release: "
                            f"use {bumped(previous, needed)}")
    return claimed


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"
