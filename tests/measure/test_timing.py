"""Timing statistics: the interleaving, the idle time a busy runner's threads need, the ratio intervals."""

import numpy as np

from pipeline.measure import timing


def test_only_onnx_runtimes_spinning_cpu_threads_need_the_long_idle():
    spinning = {"config_entries": {}}
    assert timing.idle_after(spinning) == timing.SPIN_TAIL_S > timing.SETTLE_S
    assert timing.idle_after({"config_entries": {"session.intra_op.allow_spinning": "0"}}) == timing.SETTLE_S
    assert timing.idle_after({"config_entries": {"session.force_spinning_stop": "1"}}) == timing.SETTLE_S
    assert timing.idle_after(spinning, "OpenVINOExecutionProvider") == timing.SETTLE_S  # ORT's pool stays idle
    assert timing.idle_after(None) == timing.SETTLE_S  # torch, the OpenVINO runtime


def test_each_turn_waits_for_the_previous_runners_threads(monkeypatch):
    slept, order = [], []
    monkeypatch.setattr(timing.time, "sleep", slept.append)
    turns = {name: (lambda n=name: order.append(n) or 1.0) for name in "abc"}
    values = timing.interleaved(turns, rounds=3, idle_s={"b": 0.5})
    assert values == {name: [1.0] * 3 for name in "abc"}
    assert order == list("abcbcacab")  # each round starts one further along
    previous = ["b", *order[:-1]]  # the warm-up ends on the runner with the longest idle
    assert slept == [0.5 if p == "b" else timing.SETTLE_S for p in previous]


def test_a_ratio_interval_contains_its_ratio_and_is_reproducible():
    rng = np.random.default_rng(0)
    slow, fast = list(2.0 * (1 + rng.uniform(-0.1, 0.1, 10))), list(1.0 * (1 + rng.uniform(-0.1, 0.1, 10)))
    first = timing.ratio_interval(slow, fast)
    assert first == timing.ratio_interval(slow, fast)
    assert first["low"] < first["ratio"] < first["high"] and first["low"] > 1.7 and first["high"] < 2.3


def test_phases_add_up_the_time_of_each_named_part():
    phase = timing.Phases()
    for _ in range(2):
        with phase("search"):
            pass
    with phase("matrix"):
        pass
    assert set(phase.seconds) == {"search", "matrix"} and all(s >= 0 for s in phase.seconds.values())
