"""The accuracy gate of a smaller model against the model it came from: a paired non-inferiority test.

Both models classify the same test images, so only the images they disagree on carry information: b where
the reference is right and the candidate wrong, c the other way. The accuracy drop is (b - c) / n. Its
one-sided upper confidence bound is Tango's score bound for a difference of paired proportions (Tango 1998,
Stat Med 17:891): the largest drop δ that the score test does not reject, with the other cell probability at
its maximum likelihood under δ. The gate passes when that bound is at most `max_drop_pt`: the data show the
candidate is not worse by more than that, not merely that no difference was detected. Its false-pass rate at
the threshold is held near 1 - confidence by a simulation in tests/model/test_accuracy_gate.py (bounding the
drop by an exact bound on b's share of the discordant images alone lets through about twice as many).
"""

from __future__ import annotations

import numpy as np


def paired_drop(reference_correct: np.ndarray, candidate_correct: np.ndarray, confidence: float) -> dict:
    """Accuracies, the observed drop and its one-sided upper confidence bound, in percentage points."""
    reference_correct = np.asarray(reference_correct, bool)
    candidate_correct = np.asarray(candidate_correct, bool)
    n = len(reference_correct)
    b = int(np.sum(reference_correct & ~candidate_correct))
    c = int(np.sum(~reference_correct & candidate_correct))
    upper = tango_upper(b, c, n, confidence)
    return {
        "samples": n,
        "confidence": confidence,
        "reference_accuracy": float(reference_correct.mean()),
        "accuracy": float(candidate_correct.mean()),
        "drop_pt": round(100 * (b - c) / n, 4),
        "drop_upper_pt": round(100 * upper, 4),
        "reference_only_right": b,
        "candidate_only_right": c,
    }


def tango_upper(b: int, c: int, n: int, confidence: float) -> float:
    """The one-sided upper bound on (b - c) / n's expectation: where Tango's score statistic reaches -z."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    z, rest = norm.ppf(confidence), n - b - c

    def score(delta: float) -> float:
        # the maximum-likelihood P(candidate only right) given the drop delta: the positive root of a quadratic
        linear = b * (1 - delta) + c * (1 - 3 * delta) - 2 * rest * delta
        p_c = (linear + np.sqrt(linear**2 + 8 * n * c * delta * (1 - delta))) / (4 * n)
        variance = n * (2 * p_c + delta - delta**2)
        return (b - c - n * delta) / np.sqrt(max(variance, 1e-300)) + z

    observed = (b - c) / n
    return observed if score(observed) <= 0 else float(brentq(score, observed, 1 - 1e-12))


def verdict(result: dict, max_drop_pt: float) -> str | None:
    """None when the gate passes, else the line that says by how much it failed."""
    if result["drop_upper_pt"] <= max_drop_pt:
        return None
    return (f"accuracy drop vs the unpruned model: upper bound {result['drop_upper_pt']:.3f} pt at "
            f"{result['confidence']:.0%} confidence (measured {result['drop_pt']:.3f} pt: "
            f"{result['reference_only_right']} images only the unpruned model gets right, "
            f"{result['candidate_only_right']} only the pruned one, of {result['samples']}) > {max_drop_pt} pt")
