"""Parity of every ONNX variant against PyTorch on the test set, with gates and divergence localization.

Inputs:  model_dir (the PyTorch reference), pruned_dir (the pruned variants' reference), data_dir, variants_dir
         (every variant the config builds)
Outputs: metrics/validate.json: per variant accuracy, Δaccuracy, agreement, max/mean |Δlogit|, max
         relative error, cosine (min/mean), softmax max |Δ|, each gate's verdict; for failing variants (or
         with --explain) the first divergent node and the top nodes by error.
Only variants built from the current checkpoint are judged; a missing or stale one is listed with the
command that rebuilds it (with this run's own overrides), and is an error (exit 2) only when it is in
`validate.required`. A failing gate does not raise here: the report is written first, then the runner exits 1
if a required variant failed; any other failing variant is reported as rejected, and package never ships it
(pipeline.model.parity owns the gates and how they are decided).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt

from pipeline.core.errors import PipelineError
from pipeline.core.io import sha256_file
from pipeline.core.stage import Schema, Stage, StageResult
from pipeline.data import mnist
from pipeline.model import lineage, onnx_utils, parity
from pipeline.model import reference as torch_reference
from pipeline.model.localize import localize, modules
from pipeline.model.quantization import variant_kinds
from pipeline.present.progress import progress_bar


class LocalizeConfig(Schema):
    rel_threshold: PositiveFloat
    top_k: PositiveInt
    samples: PositiveInt


class ValidateConfig(Schema):
    batch_size: PositiveInt
    samples: int | None = Field(ge=1, le=mnist.TEST_IMAGES)
    confidence: float = Field(gt=0.5, lt=1.0)
    required: list[str]
    gates: dict[str, dict[str, float]]
    localize: LocalizeConfig


def run(cfg: ValidateConfig, quantize: dict, fp16: bool, model_dir: Path, data_dir: Path, variants_dir: Path,
        pruned_dir: Path, *, explain: bool = False) -> StageResult:
    """Judge every variant built from the current checkpoint; fail on a required one, reject the others."""
    kinds = variant_kinds(quantize, fp16)
    unknown_kinds = sorted({k for k in kinds.values() if k not in cfg.gates})
    if unknown_kinds:
        raise PipelineError(f"validate.gates has no gates for {', '.join(unknown_kinds)} (has: {', '.join(cfg.gates)})")
    samples = cfg.samples or mnist.TEST_IMAGES
    parity.require_decidable({k: cfg.gates[k] for k in dict.fromkeys(kinds.values())}, samples, cfg.confidence,
                             setting="validate.samples")
    checkpoints = {"model": Path(model_dir), "pruned": Path(pruned_dir)}
    paths, unjudged = _current(kinds, Path(variants_dir), checkpoints, cfg.required)
    x, labels = mnist.test_batch(Path(data_dir), samples)
    references = {source: torch_reference.logits(checkpoints[source], x, cfg.batch_size)
                  for source in sorted({lineage.checkpoint_of(name) for name in paths} | {"model"})}
    reference = references["model"]
    report = {}
    with progress_bar() as progress:
        task = progress.add_task("validate", total=len(paths))
        for name, path in paths.items():
            progress.update(task, description=f"validate {name}")
            metrics = parity.score(path, references[lineage.checkpoint_of(name)], x, labels, cfg.batch_size)
            verdicts = parity.judge(name, kinds[name], metrics, cfg.gates[kinds[name]], confidence=cfg.confidence)
            report[name] = {"kind": kinds[name], "sha256": sha256_file(path), **metrics, "gates": verdicts,
                            "passed": all(v["passed"] for v in verdicts.values())}
            progress.advance(task)
    _localize_failing(cfg, report, paths, x, explain)
    failed = {name: entry for name, entry in report.items() if not entry["passed"]}
    failures = [_failure(name, entry) for name, entry in failed.items() if name in cfg.required]
    rejected = {name: _failure(name, entry) for name, entry in failed.items() if name not in cfg.required}
    return StageResult(
        metrics={
            "samples": len(labels),
            "confidence": cfg.confidence,
            "torch_accuracy": float((reference.argmax(1) == labels).mean()),
            "variants": report,
            "failures": failures,
            "rejected": rejected,
            "not_judged": unjudged,
            "passed": not failures,
        },
        notices=[f"rejected (not shipped by any target; not in validate.required): {why}"
                 for why in rejected.values()]
        + [f"not judged: {name} ({why})" for name, why in unjudged.items()],
        gate_failures=failures,
    )


def _current(kinds: dict[str, str], variants_dir: Path, checkpoints: dict[str, Path], required: list[str]
             ) -> tuple[dict[str, Path], dict[str, str]]:
    """The variants built from the current checkpoint, and why each other one is not judged (missing or
    stale, with the command that rebuilds it). A required variant that is missing or stale is an error."""
    paths = {name: onnx_utils.variant_path(variants_dir, name) for name in kinds}
    missing = {name: "not built" for name, path in paths.items() if not path.is_file()}
    digests = lineage.checkpoint_digests(checkpoints["model"], checkpoints["pruned"])
    stale = lineage.stale({n: p for n, p in paths.items() if n not in missing}, digests)
    unjudged = {**missing, **stale}
    blocking = [name for name in required if name in unjudged]
    if blocking:
        listed = "; ".join(f"{name} ({unjudged[name]})" for name in blocking)
        raise PipelineError(f"validate needs {listed}: {lineage.rebuild_advice(blocking)}")
    unjudged = {name: f"{why}: {lineage.rebuild_advice([name])}" for name, why in unjudged.items()}
    return {n: p for n, p in paths.items() if n not in unjudged}, unjudged


def _failure(name: str, entry: dict) -> str:
    """One line: the failed gates with their values, bounds and thresholds, and the setting past them."""
    messages = parity.failures(entry["gates"])
    return "; ".join(messages) + f" (to get past it: {parity.remedy(name, entry['kind'], entry['gates'])})"


def _localize_failing(cfg: ValidateConfig, report: dict, paths: dict[str, Path], x: np.ndarray, explain: bool
                      ) -> None:
    """Where a failing variant first diverges from the simplified fp32 ONNX model, node by node."""
    if "simplified" not in paths:  # the reference it localizes against was not judged
        return
    module_names = modules(paths["exported"]) if "exported" in paths else {}
    with tempfile.TemporaryDirectory(prefix="localize-") as scratch:
        for name, entry in report.items():
            if explain or not entry["passed"]:
                entry["divergence"] = localize(
                    paths["simplified"], paths[name], x[: cfg.localize.samples],
                    rel_threshold=cfg.localize.rel_threshold, top_k=cfg.localize.top_k, scratch=Path(scratch),
                    module_names=module_names,
                )


STAGE = Stage(
    name="validate", run=run,
    help="Parity of every variant vs PyTorch on the test set; exit 1 if any gate fails (report written first).",
    owns={"validate": ValidateConfig},
    config={"cfg": "validate", "quantize": "quantize", "fp16": "optimize.fp16.enabled"},
    inputs={"model_dir": "${paths.model}", "data_dir": "${paths.data}", "variants_dir": "${paths.variants}",
            "pruned_dir": "${paths.pruned}"},
    table="parity_table",
    flags={"explain": "Localize divergence for every variant, not only failing ones."},
    headline=lambda m: {
        "gates_passed": f"{sum(v['passed'] for v in m['variants'].values())}/{len(m['variants'])}",
        "worst_accuracy_delta_pt": round(min(v["accuracy_delta_pt"] for v in m["variants"].values()), 2)},
)
