"""The one gate contract: parity metrics (quoted on a CPU-independent grid), gate definitions and verdicts.

Every place that decides whether a model still computes what PyTorch computes calls this module: export's
check of the exported model, optimize's check of each graph rewrite, quantize's accuracy-aware fallback
(which stops only when a variant passes the gates validate will apply), and validate itself. Gates are
configured per variant kind in `validate.gates` (conf/validate); one gate = one metric and one threshold.

How a gate is decided:
- Counted gates (agreement, accuracy delta) are claims about the population, decided with a one-sided
  Clopper-Pearson bound at `validate.confidence`: validate passes a variant only when the lower bound clears
  the threshold (the sample shows it meets it). The bound moves the cliff, it does not remove it: at 10,000
  images, 95 % and a 0.999 threshold, 4 disagreements pass and 5 fail (a point estimate would pass 10). What
  it buys is that a pass is evidence about the population, not that one image cannot decide a verdict. A
  sample too small for any result to show that is refused up front, naming the size that can (`require_decidable`).
- Intermediate checks (export, optimize) see a prefix of validate's images. They stop a model only when
  validate could not pass it even if every image they did not see agreed (`final_samples`): the same rule,
  so a model validate would pass is never stopped earlier.
- Worst-case gates (max |Δlogit|, max relative error, min cosine, softmax max |Δ|, finiteness) are per-image
  tolerances for numerically equivalent models (fp32 rewrites, fp16): every image must be within them. A
  larger sample can only find a worse image, so an intermediate check that fails one proves validate would
  fail too. INT8 moves every logit, so its similarity gate is on the 1st percentile of the per-image cosine
  (`min_cosine_p1`), which one outlier image cannot decide. The mean |Δlogit| gate is a point value.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.core.errors import ParityGateFailure, PipelineError
from pipeline.data import mnist
from pipeline.deploy.numerics import softmax  # the consumers' own: one softmax
from pipeline.model import onnx_utils
from pipeline.model import reference as torch_reference

# Gate key in conf/validate -> (metric from `compare`, comparison that must hold).
GATES = {
    "min_agreement": ("agreement", ">="),
    "min_accuracy_delta_pt": ("accuracy_delta_pt", ">="),
    "max_abs_logit": ("max_abs_logit", "<="),
    "max_mean_abs_logit": ("mean_abs_logit", "<="),
    "max_rel_error": ("max_rel_error", "<="),
    "min_cosine": ("cosine_min", ">="),
    "min_cosine_p1": ("cosine_p1", ">="),
    "max_prob_abs": ("prob_max_abs", "<="),
    "min_finite_fraction": ("finite_fraction", ">="),
}
# Metrics counted over images, decided on their confidence bound; every other metric is a per-image worst case.
COUNTED = ("agreement", "accuracy_delta_pt")
# Every variant must produce finite logits for every sample, whatever its kind's gates say.
IMPLICIT_GATES = {"min_finite_fraction": 1.0}
# Absolute grids the deltas are quoted on (`quote`): above the largest fp32 kernel-rounding difference seen
# here (max |Δlogit| <= 4e-6 between PyTorch's and ONNX Runtime's fp32 kernels on 10k test images).
QUOTE_FLOOR = {"max_abs_logit": 1e-5, "mean_abs_logit": 1e-5, "max_rel_error": 1e-5, "prob_max_abs": 1e-5}
COSINES = ("cosine_min", "cosine_p1", "cosine_mean")
# The metrics a bundle's manifest quotes for its shipped variant.
SUMMARY = ("accuracy", "accuracy_delta_pt", "agreement", "max_abs_logit", "mean_abs_logit", "max_rel_error",
           "cosine_min", "cosine_p1", "cosine_mean", "prob_max_abs")
# The setting that removes a variant's check, for the failure message (quantize variants: `remedy`).
WAY_OUT = {
    "exported": "the exporter changed the model's outputs: try another export.opset",
    "simplified": "optimize.simplify=false skips onnxsim",
    "optimized": "optimize.level=basic applies fewer rewrites",
    "fp16": "optimize.fp16.enabled=false skips the fp16 variant",
}


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """All parity metrics, quoted (`quote`). Non-finite candidate outputs make every metric fail rather than
    pass."""
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
    return quote({
        "samples": len(labels),
        # The counts the counted gates' bounds are computed from.
        "disagreements": int((cand_pred != ref_pred).sum()),
        "newly_wrong": int(((ref_pred == labels) & (cand_pred != labels)).sum()),
        "newly_right": int(((ref_pred != labels) & (cand_pred == labels)).sum()),
        "accuracy": acc,
        "accuracy_delta_pt": (acc - ref_acc) * 100.0,
        "agreement": float((cand_pred == ref_pred).mean()),
        "max_abs_logit": _worst(delta.max(axis=1), finite_rows, np.max),
        "mean_abs_logit": _worst(delta.mean(axis=1), finite_rows, np.mean),
        "max_rel_error": _worst(rel, finite_rows, np.max),
        "cosine_min": _worst(cosine, finite_rows, np.min),
        "cosine_mean": _worst(cosine, finite_rows, np.mean),
        # 99 % of images are at least this similar: an outlier image moves it to the next order statistic only.
        "cosine_p1": _worst(cosine, finite_rows, lambda v: np.percentile(v, 1)),
        "prob_max_abs": _worst(prob_delta.max(axis=1), finite_rows, np.max),
        "finite_fraction": float(finite_rows.mean()),
    })


def quote(metrics: dict) -> dict:
    """The float metrics on a grid far coarser than kernel rounding: ONNX Runtime picks its kernels by CPU
    (MLAS: AVX2, AVX-512, ...), and their outputs differ by ~1e-6 on these logits. Deltas keep 3 significant
    digits but no finer than QUOTE_FLOOR, cosines 6 decimals. Gates judge the quoted value, so the figures
    and verdicts every stage writes are the same bytes on any x86-64 CPU; only a value within ~1e-6 of a
    rounding boundary could still differ."""
    quoted = dict(metrics)
    for name, floor in QUOTE_FLOOR.items():
        if name in quoted and math.isfinite(quoted[name]) and quoted[name]:
            digits = 2 - math.floor(math.log10(abs(quoted[name])))
            quoted[name] = round(quoted[name], min(digits, round(-math.log10(floor)))) + 0.0  # never -0.0
    for name in COSINES:
        if name in quoted and math.isfinite(quoted[name]):
            quoted[name] = round(quoted[name], 6)
    if "accuracy_delta_pt" in quoted:  # a difference of two counts: only float noise in its last digits
        quoted["accuracy_delta_pt"] = round(quoted["accuracy_delta_pt"], 6)
    return quoted


def _worst(values: np.ndarray, finite_rows: np.ndarray, reduce) -> float:
    """Reduce per-sample values; any non-finite sample makes the result NaN, which fails every gate
    whichever way it points (NaN >= t and NaN <= t are both false)."""
    if not finite_rows.all() or not np.isfinite(values).all():
        return float("nan")
    return float(reduce(values))


def lower_bound(metric: str, metrics: dict, confidence: float, samples: int | None = None) -> float:
    """The one-sided lower confidence bound of a counted metric over `samples` images (default: the images
    it was measured on; more: the best case, in which every further image agrees)."""
    from scipy.stats import beta

    n, alpha = samples or metrics["samples"], 1.0 - confidence
    if metric == "agreement":
        agreeing = n - metrics["disagreements"]
        return float(beta.ppf(alpha, agreeing, n - agreeing + 1)) if agreeing > 0 else 0.0
    wrong = metrics["newly_wrong"]  # accuracy delta: as many newly wrong images as the upper bound allows
    wrong_bound = n * float(beta.ppf(confidence, wrong + 1, n - wrong)) if wrong < n else float(n)
    return (metrics["newly_right"] - wrong_bound) / n * 100.0


def judge(variant: str, kind: str, metrics: dict, gates: dict[str, float], *, confidence: float,
          final_samples: int | None = None) -> dict:
    """Each gate's verdict (the implicit finiteness gate included), with a message naming variant, metric,
    value, bound and threshold. `final_samples`: this is an intermediate check on a prefix of validate's
    images, which fails only what validate would fail on that many (see the module docstring)."""
    verdicts = {}
    for gate, threshold in {**IMPLICIT_GATES, **gates}.items():
        if gate not in GATES:
            raise PipelineError(f"unknown gate {gate!r} for {kind} (known: {', '.join(GATES)})")
        metric, op = GATES[gate]
        value = metrics[metric]
        decided_on = value
        detail = ""
        if metric in COUNTED and math.isfinite(value):
            over = max(final_samples or 0, metrics["samples"])
            decided_on = lower_bound(metric, metrics, confidence, over)
            rest = f", counting validate's other {over - metrics['samples']} as agreeing" if over > metrics[
                "samples"] else ""
            detail = f" on {metrics['samples']} images ({confidence:.0%} lower bound {decided_on:.6g}{rest})"
        passed = bool(decided_on >= threshold) if op == ">=" else bool(decided_on <= threshold)
        verdicts[gate] = {
            "metric": metric, "value": value, "decided_on": decided_on, "threshold": threshold, "op": op,
            "passed": passed,
            "message": f"{variant} ({kind}): {metric} = {value:.6g}{detail}, needs {op} {threshold:g}",
        }
    return verdicts


def require_decidable(gates: dict[str, dict[str, float]], samples: int, confidence: float, *, setting: str) -> None:
    """Refuse (exit 2) a sample on which even a perfect result could not pass a counted gate, and a threshold
    finer than the grid its metric is quoted on (`quote`), which the quoted value could not tell from zero."""
    perfect = {"samples": samples, "disagreements": 0, "newly_wrong": 0, "newly_right": 0}
    for kind, kind_gates in gates.items():
        for gate, threshold in kind_gates.items():
            metric = GATES.get(gate, ("", ""))[0]
            if threshold < QUOTE_FLOOR.get(metric, -math.inf):
                raise PipelineError(
                    f"validate.gates.{kind}.{gate}={threshold:g} is finer than the {QUOTE_FLOOR[metric]:g} grid "
                    f"{metric} is quoted on (ONNX Runtime's kernels round differently on each CPU): use at least "
                    f"{QUOTE_FLOOR[metric]:g}")
            if metric in COUNTED and lower_bound(metric, perfect, confidence) < threshold:
                enough = [n for n in (1000, 2000, 3000, 5000, mnist.TEST_IMAGES)
                          if lower_bound(metric, {**perfect, "samples": n}, confidence) >= threshold]
                hint = f"use at least {enough[0]} images" if enough else "no sample of the test set can show it"
                raise PipelineError(
                    f"{setting}={samples} cannot decide validate.gates.{kind}.{gate}={threshold:g} at "
                    f"{confidence:.0%}: even a perfect result on {samples} images does not show it; {hint} "
                    f"(the test set has {mnist.TEST_IMAGES}), or a looser threshold")


def failures(verdicts: dict) -> list[str]:
    return [v["message"] for v in verdicts.values() if not v["passed"]]


def remedy(variant: str, kind: str, verdicts: dict, *, own: str | None = None) -> str:
    """The settings that get a failing variant past its gates: the variant's own way out (`own`: what quantize's
    fallback measured), and the threshold each failing gate would need (from the value it was decided on)."""
    own = own or WAY_OUT.get(variant) or (f"quantize's record (metrics/quantize_{variant}.json `remedy`) says "
                                          f"whether a larger fallback.max_excluded passes; or leave {variant} out "
                                          "of `quantize=[...]`")
    loosened = [f"validate.gates.{kind}.{gate}={_past(v['decided_on'], v['op'])}"
                for gate, v in verdicts.items() if not v["passed"] and gate not in IMPLICIT_GATES]
    return own + (f"; or loosen {' '.join(loosened)}" if loosened else "")


def _past(value: float, op: str) -> str:
    """A round threshold that `value` passes."""
    if not math.isfinite(value):
        return "<none passes: non-finite outputs>"
    digits = max(0, 3 - math.floor(math.log10(abs(value)))) if value else 3
    scale = 10 ** digits
    return f"{(math.floor if op == '>=' else math.ceil)(value * scale) / scale:g}"


def require(variant: str, kind: str, metrics: dict, gates: dict[str, float], *, context: str, confidence: float,
            final_samples: int | None = None) -> dict:
    """judge(), raising ParityGateFailure (exit 1) naming every failed gate and the setting that gets past it; the
    verdicts when all pass."""
    verdicts = judge(variant, kind, metrics, gates, confidence=confidence, final_samples=final_samples)
    raise_failures(variant, kind, verdicts, context=context)
    return verdicts


def raise_failures(variant: str, kind: str, verdicts: dict, *, context: str) -> None:
    """ParityGateFailure (exit 1) naming every failed gate of these verdicts and the setting that gets past it."""
    failed = failures(verdicts)
    if failed:
        raise ParityGateFailure(f"{context}: " + "; ".join(failed)
                                + f" (to get past it: {remedy(variant, kind, verdicts)})")


def onnx_logits(model_path: Path, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    return onnx_utils.run_batched(onnx_utils.session(model_path), x, batch)


def score(model_path: Path, reference: np.ndarray, x: np.ndarray, labels: np.ndarray, batch: int = 1000) -> dict:
    """A model's parity metrics against reference logits on the same images."""
    return compare(reference, onnx_logits(model_path, x, batch), labels)


def variants_vs_torch(written: dict[str, Path], model_dir: Path, data_dir: Path, samples: int) -> dict:
    """Each variant's size, nodes and parity vs PyTorch on `samples` test images (the one-shot export's table)."""
    x, labels = mnist.test_batch(data_dir, samples)
    reference = torch_reference.logits(model_dir, x)
    rows = {}
    for name, path in written.items():
        graph = onnx_utils.load(path, check=False)
        rows[name] = {"path": str(path), **onnx_utils.graph_summary(graph, path),
                      **score(path, reference, x, labels)}
    return rows
