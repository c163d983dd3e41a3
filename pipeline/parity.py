"""Parity metrics between reference (PyTorch) logits and a candidate's, on the same real test images.

One definition for every place that reports parity: export's quick check, `pipeline export`'s table,
validate's gates, the deploy manifest. numpy only.
"""

from __future__ import annotations

import numpy as np

# Metric name -> direction of "good": gates compare with >= for "min" and <= for "max".
METRICS = {
    "accuracy": "min",
    "accuracy_delta_pt": "min",
    "agreement": "min",
    "max_abs_logit": "max",
    "mean_abs_logit": "max",
    "max_rel_error": "max",
    "cosine_min": "min",
    "cosine_mean": "min",
    "prob_max_abs": "max",
    "finite_fraction": "min",
}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """All parity metrics. Non-finite candidate outputs make every metric fail rather than pass."""
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    finite_rows = np.isfinite(candidate).all(axis=1)
    delta = np.abs(reference - candidate)
    ref_norm = np.linalg.norm(reference, axis=1)
    cand_norm = np.linalg.norm(candidate, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = (reference * candidate).sum(axis=1) / (ref_norm * cand_norm)
        rel = np.linalg.norm(reference - candidate, axis=1) / ref_norm
        prob_delta = np.abs(softmax(reference) - softmax(candidate))
    ref_pred = reference.argmax(1)
    cand_pred = np.where(finite_rows, candidate.argmax(1), -1)
    ref_acc = float((ref_pred == labels).mean())
    acc = float((cand_pred == labels).mean())
    return {
        "accuracy": acc,
        "accuracy_delta_pt": (acc - ref_acc) * 100.0,
        "agreement": float((cand_pred == ref_pred).mean()),
        "max_abs_logit": _worst(delta.max(axis=1), finite_rows, np.max),
        "mean_abs_logit": _worst(delta.mean(axis=1), finite_rows, np.mean),
        "max_rel_error": _worst(rel, finite_rows, np.max),
        "cosine_min": _worst(cosine, finite_rows, np.min),
        "cosine_mean": _worst(cosine, finite_rows, np.mean),
        "prob_max_abs": _worst(prob_delta.max(axis=1), finite_rows, np.max),
        "finite_fraction": float(finite_rows.mean()),
    }


def _worst(values: np.ndarray, finite_rows: np.ndarray, reduce) -> float:
    """Reduce per-sample values; any non-finite sample makes the result NaN, which fails every gate
    whichever way it points (NaN >= t and NaN <= t are both false)."""
    if not finite_rows.all() or not np.isfinite(values).all():
        return float("nan")
    return float(reduce(values))
