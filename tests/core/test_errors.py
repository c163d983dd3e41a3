"""Each kind of failure has its own type, word and exit code, and the troubleshooting page lists every one."""


import pytest

from pipeline.core.errors import FAILURES, GateFailure, PipelineError
from tests.conftest import REPO

EXIT_CODES = (REPO / "docs" / "troubleshooting.md").read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("kind", FAILURES, ids=lambda k: k.__name__)
def test_the_troubleshooting_page_lists_every_kind_with_its_word_and_exit_code(kind):
    rows = [line for line in EXIT_CODES.splitlines() if f"`{kind.__name__}`" in line]
    assert rows, f"docs/troubleshooting.md's exit codes do not list {kind.__name__}"
    assert rows[0].startswith(f"| {kind.exit_code} |") and f"`{kind.label}: " in rows[0], rows[0]


def test_bad_input_exits_2_and_a_failed_gate_1_each_kind_with_a_word_of_its_own():
    assert {k.exit_code for k in FAILURES if issubclass(k, PipelineError)} == {2}
    gates = [k for k in FAILURES if issubclass(k, GateFailure)]
    assert {k.exit_code for k in gates} == {1} and len({k.label for k in gates}) == len(gates)
