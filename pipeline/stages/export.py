"""Export the trained PyTorch model (and the pruned one) to ONNX with the dynamo exporter, and prove each matches.

Inputs:  model_dir (model.pt + model.json), pruned_dir (the prune stage's checkpoint, where written), data_dir
         (test images for the sanity check)
Outputs: out_dir/model.onnx (+ model.onnx.data when weights exceed the external-data threshold), pruned_out the
         same for the pruned checkpoint;
         metrics: opset, node count, op histogram, size, ORT-vs-PyTorch agreement and max |Δlogit|
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveInt

from pipeline.core.io import atomic_dir
from pipeline.core.stage import Schema, Stage, StageResult
from pipeline.data import mnist, preprocessing
from pipeline.model import checkpoint, lineage, onnx_utils, parity
from pipeline.model import reference as torch_reference
from pipeline.model.torch_export import MAX_OPSET, MIN_OPSET, export_module, require_opset


class ExportConfig(Schema):
    opset: int = Field(ge=MIN_OPSET, le=MAX_OPSET)
    dynamic_batch: bool
    external_data_threshold_mb: PositiveInt
    parity_samples: PositiveInt


def run(cfg: ExportConfig, gates: dict, confidence: float, final_samples: int | None, model_dir: Path, data_dir: Path,
        pruned_dir: Path, out_dir: Path, pruned_out: Path) -> StageResult:
    """Export the trained checkpoint, and the pruned one where the prune stage wrote it; each ONNX model is held
    to validate's fp32 gates against its own PyTorch model on the first test images: it fails only what
    validate, on its `final_samples`, would fail too (pipeline/model/parity.py). A model that fails is not
    written."""
    final_samples = final_samples or mnist.TEST_IMAGES
    path, metrics = _export(cfg, gates, confidence, final_samples, Path(model_dir), Path(data_dir), Path(out_dir),
                            "exported")
    outputs, notices = {"exported": path}, []
    why_not = lineage.why_no_pruned(Path(pruned_dir), lineage.checkpoint_digest(Path(model_dir)))
    if why_not is None:
        outputs["pruned_exported"], metrics["pruned"] = _export(
            cfg, gates, confidence, final_samples, Path(pruned_dir), Path(data_dir), Path(pruned_out),
            "pruned_exported")
    else:
        notices.append(f"pruned_exported: not exported, {why_not}")
    return StageResult(outputs=outputs, metrics=metrics, notices=notices)


def _export(cfg: ExportConfig, gates: dict, confidence: float, final_samples: int, model_dir: Path, data_dir: Path,
            out_dir: Path, name: str) -> tuple[Path, dict]:
    model, spec = checkpoint.load(model_dir)
    proto = export_module(model, opset=cfg.opset, dynamic_batch=cfg.dynamic_batch)
    require_opset(proto, cfg.opset)
    onnx_utils.set_metadata(proto, {
        lineage.KEY: lineage.record(lineage.checkpoint_digest(model_dir)),
        "dataset_sha256": mnist.digest(data_dir),
        "model_target": spec["_target_"],
        "preprocessing": preprocessing.as_manifest(),
        "class_labels": preprocessing.CLASS_LABELS,
    })
    x, labels = mnist.test_batch(data_dir, cfg.parity_samples)
    with atomic_dir(out_dir) as staging:
        path = onnx_utils.save(proto, staging / onnx_utils.MODEL_FILE,
                               external_threshold_bytes=cfg.external_data_threshold_mb << 20)
        onnx_utils.check_model(path, f"{name} model")
        metrics = parity.score(path, torch_reference.logits(model_dir, x), x, labels)
        parity.require(name, "fp32", metrics, gates, context=f"{name} model vs PyTorch", confidence=confidence,
                       final_samples=final_samples)
        summary = onnx_utils.graph_summary(onnx_utils.load(path, check=False), path)
    return out_dir / onnx_utils.MODEL_FILE, {
        "opset": cfg.opset, "dynamic_batch": cfg.dynamic_batch, **summary,
        "parity": {k: metrics[k] for k in ("samples", "agreement", "max_abs_logit")}}


STAGE = Stage(
    name="export", run=run, help="Export the checkpoint to ONNX (dynamo) and check it against PyTorch.",
    owns={"export": ExportConfig},
    config={"cfg": "export", "gates": "validate.gates.fp32", "confidence": "validate.confidence",
            "final_samples": "validate.samples"},
    inputs={"model_dir": "${paths.model}", "data_dir": "${paths.data}", "pruned_dir": "${paths.pruned}"},
    outputs={"out_dir": "${paths.variants}/exported", "pruned_out": "${paths.variants}/pruned_exported"},
    dvc_flags="--stage-only",
)
