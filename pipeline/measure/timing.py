"""Timing statistics, owned here for package (selection) and bench: interleaved rounds, per-round medians,
and ratios with bootstrap confidence intervals, so a choice flips only on a significant difference."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np

from pipeline.deploy.session import SPINNING

# Before each turn the cores are left idle until the previous runner's threads have parked, or the runner
# that follows a busy one is timed on fewer cores. Measured here (throughput of an ORT session right after
# another's batch-256 run, 2 cores): after torch, or ORT with spinning off, full speed within 20 ms; after
# ORT with intra-op spinning on (its default), 65 % after 40 ms, 83 % after 60 ms, 95 % after 100 ms and
# 100 % after 150 ms. OpenVINO's threads leave no tail.
SETTLE_S = 0.02
SPIN_TAIL_S = 0.12


def idle_after(session: dict | None, provider: str = "CPUExecutionProvider") -> float:
    """How long the cores stay idle after a turn of a runner with these ORT session options: long when ONNX
    Runtime's CPU EP threads keep spinning after Run returns, short otherwise."""
    entries = (session or {}).get("config_entries", {})
    spins = (session is not None and provider == "CPUExecutionProvider" and entries.get(SPINNING, "1") != "0"
             and entries.get("session.force_spinning_stop", "0") != "1")
    return SPIN_TAIL_S if spins else SETTLE_S


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
    latency, one turn of batch-N calls gives images per second; `idle_s` is how long its threads need to
    park after a turn. A runner in another process (another runtime's environment, runtimes/worker.py)
    answers the same two questions, timed on its side."""

    def __init__(self, one: Callable[[], object], many: Callable[[], object], batch: int, idle_s: float = SETTLE_S):
        self.one, self.many, self.batch, self.idle_s = one, many, batch, idle_s

    def latency(self, runs: int, warmup: int) -> float:
        return float(np.median(latency_ms(self.one, runs=runs, warmup=warmup)))

    def throughput(self, runs: int, warmup: int) -> float:
        return throughput(self.many, batch=self.batch, runs=runs, warmup=warmup)


def interleaved(turns: dict[str, Callable[[], float]], *, rounds: int,
                idle_s: dict[str, float] | None = None) -> dict[str, list[float]]:
    """One figure per runner per round, each from a turn of its own, rounds rotating the order. The turn
    (many calls, one statistic) is the unit, so a runner in another process interleaves like one in this.
    Each turn starts after the previous runner's `idle_s` (default SETTLE_S) of idle cores."""
    idle_s = idle_s or {}
    values: dict[str, list[float]] = {name: [] for name in turns}
    previous = max(turns, key=lambda n: idle_s.get(n, SETTLE_S))  # the warm-up just ran them all
    for name in _rotations(list(turns), rounds):
        time.sleep(idle_s.get(previous, SETTLE_S))
        values[name].append(turns[name]())
        previous = name
    return values


def interleaved_rounds(runs: dict[str, Callable[[], object]], *, rounds: int, per_round: int, warmup: int,
                       idle_s: dict[str, float] | None = None) -> dict[str, list[float]]:
    """Each callable's median latency (ms) per round, rounds rotating the order (A B C, B C A, …). Per-round
    medians are the unit of the statistics: a round's outliers (a preempted call) do not leak into them."""
    for run in runs.values():
        for _ in range(warmup):
            run()

    def turn(run: Callable[[], object]) -> Callable[[], float]:
        return lambda: float(np.median(latency_ms(run, runs=per_round, warmup=2)))

    return interleaved({name: turn(run) for name, run in runs.items()}, rounds=rounds, idle_s=idle_s)


def interleaved_throughput(runs: dict[str, Callable[[], object]], *, batch: int, rounds: int, per_round: int,
                           idle_s: dict[str, float] | None = None) -> dict[str, list[float]]:
    """Images per second of each batch callable, one figure per round, rounds rotating the order."""

    def turn(run: Callable[[], object]) -> Callable[[], float]:
        return lambda: throughput(run, batch=batch, runs=per_round, warmup=1)

    return interleaved({name: turn(run) for name, run in runs.items()}, rounds=rounds, idle_s=idle_s)


def _rotations(names: list[str], rounds: int) -> Iterator[str]:
    """Each name once per round, the order rotating every round (A B C, B C A, …), so slow drift of the
    machine hits all alike."""
    for round_index in range(rounds):
        shift = round_index % len(names)
        yield from names[shift:] + names[:shift]


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


class Phases:
    """Wall seconds of a stage's named phases (package's search and runtime matrix, bench's peers), kept in its
    observations as `phases_s` and shown by `pipeline timings`, so the cost of each part is in plain view."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 1)
