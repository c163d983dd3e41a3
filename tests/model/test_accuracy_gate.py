"""The paired accuracy gate: exact numbers on known counts, and a bound that does not pass a model that is worse."""

import numpy as np
import pytest

from pipeline.model import accuracy_gate


def _pairs(n: int, both: int, reference_only: int, candidate_only: int):
    reference = np.zeros(n, bool)
    candidate = np.zeros(n, bool)
    reference[:both] = candidate[:both] = True
    reference[both : both + reference_only] = True
    candidate[both + reference_only : both + reference_only + candidate_only] = True
    return reference, candidate


def test_the_bound_is_tangos_score_bound():
    reference, candidate = _pairs(10000, 9933, 17, 9)
    result = accuracy_gate.paired_drop(reference, candidate, 0.95)
    assert result["drop_pt"] == pytest.approx(0.08)
    assert result["drop_upper_pt"] == pytest.approx(0.1716, abs=1e-4)  # Tango 1998's formula, solved by hand
    assert result["reference_only_right"] == 17 and result["candidate_only_right"] == 9
    assert accuracy_gate.verdict(result, 0.2) is None


def test_a_failing_verdict_names_the_bound_the_measurement_and_the_threshold():
    result = accuracy_gate.paired_drop(*_pairs(10000, 9900, 40, 7), 0.95)
    message = accuracy_gate.verdict(result, 0.2)
    assert message.startswith("accuracy drop vs the unpruned model: upper bound 0.4")
    assert "measured 0.330 pt: 40 images only the unpruned model gets right, 7 only the pruned one, of 10000" in message
    assert message.endswith("> 0.2 pt")


def test_models_that_agree_on_every_image_still_have_a_bound_from_the_sample_size():
    reference, _ = _pairs(10000, 9900, 0, 0)
    result = accuracy_gate.paired_drop(reference, reference, 0.95)
    assert result["drop_pt"] == 0 and 0 < result["drop_upper_pt"] < 0.03


@pytest.mark.parametrize("expected", [(30, 10), (20, 0), (60, 40)])
def test_a_model_truly_worse_by_the_threshold_passes_about_1_minus_confidence_of_the_time(expected):
    """Simulated test sets of 10,000 where the candidate is worse by exactly 0.2 pt (b - c = 20 expected): the
    gate at max_drop_pt=0.2 may let through 5 % of them, up to the simulation's noise (2,000 trials: 3 standard
    errors is 1.5 pt). An exact bound on b / (b + c) alone passed 9 % here."""
    rng = np.random.default_rng(0)
    trials = 2000
    passed = sum(accuracy_gate.tango_upper(rng.poisson(expected[0]), rng.poisson(expected[1]), 10000, 0.95) <= 0.002
                 for _ in range(trials))
    assert passed / trials <= 0.065
