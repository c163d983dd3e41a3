"""Time candidates inside another runtime's environment (the OpenVINO EP's venv), by file path with the repo
on PYTHONPATH: the same measurement (selection.measure, timing.interleaved_rounds) as in this environment.

    python pipeline/runtimes/remote_timing.py < job.json   ->   {label: [per-round median ms]} on stdout
"""

import json
import sys
from pathlib import Path

from pipeline.selection import measure


def main() -> None:
    job = json.load(sys.stdin)
    candidates = [(c["variant"], Path(c["path"]), c["session"], c["provider_options"]) for c in job["candidates"]]
    print(json.dumps(measure(candidates, job["provider"], job["rounds"], job["per_round"])))


if __name__ == "__main__":
    main()
