"""Latency and throughput measurement shared by package (variant selection) and bench."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def latency_ms(run: Callable[[], object], *, runs: int, warmup: int) -> list[float]:
    """Per-call wall times in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def percentiles(times_ms: list[float]) -> dict[str, float]:
    values = np.asarray(times_ms)
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)} | {"runs": len(values)}


def throughput(run: Callable[[], object], *, batch: int, runs: int, warmup: int = 2) -> float:
    """Images per second over `runs` calls of a batch of `batch` images."""
    for _ in range(warmup):
        run()
    start = time.perf_counter()
    for _ in range(runs):
        run()
    return batch * runs / (time.perf_counter() - start)


def interleaved_latency_ms(runs: dict[str, Callable[[], object]], *, rounds: int, per_round: int,
                           warmup: int) -> dict[str, list[float]]:
    """Latencies of several callables measured in rounds (A B C, B C A, C A B …): machine drift hits all
    alike, and no callable always runs first after a switch."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name] += latency_ms(runs[name], runs=per_round, warmup=3)
    return times
