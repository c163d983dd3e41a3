"""Parity of every ONNX variant against PyTorch on the test set, with gates and divergence localization.

Inputs:  model_dir (PyTorch reference), data_dir, the variants {name: (model.onnx, kind)}, and the fp32
         ONNX reference used to localize divergence
Outputs: metrics (metrics/parity.json): per variant accuracy, Δaccuracy, agreement, max/mean |Δlogit|,
         max relative error, cosine (min/mean), softmax max |Δ|, each gate's verdict; for failing
         variants (or with explain) the first divergent node and the top nodes by error.
A failing gate does not raise here: the report is written first, then the CLI exits 1.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.stages import StageResult

# Gate key in conf/validate -> (metric from pipeline.parity, comparison that must hold).
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


@dataclass(frozen=True)
class LocalizeConfig:
    rel_threshold: float = 0.1
    top_k: int = 5
    samples: int = 64


@dataclass(frozen=True)
class ValidateConfig:
    batch_size: int = 1000
    samples: int | None = None
    gates: dict = field(default_factory=dict)
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)


def run(cfg: ValidateConfig, model_dir: Path, data_dir: Path, variants: dict[str, tuple[Path, str]],
        reference_onnx: Path, *, explain: bool = False) -> StageResult:
    from pipeline import onnx_utils
    from pipeline.mnist import test_batch
    from pipeline.parity import compare
    from pipeline.progress import progress_bar

    x, labels = test_batch(Path(data_dir), cfg.samples or 10000)
    reference = torch_logits(Path(model_dir), x, cfg.batch_size)
    report, failures = {}, []
    with progress_bar() as progress:
        task = progress.add_task("validate", total=len(variants))
        for name, (path, kind) in variants.items():
            progress.update(task, description=f"validate {name}")
            logits = onnx_utils.run_batched(onnx_utils.session(path), x, cfg.batch_size)
            metrics = compare(reference, logits, labels)
            verdicts = judge(name, kind, metrics, _gates_for(cfg, kind))
            failures += [v["message"] for v in verdicts.values() if not v["passed"]]
            report[name] = {"kind": kind, "path": str(path), **metrics, "gates": verdicts,
                            "passed": all(v["passed"] for v in verdicts.values())}
            progress.advance(task)
    _localize_failing(cfg, report, reference_onnx, x, explain)
    return StageResult(
        outputs={},
        metrics={
            "samples": len(labels),
            "torch_accuracy": float((reference.argmax(1) == labels).mean()),
            "variants": report,
            "failures": failures,
            "passed": not failures,
        },
    )


def torch_logits(model_dir: Path, x: np.ndarray, batch: int) -> np.ndarray:
    import torch

    from pipeline import checkpoint

    model, _ = checkpoint.load(model_dir)
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])


def _gates_for(cfg: ValidateConfig, kind: str) -> dict:
    if kind not in cfg.gates:
        raise PipelineError(f"no gates for variant kind {kind!r} in validate.gates ({', '.join(cfg.gates)})")
    return {**IMPLICIT_GATES, **cfg.gates[kind]}


def judge(variant: str, kind: str, metrics: dict, gates: dict) -> dict:
    """Each gate's verdict. NaN compares false, so a NaN metric fails whichever way the gate points."""
    verdicts = {}
    for gate, threshold in gates.items():
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


def _localize_failing(cfg: ValidateConfig, report: dict, reference_onnx: Path, x: np.ndarray, explain: bool) -> None:
    from pipeline.localize import localize

    with tempfile.TemporaryDirectory(prefix="localize-") as scratch:
        for entry in report.values():
            if explain or not entry["passed"]:
                entry["divergence"] = localize(
                    Path(reference_onnx), Path(entry["path"]), x[: cfg.localize.samples],
                    rel_threshold=cfg.localize.rel_threshold, top_k=cfg.localize.top_k, scratch=Path(scratch),
                )
