"""Export the trained PyTorch model to ONNX with the dynamo exporter, and prove it matches.

Inputs:  model_dir (model.pt + model.json), data_dir (test images for the sanity check)
Outputs: out_dir/model.onnx (+ model.onnx.data when weights exceed the external-data threshold);
         metrics: opset, node count, op histogram, size, ORT-vs-PyTorch agreement and max |Δlogit|
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import mnist, preprocessing
from pipeline.errors import GateFailure, PipelineError
from pipeline.stages import StageResult


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 18
    dynamic_batch: bool = True
    external_data_threshold_mb: int = 1024
    parity_samples: int = 256
    parity_max_abs_logit: float = 1e-4


def run(cfg: ExportConfig, model_dir: Path, data_dir: Path, out_dir: Path, *, provenance: dict) -> StageResult:
    from pipeline import checkpoint, onnx_utils
    from pipeline.io import atomic_dir

    model, spec = checkpoint.load(Path(model_dir))
    proto = export_module(model, opset=cfg.opset, dynamic_batch=cfg.dynamic_batch)
    onnx_utils.set_metadata(proto, {
        **provenance,
        "model_target": spec["_target_"],
        "preprocessing": preprocessing.as_manifest(),
        "class_labels": preprocessing.CLASS_LABELS,
    })
    images = mnist.test_batch(Path(data_dir), cfg.parity_samples)
    with atomic_dir(Path(out_dir)) as staging:
        path = onnx_utils.save(proto, staging / onnx_utils.MODEL_FILE,
                               external_threshold_bytes=cfg.external_data_threshold_mb << 20)
        onnx_utils.check_model(path, "exported model")
        parity = torch_vs_ort(model, path, images)
        _require(parity, cfg.parity_max_abs_logit)
        summary = onnx_utils.graph_summary(onnx_utils.load(path, check=False), path)
    final = Path(out_dir) / onnx_utils.MODEL_FILE
    return StageResult(
        outputs={"exported": final},
        metrics={"opset": cfg.opset, "dynamic_batch": cfg.dynamic_batch, **summary, "parity": parity},
    )


def export_module(model, *, opset: int, dynamic_batch: bool):
    """torch.onnx.export (dynamo) with input `input`, output `logits` and, optionally, a symbolic batch."""
    import torch

    example = torch.zeros(2, 1, preprocessing.HEIGHT, preprocessing.WIDTH)
    forward_arg = next(iter(_forward_params(model)), "x")
    dynamic = {forward_arg: {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
    try:
        program = torch.onnx.export(
            model.eval(), (example,), None, dynamo=True, opset_version=opset,
            input_names=[preprocessing.INPUT_NAME], output_names=[preprocessing.OUTPUT_NAME],
            dynamic_shapes=dynamic,
        )
    except Exception as exc:  # the exporter raises many types; each is a model it cannot export
        raise PipelineError(f"torch.onnx.export failed for {type(model).__name__}: {_root_cause(exc)}") from None
    return program.model_proto


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's first line: the exporter's own message only says which step failed."""
    import re

    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return re.sub(r"\x1b\[[0-9;]*m", "", lines[0])[:300]


def _forward_params(model) -> list[str]:
    import inspect

    return [name for name in inspect.signature(model.forward).parameters if name != "self"]


def torch_vs_ort(model, onnx_path: Path, images: tuple[np.ndarray, np.ndarray]) -> dict:
    import torch

    from pipeline import onnx_utils

    x, _ = images
    with torch.no_grad():
        reference = model.eval()(torch.from_numpy(x)).numpy()
    candidate = onnx_utils.run_batched(onnx_utils.session(onnx_path), x)
    return {
        "samples": len(x),
        "agreement": float((reference.argmax(1) == candidate.argmax(1)).mean()),
        "max_abs_logit": float(np.abs(reference - candidate).max()),
    }


def _require(parity: dict, max_abs_logit: float) -> None:
    if parity["agreement"] < 1.0 or not parity["max_abs_logit"] <= max_abs_logit:
        raise GateFailure(
            f"exported model vs PyTorch on {parity['samples']} test images: agreement "
            f"{parity['agreement']:.4%} (need 100%), max |Δlogit| {parity['max_abs_logit']:.3g} "
            f"(limit {max_abs_logit:g})"
        )


def summarize_variants(written: dict[str, Path], model_dir: Path, data_dir: Path, samples: int) -> dict:
    """The one-shot command's closing table: each written variant's size, nodes and parity vs PyTorch."""
    from pipeline import checkpoint, onnx_utils
    from pipeline.parity import compare
    from pipeline.report_table import variant_table

    model, _ = checkpoint.load(model_dir)
    x, labels = mnist.test_batch(data_dir, samples)
    import torch

    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    rows = {}
    for name, path in written.items():
        logits = onnx_utils.run_batched(onnx_utils.session(path), x)
        graph = onnx_utils.load(path, check=False)
        rows[name] = {"path": str(path), **onnx_utils.graph_summary(graph, path), **compare(reference, logits, labels)}
    variant_table(f"variants vs PyTorch on {samples} test images", rows)
    return rows
