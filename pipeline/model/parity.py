"""The one gate contract: parity metrics, gate definitions, verdicts, and the PyTorch reference logits.

Every place that decides whether a model still computes what PyTorch computes calls this module: export's
check of the exported model, optimize's check of each graph rewrite, quantize's accuracy-aware fallback
(which stops only when a variant passes the gates validate will apply), and validate itself. Gates are
configured per variant kind in `validate.gates` (conf/validate); one gate = one metric and one threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.errors import GateFailure, PipelineError
from pipeline.data import mnist
from pipeline.model import checkpoint, onnx_utils

# Gate key in conf/validate -> (metric from `compare`, comparison that must hold).
GATES = {
    "min_agreement": ("agreement", ">="),
    "min_accuracy_delta_pt": ("accuracy_delta_pt", ">="),
    "max_abs_logit": ("max_abs_logit", "<="),
    "max_mean_abs_logit": ("mean_abs_logit", "<="),
    "max_rel_error": ("max_rel_error", "<="),
    "min_cosine": ("cosine_min", ">="),
    "max_prob_abs": ("prob_max_abs", "<="),
    "min_finite_fraction": ("finite_fraction", ">="),
}
# Every variant must produce finite logits for every sample, whatever its kind's gates say.
IMPLICIT_GATES = {"min_finite_fraction": 1.0}
# The metrics a bundle's manifest quotes for its shipped variant.
SUMMARY = ("accuracy", "accuracy_delta_pt", "agreement", "max_abs_logit", "mean_abs_logit", "max_rel_error",
           "cosine_min", "cosine_mean", "prob_max_abs")


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
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        cosine = (reference * candidate).sum(axis=1) / (ref_norm * cand_norm)
        rel = np.linalg.norm(reference - candidate, axis=1) / ref_norm
        prob_delta = np.abs(softmax(reference) - softmax(candidate))
    ref_pred = reference.argmax(1)
    cand_pred = np.where(finite_rows, candidate.argmax(1), -1)
    ref_acc = float((ref_pred == labels).mean())
    acc = float((cand_pred == labels).mean())
    return {
        "samples": len(labels),
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


def judge(variant: str, kind: str, metrics: dict, gates: dict[str, float]) -> dict:
    """Each gate's verdict (the implicit finiteness gate included), with a message naming variant, metric,
    value and threshold."""
    verdicts = {}
    for gate, threshold in {**IMPLICIT_GATES, **gates}.items():
        if gate not in GATES:
            raise PipelineError(f"unknown gate {gate!r} for {kind} (known: {', '.join(GATES)})")
        metric, op = GATES[gate]
        value = metrics[metric]
        passed = bool(value >= threshold) if op == ">=" else bool(value <= threshold)
        verdicts[gate] = {
            "metric": metric, "value": value, "threshold": threshold, "op": op, "passed": passed,
            "message": f"{variant} ({kind}): {metric} = {value:.6g}, needs {op} {threshold:g}",
        }
    return verdicts


def failures(verdicts: dict) -> list[str]:
    return [v["message"] for v in verdicts.values() if not v["passed"]]


def require(variant: str, kind: str, metrics: dict, gates: dict[str, float], *, context: str) -> dict:
    """judge(), raising GateFailure (exit 1) naming every failed gate; the verdicts when all pass."""
    verdicts = judge(variant, kind, metrics, gates)
    failed = failures(verdicts)
    if failed:
        raise GateFailure(f"{context}: " + "; ".join(failed))
    return verdicts


def torch_logits(model_dir: Path, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """The reference: the PyTorch checkpoint in eval mode on `x`."""
    import torch

    model, _ = checkpoint.load(Path(model_dir))
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])


def onnx_logits(model_path: Path, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    return onnx_utils.run_batched(onnx_utils.session(model_path), x, batch)


def score(model_path: Path, reference: np.ndarray, x: np.ndarray, labels: np.ndarray, batch: int = 1000) -> dict:
    """A model's parity metrics against reference logits on the same images."""
    return compare(reference, onnx_logits(model_path, x, batch), labels)


def variants_vs_torch(written: dict[str, Path], model_dir: Path, data_dir: Path, samples: int) -> dict:
    """Each variant's size, nodes and parity vs PyTorch on `samples` test images (the one-shot export's table)."""
    x, labels = mnist.test_batch(data_dir, samples)
    reference = torch_logits(model_dir, x)
    rows = {}
    for name, path in written.items():
        graph = onnx_utils.load(path, check=False)
        rows[name] = {"path": str(path), **onnx_utils.graph_summary(graph, path),
                      **score(path, reference, x, labels)}
    return rows
