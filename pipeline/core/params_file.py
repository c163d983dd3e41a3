"""params.yaml: conf/ composed, plus the overrides a user chose, kept until reset.

The three documented ways to change a parameter must survive `make repro`:
- editing conf/: make recomposes params.yaml only when a conf/ file is newer than it;
- `pipeline params k=v`: the overrides are recorded on params.yaml's first line and re-applied whenever it is
  recomposed (a later conf/ edit keeps them); `pipeline params --reset` drops them;
- `dvc exp run -S k=v`: DVC writes params.yaml itself, newer than conf/, so make leaves it alone.
`pipeline params --check` names every key where params.yaml differs from conf/ and says which of these
explains it. Without overrides the file is exactly what DVC's own Hydra composition writes.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pipeline.core.config import compose, to_plain, to_yaml, validate

HEADER = "# pipeline params overrides: "


def recorded(path: Path) -> list[str]:
    """The overrides `pipeline params k=v` recorded in `path` (none for a file DVC or conf/ alone wrote)."""
    if not path.is_file():
        return []
    first = path.read_text().split("\n", 1)[0]
    return shlex.split(first.removeprefix(HEADER)) if first.startswith(HEADER) else []


def merge(old: list[str], new: list[str]) -> list[str]:
    """`new` overrides replace `old` ones on the same key; the rest are kept, in order."""
    keys = {item.split("=", 1)[0] for item in new}
    return [item for item in old if item.split("=", 1)[0] not in keys] + list(new)


def render(overrides: list[str]) -> str:
    composed = compose(list(overrides))
    validate(to_plain(composed))
    header = f"{HEADER}{shlex.join(overrides)}\n" if overrides else ""
    return header + to_yaml(composed)


def differences(actual: dict, wanted: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, value in actual, value in wanted) for every leaf that differs."""
    found = []
    for key in sorted(set(actual) | set(wanted), key=str):
        a, w = actual.get(key, "<absent>"), wanted.get(key, "<absent>")
        dotted = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(w, dict):
            found += differences(a, w, f"{dotted}.")
        elif a != w:
            found.append((dotted, a, w))
    return found


def explain(path: Path) -> list[str]:
    """One line per key where `path` differs from conf/, saying where the difference comes from."""
    import yaml

    actual = yaml.safe_load(path.read_text()) or {}
    kept = {item.split("=", 1)[0] for item in recorded(path)}
    lines = []
    for key, value, conf_value in differences(actual, to_plain(compose([]))):
        origin = ("an override `pipeline params` keeps (recorded on the file's first line)" if key in kept else
                  "not from conf/: `dvc exp run -S`, a hand edit, or conf/ changed since; keep it with "
                  f"`pipeline params {key}={value}`")
        lines.append(f"{key} = {value!r} (conf/ has {conf_value!r}): {origin}")
    return lines
