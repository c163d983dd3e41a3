"""The README is a short front door and docs/ holds the depth: the README stays under its size limit, links to
every page in docs/, and no relative link in the README or docs/ points at a file that is not there."""

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
MAX_README_CHARS = 8000
# `[text](target)` and `![alt](target)`; the target ends at whitespace or `)` (an optional "title" may follow).
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = ("http://", "https://", "mailto:")


def relative_links(markdown: Path) -> list[str]:
    """Every link target in the file that names a path here: no URL, no pure #anchor, #fragment removed."""
    text = re.sub(r"```.*?```", "", markdown.read_text(), flags=re.DOTALL)  # code blocks hold no links
    targets = []
    for target in LINK.findall(text):
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return [t for t in targets if t]


def test_the_readme_is_at_most_8000_characters():
    length = len(README.read_text())
    assert length <= MAX_README_CHARS, f"README.md has {length} characters; move depth into docs/"


@pytest.mark.parametrize("markdown", [README, *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(markdown: Path):
    broken = [t for t in relative_links(markdown) if not (markdown.parent / t).exists()]
    assert not broken, f"{markdown.relative_to(REPO)} links to missing paths: {broken}"


def test_the_readme_links_every_page_in_docs():
    assert DOCS, "docs/ holds no .md page"
    linked = {(README.parent / t).resolve() for t in relative_links(README)}
    missing = [str(page.relative_to(REPO)) for page in DOCS if page.resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"


def _taken_by_tests() -> set[str]:
    """Every string a test passes to documented() or documented_shell() (read from the sources, not run)."""
    import ast

    taken = set()
    for source in (REPO / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("documented", "documented_shell"):
                taken.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return taken


def test_every_documented_command_is_run_by_a_test_or_marked_illustrative():
    from tests.documented import commands

    shown = commands()
    assert len(shown) >= 20  # the parser still finds the pages' commands
    untested = [f"{page.relative_to(REPO)}: {command}" for command, page in shown.items()
                if command not in _taken_by_tests()]
    assert not untested, "documented commands no test runs (run one with tests.documented.documented(...), or mark " \
                         "its block <!-- illustrative: why -->):\n" + "\n".join(untested)
    assert all(len(why) > 0 for why in commands(illustrative=True))


def test_the_handoff_pages_table_of_runtime_cells_is_the_declared_cells():
    """No hand-kept list of cells drifts from pipeline/runtimes/cells.py's declarations."""
    from pipeline.runtimes import cells

    page = (REPO / "docs" / "handoff.md").read_text().split("| runtime cell | provider | how |", 1)[1]
    rows = [line.split("|")[1].strip().strip("`") for line in page.split("\n\n", 1)[0].splitlines()[2:]]
    assert rows == list(cells.RUNTIMES)


def test_the_configuration_pages_presets_name_the_targets_that_list_them():
    """The quantize presets' last column is each target's `candidates`, not a hand-kept claim."""
    from pipeline.core.config import compose

    composed = compose([])
    page = (REPO / "docs" / "configuration.md").read_text()
    table = page.split("| preset | meant for |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    for row in table:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        preset, listed = cells[0].strip("`"), cells[-1]
        targets = sorted(name for name, target in composed.target.items() if preset in target.candidates)
        assert listed == (", ".join(targets) or "none"), row
    assert {row.split("`")[1] for row in table} == set(composed.quantize), table


def test_the_readmes_stages_and_targets_are_the_declared_ones():
    """The README's table of stages is pipeline/stages/'s declarations in order, and its list of bundles is
    conf/target/'s files: no hand-kept list drifts."""
    from pipeline.core.config import compose
    from pipeline.core.stage import all_stages

    readme = (REPO / "README.md").read_text()
    table = readme.split("| stage | what it does | writes |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    listed = [row.split("`")[1].split("@")[0] for row in table]
    assert listed == [stage.name for stage in all_stages()]
    bullets = readme.split("Bundles, one per file in", 1)[1].split("\n\n", 1)[1].split("\n\n", 1)[0]
    targets = [line.split("`")[1] for line in bullets.splitlines() if line.startswith("- `")]
    assert sorted(targets) == sorted(compose([]).target)


def test_the_configuration_pages_groups_table_lists_the_declared_presets_and_targets():
    from pipeline.core.config import compose

    composed = compose([])
    page = (REPO / "docs" / "configuration.md").read_text()
    for group, declared in (("quantize", composed.quantize), ("target", composed.target)):
        row = next(line for line in page.splitlines() if line.startswith(f"| `{group}` | a list: "))
        assert row.split("|")[2].split("`")[1::2] == list(declared), row
