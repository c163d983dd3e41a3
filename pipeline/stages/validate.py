"""Parity of every ONNX variant against PyTorch on the test set, with gates and divergence localization.

Inputs:  model_dir (the PyTorch reference), data_dir, variants_dir (every variant the config builds)
Outputs: metrics/validate.json: per variant accuracy, Δaccuracy, agreement, max/mean |Δlogit|, max
         relative error, cosine (min/mean), softmax max |Δ|, each gate's verdict; for failing variants (or
         with --explain) the first divergent node and the top nodes by error.
Refuses (exit 2) any variant whose lineage does not match the current checkpoint. A failing gate does not
raise here: the report is written first, then the runner exits 1 (pipeline.model.parity owns the gates).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt

from pipeline.core import lineage
from pipeline.core.errors import PipelineError
from pipeline.core.stage import Schema, Stage, StageResult
from pipeline.data.mnist import test_batch
from pipeline.model import onnx_utils, parity
from pipeline.model.localize import localize, modules
from pipeline.model.quantization import variant_kinds
from pipeline.present.progress import progress_bar


class LocalizeConfig(Schema):
    rel_threshold: PositiveFloat
    top_k: PositiveInt
    samples: PositiveInt


class ValidateConfig(Schema):
    batch_size: PositiveInt
    samples: int | None = Field(ge=1, le=10000)
    gates: dict[str, dict[str, float]]
    localize: LocalizeConfig


def run(cfg: ValidateConfig, quantize: dict, fp16: bool, model_dir: Path, data_dir: Path, variants_dir: Path, *,
        explain: bool = False) -> StageResult:
    kinds = variant_kinds(quantize, fp16)
    unknown_kinds = sorted({k for k in kinds.values() if k not in cfg.gates})
    if unknown_kinds:
        raise PipelineError(f"validate.gates has no gates for {', '.join(unknown_kinds)} (has: {', '.join(cfg.gates)})")
    paths = {name: onnx_utils.variant_path(Path(variants_dir), name) for name in kinds}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise PipelineError(f"variant(s) not built: {', '.join(missing)} (run `dvc repro` or the stage that "
                            f"builds them)")
    lineage.require_current(paths, Path(model_dir), stage="validate")
    x, labels = test_batch(Path(data_dir), cfg.samples or 10000)
    reference = parity.torch_logits(Path(model_dir), x, cfg.batch_size)
    report, failures = {}, []
    with progress_bar() as progress:
        task = progress.add_task("validate", total=len(paths))
        for name, path in paths.items():
            progress.update(task, description=f"validate {name}")
            metrics = parity.score(path, reference, x, labels, cfg.batch_size)
            verdicts = parity.judge(name, kinds[name], metrics, cfg.gates[kinds[name]])
            failures += parity.failures(verdicts)
            report[name] = {"kind": kinds[name], **metrics, "gates": verdicts,
                            "passed": all(v["passed"] for v in verdicts.values())}
            progress.advance(task)
    _localize_failing(cfg, report, paths, x, explain)
    return StageResult(
        metrics={
            "samples": len(labels),
            "torch_accuracy": float((reference.argmax(1) == labels).mean()),
            "variants": report,
            "failures": failures,
            "passed": not failures,
        },
        gate_failures=failures,
    )


def _localize_failing(cfg: ValidateConfig, report: dict, paths: dict[str, Path], x: np.ndarray, explain: bool
                      ) -> None:
    """Where a failing variant first diverges from the simplified fp32 ONNX model, node by node."""
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
    inputs={"model_dir": "${paths.model}", "data_dir": "${paths.data}", "variants_dir": "${paths.variants}"},
    table="parity_table",
    flags={"explain": "Localize divergence for every variant, not only failing ones."},
    headline=lambda m: {
        "gates_passed": f"{sum(v['passed'] for v in m['variants'].values())}/{len(m['variants'])}",
        "worst_accuracy_delta_pt": round(min(v["accuracy_delta_pt"] for v in m["variants"].values()), 2)},
)
