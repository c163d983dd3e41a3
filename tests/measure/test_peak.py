"""The GEMM peaks and the shares held against them: each round's peak is its best probe, a share pairs a runner
with the peak of the same rounds, and probes are spread among the runners' turns."""

import pytest

from pipeline.measure.peak import Probe, alongside, peaks, share


def _probe(precision: str, backend: str, size: int) -> Probe:
    return Probe(precision, backend, size, lambda: None)


FOUND = {"peak_fp32_a_1024": _probe("fp32", "a", 1024), "peak_fp32_b_1536": _probe("fp32", "b", 1536),
         "peak_int8_c_1024": _probe("int8", "c", 1024)}
# Round 2 runs under another process's load: every probe (and, below, the runner) at half speed.
RATES = {"peak_fp32_a_1024": [200.0, 100.0, 210.0], "peak_fp32_b_1536": [220.0, 105.0, 215.0],
         "peak_int8_c_1024": [800.0, 400.0, 820.0]}


def test_each_rounds_peak_is_its_best_probe_and_the_top_backend_is_named():
    found = peaks(RATES, FOUND)
    assert list(found) == ["fp32", "int8"]
    assert found["fp32"]["per_round"] == [220.0, 105.0, 215.0]
    assert found["fp32"]["rate"] == 215.0 and found["fp32"]["best"] == 220.0 and found["fp32"]["unit"] == "GFLOP/s"
    assert found["fp32"]["backend"] == "b" and found["fp32"]["size"] == 1536
    assert found["int8"]["unit"] == "GOP/s" and found["int8"]["probes"]["peak_int8_c_1024"]["median"] == 800.0


def test_a_share_pairs_the_runner_with_the_peak_of_the_same_round():
    """A runner at 80 % of the peak stays at 80 % in a round where load halves both; held to the best round's
    peak instead it would read 40 % there, and a slow peak probe would put a runner above 100 %."""
    fp32 = peaks(RATES, FOUND)["fp32"]
    ops_per_image = 1e6
    images_per_s = [0.8 * peak * 1e9 / ops_per_image for peak in fp32["per_round"]]
    shared = share(images_per_s, ops_per_image, fp32, confidence=0.95)
    assert shared["share_of_peak"] == pytest.approx(0.8)
    assert shared["share_of_peak_ci"] == pytest.approx([0.8, 0.8])
    assert share(images_per_s, ops_per_image, None, 0.95) == {"share_of_peak": None, "share_of_peak_ci": None}


def test_probes_are_spread_among_the_runners_turns():
    turns = {f"runner{i}": (lambda: 1.0) for i in range(6)}
    order = list(alongside(turns, FOUND))
    assert order == ["runner0", "peak_fp32_a_1024", "runner1", "runner2", "peak_fp32_b_1536", "runner3", "runner4",
                     "peak_int8_c_1024", "runner5"]
    assert list(alongside(turns, {})) == list(turns)
