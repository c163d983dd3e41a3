"""Export the trained PyTorch model to ONNX with the dynamo exporter, and prove it matches.

Inputs:  model_dir (model.pt + model.json), data_dir (test images for the sanity check)
Outputs: out_dir/model.onnx (+ model.onnx.data when weights exceed the external-data threshold);
         metrics: opset, node count, op histogram, size, ORT-vs-PyTorch agreement and max |Δlogit|
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveInt

from pipeline.core.errors import PipelineError
from pipeline.core.stage import Schema, Stage, StageResult
from pipeline.data import mnist, preprocessing

STACK_TRACE = "pkg.torch.onnx.stack_trace"
# The dynamo exporter builds opset 18 and newer; asked for another, it silently builds 18 instead.
MIN_OPSET, MAX_OPSET = 18, 23


class ExportConfig(Schema):
    opset: int = Field(ge=MIN_OPSET, le=MAX_OPSET)
    dynamic_batch: bool
    external_data_threshold_mb: PositiveInt
    parity_samples: PositiveInt


def run(cfg: ExportConfig, gates: dict, model_dir: Path, data_dir: Path, out_dir: Path) -> StageResult:
    """Export, then hold the ONNX model to validate's fp32 gates against PyTorch on real test images."""
    from pipeline.core import lineage
    from pipeline.core.io import atomic_dir
    from pipeline.model import checkpoint, onnx_utils, parity

    model, spec = checkpoint.load(Path(model_dir))
    proto = export_module(model, opset=cfg.opset, dynamic_batch=cfg.dynamic_batch)
    _require_opset(proto, cfg.opset)
    onnx_utils.set_metadata(proto, {
        lineage.KEY: lineage.record(lineage.checkpoint_digest(Path(model_dir))),
        "dataset_sha256": mnist.digest(Path(data_dir)),
        "model_target": spec["_target_"],
        "preprocessing": preprocessing.as_manifest(),
        "class_labels": preprocessing.CLASS_LABELS,
    })
    x, labels = mnist.test_batch(Path(data_dir), cfg.parity_samples)
    with atomic_dir(Path(out_dir)) as staging:
        path = onnx_utils.save(proto, staging / onnx_utils.MODEL_FILE,
                               external_threshold_bytes=cfg.external_data_threshold_mb << 20)
        onnx_utils.check_model(path, "exported model")
        metrics = parity.score(path, parity.torch_logits(Path(model_dir), x), x, labels)
        parity.require("exported", "fp32", metrics, gates, context="exported model vs PyTorch")
        summary = onnx_utils.graph_summary(onnx_utils.load(path, check=False), path)
    final = Path(out_dir) / onnx_utils.MODEL_FILE
    return StageResult(
        outputs={"exported": final},
        metrics={"opset": cfg.opset, "dynamic_batch": cfg.dynamic_batch, **summary,
                 "parity": {k: metrics[k] for k in ("samples", "agreement", "max_abs_logit")}},
    )


def _require_opset(proto, requested: int) -> None:
    built = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if built != requested:
        raise PipelineError(f"torch.onnx.export built opset {built}, not the requested export.opset={requested} "
                            f"(this exporter supports {MIN_OPSET}..{built})")


def export_module(model, *, opset: int, dynamic_batch: bool):
    """torch.onnx.export (dynamo) with input `input`, output `logits` and, optionally, a symbolic batch."""
    import torch

    example = torch.zeros(2, 1, preprocessing.HEIGHT, preprocessing.WIDTH)
    forward_arg = next(iter(_forward_params(model)), "x")
    dynamic = {forward_arg: {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
    from pipeline.present.chatter import captured

    try:
        with captured("export"):
            program = torch.onnx.export(
                model.eval(), (example,), None, dynamo=True, opset_version=opset,
                input_names=[preprocessing.INPUT_NAME], output_names=[preprocessing.OUTPUT_NAME],
                dynamic_shapes=dynamic,
            )
    except Exception as exc:  # the exporter raises many types; each is a model it cannot export
        raise PipelineError(f"torch.onnx.export failed for {type(model).__name__}: {_root_cause(exc)}") from None
    return _without_stack_traces(program.model_proto)


def _without_stack_traces(proto):
    """Drop the exporter's per-node Python stack traces: they hold absolute paths (the checkout, the venv),
    so the same model exported from another folder would give other bytes. The module names stay
    (`pkg.torch.onnx.name_scopes`, `namespace`), which is what tells a node's PyTorch origin."""
    for node in proto.graph.node:
        kept = [p for p in node.metadata_props if p.key != STACK_TRACE]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    return proto


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


def summarize_variants(written: dict[str, Path], model_dir: Path, data_dir: Path, samples: int) -> dict:
    """The one-shot command's closing table: each written variant's size, nodes and parity vs PyTorch."""
    from pipeline.model import onnx_utils, parity
    from pipeline.present.tables import variant_table

    x, labels = mnist.test_batch(data_dir, samples)
    reference = parity.torch_logits(model_dir, x)
    rows = {}
    for name, path in written.items():
        graph = onnx_utils.load(path, check=False)
        rows[name] = {"path": str(path), **onnx_utils.graph_summary(graph, path),
                      **parity.score(path, reference, x, labels)}
    variant_table(f"variants vs PyTorch on {samples} test images", rows)
    return rows


STAGE = Stage(
    name="export", run=run, help="Export the checkpoint to ONNX (dynamo) and check it against PyTorch.",
    owns={"export": ExportConfig}, config={"cfg": "export", "gates": "validate.gates.fp32"},
    inputs={"model_dir": "${paths.model}", "data_dir": "${paths.data}"},
    outputs={"out_dir": "${paths.variants}/exported"}, dvc_flags="--stage-only",
)
