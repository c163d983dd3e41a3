"""torch.onnx.export (the dynamo exporter) with the pipeline's input/output names, bytes that do not depend on
where the code ran, and one clear line for a model it cannot export. Used by the export stage and the
benchmark's crossover sweep.
"""

from __future__ import annotations

from pipeline.core.errors import PipelineError
from pipeline.data import preprocessing
from pipeline.present.chatter import captured

STACK_TRACE = "pkg.torch.onnx.stack_trace"
# The dynamo exporter builds opset 18 and newer; asked for another, it silently builds 18 instead.
MIN_OPSET, MAX_OPSET = 18, 23


def require_opset(proto, requested: int) -> None:
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
