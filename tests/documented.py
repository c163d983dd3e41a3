"""The commands README.md and docs/ show, so that tests run them as written and none can go stale.

Every line of a ```bash block is a command (a trailing `\\` joins the next line; `# ...` comments are dropped).
A block right after an `<!-- illustrative: why -->` comment is exempt, with its reason: one that takes the
whole pipeline, another machine, or the network. Every other command must be run by a test, which gets it
from here with `documented("...")`, so a command edited in the docs fails that test until the test runs the
new text; tests/test_docs.py holds that every documented command is taken by some test.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_BLOCK = re.compile(r"(<!--\s*illustrative:[^>]*-->\s*)?```bash[^\n]*\n(.*?)```", re.DOTALL)


def _commands(body: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", "", body)
    lines = (re.sub(r"(^|\s)#.*$", "", line).strip() for line in joined.splitlines())
    return [line for line in lines if line]


def commands(*, illustrative: bool = False) -> dict[str, Path]:
    """{command: the page that shows it}: the ones tests must run, or (illustrative=True) the exempt ones."""
    found = {}
    for page in PAGES:
        for match in _BLOCK.finditer(page.read_text()):
            if bool(match.group(1)) == illustrative:
                found.update(dict.fromkeys(_commands(match.group(2)), page))
    return found


def documented(command: str) -> list[str]:
    """A command as the docs show it, split into arguments: the test fails when no page shows it any more."""
    shown = commands()
    assert command in shown, f"no page in README.md or docs/ shows `{command}` any more (update the test)"
    return shlex.split(command)


def documented_shell(command: str) -> list[str]:
    """A documented command that needs a shell (`&&`, `source`, `$VAR`), as `bash -c` runs it."""
    documented(command)
    return ["bash", "-c", command]
