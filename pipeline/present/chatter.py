"""Library chatter goes to a log file, not the terminal.

The dynamo exporter prints "torchvision is not installed" and its step list, onnxsim prints "Checking 0/3",
ORT's quantization tools log their calibration: useful when something breaks, noise when nothing does.
`captured` sends the process's own stdout and stderr (file descriptors 1 and 2, so C++ libraries are caught
too) to `.cache/logs/<name>.log` for the duration of a library call. A failure stays one line naming the
cause (the log holds the library's full story); `pipeline -v ...` (log level DEBUG, log.py) lets everything
through. No warning is filtered: warnings land in the log like everything else.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from pipeline.present.log import verbose

LOG_DIR = Path(".cache") / "logs"


@contextlib.contextmanager
def captured(name: str) -> Iterator[Path | None]:
    if verbose():
        yield None
        return
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{name}.log"
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with open(log, "w") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield log
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
