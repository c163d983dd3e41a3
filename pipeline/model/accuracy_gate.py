"""The accuracy gate of a smaller model against the model it came from: a paired non-inferiority test.

Both models classify the same test images, so only the images they disagree on carry information: b where
the reference is right and the candidate wrong, c the other way. The accuracy drop is (b - c) / n. Given the
b + c discordant images, b is binomial with p = P(reference right | they disagree) and the drop is
(b + c)(2p - 1) / n; the exact (Clopper-Pearson) one-sided upper bound on p gives an upper bound on the drop
that holds with the stated confidence (the exact conditional form of McNemar's test). The gate passes when
that bound is at most `max_drop_pt`: the data show the candidate is not worse by more than that, not merely
that no difference was detected. With no discordant image the bound is 0 (the two agree on every image).
"""

from __future__ import annotations

import numpy as np


def paired_drop(reference_correct: np.ndarray, candidate_correct: np.ndarray, confidence: float) -> dict:
    """Accuracies, the observed drop and its one-sided upper confidence bound, in percentage points."""
    from scipy.stats import binomtest

    reference_correct = np.asarray(reference_correct, bool)
    candidate_correct = np.asarray(candidate_correct, bool)
    n = len(reference_correct)
    b = int(np.sum(reference_correct & ~candidate_correct))
    c = int(np.sum(~reference_correct & candidate_correct))
    upper = 0.0
    if b + c:
        p_high = binomtest(b, b + c).proportion_ci(confidence_level=2 * confidence - 1, method="exact").high
        upper = (b + c) * (2 * p_high - 1) / n
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


def verdict(result: dict, max_drop_pt: float) -> str | None:
    """None when the gate passes, else the line that says by how much it failed."""
    if result["drop_upper_pt"] <= max_drop_pt:
        return None
    return (f"accuracy drop vs the unpruned model: upper bound {result['drop_upper_pt']:.3f} pt at "
            f"{result['confidence']:.0%} confidence (measured {result['drop_pt']:.3f} pt: "
            f"{result['reference_only_right']} images only the unpruned model gets right, "
            f"{result['candidate_only_right']} only the pruned one, of {result['samples']}) > {max_drop_pt} pt")
