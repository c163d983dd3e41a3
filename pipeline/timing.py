"""Timing statistics, owned here for package (selection) and bench: interleaved rounds, per-round medians,
and ratios with bootstrap confidence intervals, so a choice flips only on a significant difference."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

# ONNX Runtime's intra-op threads keep spinning for a while after a run. In one process, whatever runs next
# loses the cores to them: measured here, a session timed right after another ORT session showed under half
# its throughput (11k vs 25k img/s). A short idle pause before each runner's turn lets them park.
SETTLE_S = 0.05


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


def throughput(run: Callable[[], object], *, batch: int, runs: int, warmup: int = 2) -> float:
    """Images per second over `runs` calls of a batch of `batch` images."""
    for _ in range(warmup):
        run()
    start = time.perf_counter()
    for _ in range(runs):
        run()
    return batch * runs / (time.perf_counter() - start)


class InProcess:
    """A runner in this process, as the interleaving sees it: one turn of batch-1 calls gives their median
    latency, one turn of batch-N calls gives images per second. A runner in another process (another
    runtime's environment, runtimes/worker.py) answers the same two questions, timed on its side."""

    def __init__(self, one: Callable[[], object], many: Callable[[], object], batch: int):
        self.one, self.many, self.batch = one, many, batch

    def latency(self, runs: int, warmup: int) -> float:
        return float(np.median(latency_ms(self.one, runs=runs, warmup=warmup)))

    def throughput(self, runs: int, warmup: int) -> float:
        return throughput(self.many, batch=self.batch, runs=runs, warmup=warmup)


def interleaved(turns: dict[str, Callable[[], float]], *, rounds: int) -> dict[str, list[float]]:
    """One figure per runner per round, each from a turn of its own, rounds rotating the order. The turn
    (many calls, one statistic) is the unit, so a runner in another process interleaves like one in this."""
    values: dict[str, list[float]] = {name: [] for name in turns}
    for name in _rotations(list(turns), rounds):
        values[name].append(turns[name]())
    return values


def interleaved_rounds(runs: dict[str, Callable[[], object]], *, rounds: int, per_round: int,
                       warmup: int) -> dict[str, list[float]]:
    """Each callable's median latency (ms) per round, rounds rotating the order (A B C, B C A, …). Per-round
    medians are the unit of the statistics: a round's outliers (a preempted call) do not leak into them."""
    for run in runs.values():
        for _ in range(warmup):
            run()

    def turn(run: Callable[[], object]) -> Callable[[], float]:
        return lambda: float(np.median(latency_ms(run, runs=per_round, warmup=2)))

    return interleaved({name: turn(run) for name, run in runs.items()}, rounds=rounds)


def interleaved_throughput(runs: dict[str, Callable[[], object]], *, batch: int, rounds: int,
                           per_round: int) -> dict[str, list[float]]:
    """Images per second of each batch callable, one figure per round, rounds rotating the order."""

    def turn(run: Callable[[], object]) -> Callable[[], float]:
        return lambda: throughput(run, batch=batch, runs=per_round, warmup=1)

    return interleaved({name: turn(run) for name, run in runs.items()}, rounds=rounds)


def _rotations(names: list[str], rounds: int) -> Iterator[str]:
    """Each name once per round, the order rotating every round (A B C, B C A, …), so drift hits all alike
    and no runner always follows the same one; each turn starts after SETTLE_S idle."""
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(SETTLE_S)
            yield name


def ratio_interval(numerator: list[float], denominator: list[float], *, confidence: float = 0.95,
                   seed: int = 0) -> dict[str, float]:
    """numerator/denominator from paired rounds: the geometric mean of the per-round ratios, with a
    bootstrap confidence interval (scipy.stats.bootstrap, seeded so the same timings give the same CI)."""
    from scipy.stats import bootstrap

    logs = np.log(np.asarray(numerator, dtype=np.float64) / np.asarray(denominator, dtype=np.float64))
    centre = float(np.exp(logs.mean()))
    if len(logs) < 3 or np.ptp(logs) == 0:
        low = high = centre
    else:
        result = bootstrap((logs,), np.mean, confidence_level=confidence, n_resamples=2000, method="percentile",
                           random_state=np.random.default_rng(seed))
        low, high = float(np.exp(result.confidence_interval.low)), float(np.exp(result.confidence_interval.high))
    return {"ratio": centre, "low": low, "high": high, "confidence": confidence, "rounds": len(logs)}
