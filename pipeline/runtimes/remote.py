"""Timing inside another runtime's environment: this process's side of worker.py.

The OpenVINO EP's onnxruntime lives in its own venv, so package times its candidates there (`measure_there`)
and bench holds a session there open (`RemoteRunner`) and asks it for one turn at a time, interleaved with the
runners in its own process. Each turn is timed by the worker itself: the pipe's round trip is outside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pipeline.core.errors import PipelineError
from pipeline.measure.timing import idle_after
from pipeline.runtimes.cells import RUNTIMES, environment

WORKER = Path(__file__).with_name("worker.py")
REPO = Path(__file__).resolve().parents[2]


def _command(runtime_name: str, mode: str) -> tuple[list[str], dict[str, str]]:
    runtime = RUNTIMES[runtime_name]
    interpreter, extra_env = runtime.command(environment(runtime))
    return [*interpreter, str(WORKER), mode], {**os.environ, **extra_env, "PYTHONPATH": str(REPO)}


def _last_line(text: str) -> str:
    return (text.strip() or "no output").splitlines()[-1]


def measure_there(runtime_name: str, job: dict) -> dict[str, list[float]]:
    """candidates.measure run by the worker in `runtime_name`'s environment: {label: per-round medians (ms)}."""
    command, env = _command(runtime_name, "measure")
    done = subprocess.run(command, input=json.dumps(job), env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise PipelineError(f"timing on {runtime_name} failed: {_last_line(done.stderr)}")
    return json.loads(_last_line(done.stdout))


class RemoteRunner:
    """A model opened by a worker in another runtime's environment; answers `latency(runs, warmup)` (median
    ms of batch-1 calls) and `throughput(runs, warmup)` (img/s of batch-N calls), and has `idle_s`, like
    timing.InProcess."""
    def __init__(self, runtime_name: str, model: Path, session: dict, providers: list[tuple[str, dict]],
                 one: np.ndarray, many: np.ndarray):
        self.runtime_name = runtime_name
        self.idle_s = idle_after(session, providers[0][0])
        self._scratch = tempfile.TemporaryDirectory()
        inputs = {size: str(Path(self._scratch.name) / f"{size}.npy") for size in ("one", "many")}
        np.save(inputs["one"], one)
        np.save(inputs["many"], many)
        self._log = open(Path(self._scratch.name) / "stderr.log", "w+")  # noqa: SIM115 (closed in close())
        command, env = _command(runtime_name, "serve")
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                         env=env, text=True)
        self.providers = self._ask({"model": str(model), "session": session, "providers": providers,
                                    "inputs": inputs})["providers"]

    def _ask(self, request: dict) -> dict:
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            answer = self._process.stdout.readline()
        except BrokenPipeError:
            answer = ""
        if not answer:
            self._process.wait()
            self._log.seek(0)
            raise PipelineError(f"the timing worker on {self.runtime_name} stopped: {_last_line(self._log.read())}")
        return json.loads(answer)

    def latency(self, runs: int, warmup: int) -> float:
        return self._ask({"op": "latency", "runs": runs, "warmup": warmup})["value"]

    def throughput(self, runs: int, warmup: int) -> float:
        return self._ask({"op": "throughput", "runs": runs, "warmup": warmup})["value"]

    def close(self) -> None:
        if self._process.stdin and not self._process.stdin.closed:
            self._process.stdin.close()
        self._process.wait()
        self._log.close()
        self._scratch.cleanup()

    def __enter__(self) -> RemoteRunner:
        return self

    def __exit__(self, *_) -> None:
        self.close()
