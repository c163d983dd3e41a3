"""Timing candidates (variant × session options × provider options) at batch 1 on a provider in this process's
onnxruntime, interleaved, and the label each candidate is known by. Package's selection uses it here, and the
timing worker (runtimes/worker.py) inside another runtime's environment, so it imports only numpy, the digit
shape and ORT session opening.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from pipeline.data import preprocessing
from pipeline.deploy.session import SPINNING, open_session
from pipeline.measure.timing import idle_after, interleaved_rounds


def describe(session: dict, provider_options: dict | None = None) -> str:
    spin = "off" if session["config_entries"].get(SPINNING, "1") == "0" else "on"
    threads = session["intra_op_num_threads"]
    threads_text = f"{threads} thread{'' if threads == 1 else 's'}"
    options = "".join(f", {k}={v}" for k, v in (provider_options or {}).items())
    return f"{session['graph_optimization_level']}, {threads_text}, spinning {spin}{options}"


def label(variant: str, session: dict, provider_options: dict | None = None) -> str:
    return f"{variant} @ {describe(session, provider_options)}"


def measure(candidates: list[tuple[str, Path, dict, dict]], provider: str, rounds: int,
            per_round: int) -> dict[str, list[float]]:
    """Per-round median batch-1 latency of each (variant, path, session, provider options) on `provider` in
    this process's onnxruntime, interleaved. Also run inside other runtimes' environments (runtimes/worker.py)."""
    x = np.zeros((1, 1, preprocessing.HEIGHT, preprocessing.WIDTH), np.float32)
    runs, idle_s = {}, {}
    for variant, path, session, options in candidates:
        opened = open_session(path, session, [(provider, options)])
        if opened.get_providers()[0] != provider:
            raise RuntimeError(f"{provider} did not take {variant} (it ran on {opened.get_providers()[0]})")
        name = label(variant, session, options)
        runs[name] = functools.partial(opened.run, None, {opened.get_inputs()[0].name: x})
        idle_s[name] = idle_after(session, provider)
    return interleaved_rounds(runs, rounds=rounds, per_round=per_round, warmup=20, idle_s=idle_s)
