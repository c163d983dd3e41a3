"""What the pipeline says to a person, with levels: Python's logging, one line per message on stderr, prefixed
with its level ("warning: cpu_x86 not verified on onnxruntime-java: …"). Results stay rich tables (tables.py);
library chatter stays in .cache/logs/ (chatter.py) unless the level is DEBUG.

`pipeline -q` shows warnings and errors only, `pipeline -v` everything, library output included (the level
travels to the stage processes DVC or a runner starts through PIPELINE_LOG_LEVEL).
"""

from __future__ import annotations

import logging
import os
import sys

ROOT = "pipeline"
LEVEL_VARIABLE = "PIPELINE_LOG_LEVEL"


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a message is emitted (a test's capture, a redirected stream)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


class _Lowercase(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return prefix + record.getMessage()


def _configure() -> logging.Logger:
    logger = logging.getLogger(ROOT)
    if not logger.handlers:
        handler = _Stderr()
        handler.setFormatter(_Lowercase())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(os.environ.get(LEVEL_VARIABLE, "INFO"))
    return logger


def get(name: str) -> logging.Logger:
    """The logger of a pipeline module (`log = get(__name__)`)."""
    _configure()
    return logging.getLogger(name)


def set_level(level: str) -> None:
    """This process's level and that of every stage process it starts."""
    os.environ[LEVEL_VARIABLE] = level
    _configure()


def verbose() -> bool:
    """DEBUG: library output reaches the terminal too."""
    return _configure().isEnabledFor(logging.DEBUG)
