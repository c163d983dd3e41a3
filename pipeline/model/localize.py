"""Where does a variant diverge? Compare every intermediate tensor with the fp32 ONNX reference.

Both models get every float node output exposed as a graph output (types from ONNX shape inference),
run on the same real images, and tensors with the same name and shape are compared in the candidate's
topological order. QDQ quantization, fp16 conversion and weight edits keep the original tensor names,
so the first tensor whose relative error crosses the threshold names the node where things go wrong.
Node names survive too, so each row also names the PyTorch module the node came from, read from the
exporter's `pkg.torch.onnx.name_scopes` metadata on the exported model (later passes drop that metadata).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.model import onnx_utils

if TYPE_CHECKING:  # annotations only: onnx and onnxruntime load inside the functions
    import onnx


def expose_intermediates(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose graph outputs include every float tensor a node produces."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    typed = {vi.name: vi for vi in inferred.graph.value_info}
    existing = {o.name for o in inferred.graph.output}
    for node in inferred.graph.node:
        for name in node.output:
            info = typed.get(name)
            is_float = info is not None and info.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT,
                                                                                onnx.TensorProto.FLOAT16)
            if is_float and name not in existing:
                inferred.graph.output.append(info)
                existing.add(name)
    return inferred


def intermediate_values(path: Path, x: np.ndarray, scratch: Path) -> dict[str, np.ndarray]:
    import onnx

    model = expose_intermediates(onnx_utils.load(path, check=False))
    augmented = scratch / f"{Path(path).parent.name}-intermediates.onnx"
    onnx.save_model(model, str(augmented))
    sess = onnx_utils.session(augmented, level="disabled")
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, {sess.get_inputs()[0].name: x})
    return {n: v.astype(np.float32) for n, v in zip(names, values, strict=True)}


def modules(exported: Path) -> dict[str, str]:
    """ONNX node name -> the PyTorch module it was exported from (`features.3`), where the exporter said."""
    import ast

    found = {}
    for node in onnx_utils.load(exported, check=False).graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        try:
            names = ast.literal_eval(scopes) if scopes else []
        except (ValueError, SyntaxError):
            continue
        # [root '', 'features', 'features.3', <the aten op>]: the module is the deepest scope before the op.
        if len(names) >= 3:
            found[node.name] = names[-2]
    return found


def localize(reference: Path, candidate: Path, x: np.ndarray, *, rel_threshold: float, top_k: int,
             scratch: Path, module_names: dict[str, str] | None = None) -> dict:
    """First divergent node (topological order) and the top-k nodes by relative L2 error, each with its
    PyTorch module where `module_names` (see `modules`) knows it."""
    ref = intermediate_values(reference, x, scratch)
    cand = intermediate_values(candidate, x, scratch)
    rows = []
    for node in onnx_utils.load(candidate, check=False).graph.node:
        for name in node.output:
            seen = consumed_value(name, cand)
            if name in ref and seen in cand and ref[name].shape == cand[seen].shape:
                rows.append({**_row(node, name, ref[name], cand[seen]),
                             "module": (module_names or {}).get(node.name)})
    first = next((r for r in rows if not r["rel_error"] <= rel_threshold), None)
    worst = sorted(rows, key=lambda r: -r["rel_error"] if np.isfinite(r["rel_error"]) else -np.inf)
    return {
        "reference": str(reference),
        "compared_tensors": len(rows),
        "rel_threshold": rel_threshold,
        "first_divergent": first,
        "top": worst[:top_k],
    }


def consumed_value(name: str, values: dict) -> str:
    """The tensor downstream nodes actually read. In QDQ models that is the Q→DQ round trip of `name`:
    the quantizer may drop a Relu and let the Q range clamp, so `name` itself is pre-activation.
    """
    dequantized = f"{name}_DequantizeLinear_Output"
    return dequantized if dequantized in values else name


def _row(node: onnx.NodeProto, tensor: str, ref: np.ndarray, cand: np.ndarray) -> dict:
    diff = cand.astype(np.float64) - ref.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = float(np.linalg.norm(diff) / max(np.linalg.norm(ref), 1e-12))
    return {
        "node": node.name, "op": node.op_type, "tensor": tensor,
        "rel_error": rel if np.isfinite(rel) else float("inf"),
        "max_abs": float(np.abs(diff).max()) if np.isfinite(diff).all() else float("inf"),
    }
