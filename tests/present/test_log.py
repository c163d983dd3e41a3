"""What the pipeline says has levels: one line per message, prefixed with its level; -q and -v set them for the
command and the stage processes it starts."""

import subprocess
import sys

from pipeline.present import log as logs
from tests.conftest import REPO


def test_a_warning_is_one_line_prefixed_with_its_level(capsys, monkeypatch):
    monkeypatch.delenv(logs.LEVEL_VARIABLE, raising=False)
    logger = logs.get("pipeline.runtimes.cells")
    logger.warning("cpu_x86 not verified on onnxruntime-java: Maven only")
    logger.info("packaged cpu_x86")
    logger.debug("library detail")
    assert capsys.readouterr().err.splitlines() == ["warning: cpu_x86 not verified on onnxruntime-java: Maven only",
                                                    "packaged cpu_x86"]


def test_quiet_and_verbose_set_the_level_for_the_command_and_what_it_starts():
    probe = ("import os, sys\nfrom pipeline.cli import app\nfrom pipeline.present import log\n"
             "try:\n    app(sys.argv[1:] + ['params', '--check'], prog_name='pipeline')\nexcept SystemExit:\n    pass\n"
             "print('LEVEL', os.environ.get(log.LEVEL_VARIABLE), log.verbose())\n")
    for flag, expected in (("-q", "LEVEL WARNING False"), ("-v", "LEVEL DEBUG True")):
        out = subprocess.run([sys.executable, "-c", probe, flag], capture_output=True, text=True, cwd=REPO).stdout
        assert expected in out, out
