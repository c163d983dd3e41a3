"""A test that needs a tool this machine lacks is skipped, naming it; where CI requires every tool (.ci/run sets
PIPELINE_TESTS_REQUIRE_TOOLS), it fails instead."""

import os
import subprocess
import sys

from tests.conftest import REPO, REQUIRE_TOOLS

PROBE = '''
from pipeline.runtimes.envs import RuntimeUnavailable

def test_needs_a_tool():
    raise RuntimeUnavailable("qemu-user 10 comes from Debian 12 or 13; this machine is not Debian")
'''


def _run_probe(tmp_path, require: bool) -> subprocess.CompletedProcess:
    probe = REPO / "tests" / f"test_probe_{os.getpid()}.py"  # inside tests/, so the suite's conftest applies
    probe.write_text(PROBE)
    try:
        env = {k: v for k, v in os.environ.items() if k != REQUIRE_TOOLS} | ({REQUIRE_TOOLS: "1"} if require else {})
        return subprocess.run([sys.executable, "-m", "pytest", str(probe), "-q", "-rs", "-p", "no:cacheprovider"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:
        probe.unlink()


def test_a_missing_tool_skips_naming_it_and_fails_where_ci_requires_it(tmp_path):
    skipped = _run_probe(tmp_path, require=False)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    assert "this machine lacks what the test needs: qemu-user 10 comes from Debian" in skipped.stdout
    failed = _run_probe(tmp_path, require=True)
    assert failed.returncode == 1 and "1 failed" in failed.stdout, failed.stdout
