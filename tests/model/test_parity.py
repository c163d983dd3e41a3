"""How a gate is decided (pipeline/model/parity.py): counted gates on a confidence bound, intermediate checks
with validate's own rule, and a failure that names the way past it."""

import math

import numpy as np
import pytest

from pipeline.core.errors import GateFailure, PipelineError
from pipeline.model import parity

FP16 = {"min_agreement": 0.999, "max_abs_logit": 0.05}


def _metrics(samples: int, disagreements: int, **extra) -> dict:
    return {"samples": samples, "disagreements": disagreements, "newly_wrong": disagreements, "newly_right": 0,
            "agreement": 1 - disagreements / samples, "accuracy_delta_pt": -100 * disagreements / samples,
            "max_abs_logit": 0.01, "finite_fraction": 1.0, **extra}


def _passes(samples: int, disagreements: int, final_samples: int | None = None, gates=FP16) -> bool:
    verdicts = parity.judge("fp16", "fp16", _metrics(samples, disagreements), gates, confidence=0.95,
                            final_samples=final_samples)
    return not parity.failures(verdicts)


def test_compare_counts_what_the_bounds_are_computed_from():
    reference = np.eye(10)[[0, 1, 2, 3]] * 5.0
    candidate = np.eye(10)[[0, 1, 3, 2]] * 5.0
    metrics = parity.compare(reference, candidate, np.array([0, 1, 2, 9]))
    assert (metrics["disagreements"], metrics["newly_wrong"], metrics["newly_right"]) == (2, 1, 0)


def test_the_issues_fp16_case_passes_where_validate_would_pass_it():
    """1 of 256 images changed (99.61 %) stopped export; validate passed the same model at 99.98 % on 10k."""
    assert _passes(256, 1, final_samples=10000)
    assert _passes(10000, 2)


def test_validate_passes_only_what_the_lower_bound_shows():
    # 0.999 on 10k at 95 %: up to 4 disagreements show it, 5 (observed 0.9995, above the threshold) do not.
    assert [_passes(10000, k) for k in range(7)] == [True] * 5 + [False] * 2
    message = parity.failures(parity.judge("fp16", "fp16", _metrics(10000, 5), FP16, confidence=0.95))[0]
    assert message.startswith("fp16 (fp16): agreement = 0.9995 on 10000 images (95% lower bound 0.99894")
    assert message.endswith("needs >= 0.999")


@pytest.mark.parametrize("seen", [64, 256, 1000, 4000])
def test_an_intermediate_check_never_stops_a_model_validate_would_pass(seen):
    """Its images are the first of validate's: with k disagreements among them, validate sees at least k."""
    for k in range(seen + 1):
        if not _passes(seen, k, final_samples=10000):
            assert not any(_passes(10000, total) for total in range(k, k + 50))
            assert k >= 5  # and it stops nothing that one image more or less would flip at these sizes
            break


def test_a_sample_no_result_could_decide_is_refused_naming_the_size_that_can():
    with pytest.raises(PipelineError, match=r"^validate.samples=2000 cannot decide validate.gates.fp16.min_agreement="
                                            r"0.999 at 95%: .* use at least 3000 images"):
        parity.require_decidable({"fp16": FP16}, 2000, 0.95, setting="validate.samples")
    with pytest.raises(PipelineError, match="no sample of the test set can show it"):
        parity.require_decidable({"fp32": {"min_agreement": 1.0}}, 10000, 0.95, setting="validate.samples")
    parity.require_decidable({"fp16": FP16}, 3000, 0.95, setting="validate.samples")


def test_a_failure_names_the_setting_that_gets_past_it():
    with pytest.raises(GateFailure) as failed:
        parity.require("fp16", "fp16", _metrics(10000, 30), FP16, context="fp16 vs its input", confidence=0.95)
    text = str(failed.value)
    assert "optimize.fp16.enabled=false skips the fp16 variant; or loosen validate.gates.fp16.min_agreement=0.9959)" \
        in text
    verdicts = parity.judge("int8_x", "int8", _metrics(10000, 80, cosine_min=0.989), {"min_cosine": 0.99},
                            confidence=0.95)
    # The quantize stage's own advice is what its fallback measured; without it, where to find that.
    assert parity.remedy("int8_x", "int8", verdicts, own="quantize.int8_x.fallback.max_excluded=3 passes") == (
        "quantize.int8_x.fallback.max_excluded=3 passes; or loosen validate.gates.int8.min_cosine=0.989")
    assert parity.remedy("int8_x", "int8", verdicts) == (
        "quantize's record (metrics/quantize_int8_x.json `remedy`) says whether a larger fallback.max_excluded "
        "passes; or leave int8_x out of `quantize=[...]`; or loosen validate.gates.int8.min_cosine=0.989")


def test_worst_case_gates_are_per_image_tolerances():
    """max |Δlogit| over a prefix can only grow on more images: the intermediate rule is the value itself."""
    worse = _metrics(256, 0, max_abs_logit=0.06)
    assert parity.failures(parity.judge("fp16", "fp16", worse, FP16, confidence=0.95, final_samples=10000))


def test_figures_are_quoted_on_a_grid_that_kernel_rounding_cannot_cross():
    """What ONNX Runtime computes moves by ~1e-6 between CPUs; the quoted figures do not."""
    figures = {"max_abs_logit": 0.2532067, "mean_abs_logit": 3.8e-6, "max_rel_error": 0.0500667,
               "prob_max_abs": -2e-7, "cosine_p1": 0.99988613}
    quoted = parity.quote(figures)
    assert quoted == parity.quote({k: v + (1e-9 if k.startswith("cosine") else 1e-6) for k, v in figures.items()})
    assert quoted["max_abs_logit"] == 0.253 and quoted["mean_abs_logit"] == 0.0 and quoted["cosine_p1"] == 0.999886
    assert parity.quote({"accuracy_delta_pt": 0.009999999999998899})["accuracy_delta_pt"] == 0.01
    assert math.isnan(parity.quote({"cosine_min": float("nan")})["cosine_min"])  # non-finite still fails gates
    assert str(quoted["prob_max_abs"]) == "0.0"  # never -0.0, whose sign kernel rounding could flip


def test_a_threshold_finer_than_the_quoted_grid_is_refused():
    with pytest.raises(PipelineError, match=r"max_abs_logit=1e-06 is finer than the 1e-05 grid"):
        parity.require_decidable({"fp32": {"max_abs_logit": 1e-6}}, 10000, 0.95, setting="validate.samples")
    parity.require_decidable({"fp32": {"max_abs_logit": 1e-5}}, 10000, 0.95, setting="validate.samples")


def test_the_confidence_bound_moves_the_cliff_it_does_not_remove_it():
    """What the module docstring says: at 10,000 images, 95 % and a 0.999 threshold, 4 disagreements pass and 5
    fail; a point estimate would pass 10."""
    def passes(disagreements: int) -> bool:
        metrics = {"samples": 10_000, "disagreements": disagreements}
        return parity.lower_bound("agreement", metrics, 0.95) >= 0.999

    assert passes(4) and not passes(5)
    assert (10_000 - 10) / 10_000 >= 0.999
