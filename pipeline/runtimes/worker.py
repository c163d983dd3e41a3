"""The worker run inside another runtime's environment (the OpenVINO EP's venv), by file path with the repo on
PYTHONPATH, so timings there come from the same code as here (candidates.measure, timing.InProcess). It must
not import pipeline.runtimes, which needs this environment's onnxruntime distribution. Two commands:

    worker.py measure < job.json   ->  {label: [per-round median ms]}: package's candidates, interleaved there
    worker.py serve                ->  one session, timed a turn at a time on request (runtimes/remote.py), so
                                       bench interleaves it with the runners of its own process

`serve` speaks JSON lines: the first request opens the model, each later one is a turn. Library chatter on
stdout is sent to stderr, so the protocol's stdout carries only answers.
"""

import functools
import json
import os
import sys
from pathlib import Path

import numpy as np

from pipeline.deploy.session import open_session
from pipeline.measure.candidates import measure
from pipeline.measure.timing import InProcess


def run_measure() -> None:
    job = json.load(sys.stdin)
    candidates = [(c["variant"], Path(c["path"]), c["session"], c["provider_options"]) for c in job["candidates"]]
    print(json.dumps(measure(candidates, job["provider"], job["rounds"], job["per_round"])))


def serve() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    opening = json.loads(sys.stdin.readline())
    session = open_session(Path(opening["model"]), opening["session"],
                           [(name, options) for name, options in opening["providers"]])
    name = session.get_inputs()[0].name
    one, many = (np.load(opening["inputs"][size]) for size in ("one", "many"))
    timed = InProcess(functools.partial(session.run, None, {name: one}), functools.partial(session.run, None,
                                                                                           {name: many}), len(many))
    answers.write(json.dumps({"providers": session.get_providers()}) + "\n")
    for line in sys.stdin:
        turn = json.loads(line)
        value = getattr(timed, turn["op"])(runs=turn["runs"], warmup=turn["warmup"])
        answers.write(json.dumps({"value": value}) + "\n")


if __name__ == "__main__":
    {"measure": run_measure, "serve": serve}[sys.argv[1]]()
