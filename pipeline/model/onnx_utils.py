"""ONNX and ONNX Runtime helpers shared by every stage: load with clear errors, save atomically, count
ops, open sessions, run in batches. onnx and onnxruntime are imported inside the functions that use them, so
`pipeline --help` and the stage declarations stay light.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.core.errors import PipelineError, UnloadableModel

MODEL_FILE = "model.onnx"
# The config's optimization level names, as ORT's GraphOptimizationLevel members.
_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}

if TYPE_CHECKING:  # annotations only: onnx and onnxruntime load inside the functions
    import onnx
    import onnxruntime as ort


def variant_path(variants_dir: Path, name: str) -> Path:
    return Path(variants_dir) / name / MODEL_FILE


def load(path: Path, *, check: bool = True) -> onnx.ModelProto:
    """Load a model file; empty, truncated, non-model or invalid files are one PipelineError line."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"ONNX model not found: {path}")
    if path.stat().st_size == 0:
        raise PipelineError(f"{path} is empty (0 bytes), not an ONNX model")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise PipelineError(f"{path} is not a valid ONNX file (corrupt or truncated: {_line(exc)})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise PipelineError(f"{path} parses as protobuf but holds no ONNX graph")
    if check:
        check_model(model, path)
    return model


def check_model(model: onnx.ModelProto | Path, name: Path | str = "model") -> None:
    """onnx.checker with full_check (which also runs strict shape inference)."""
    import onnx

    try:
        onnx.checker.check_model(model if isinstance(model, onnx.ModelProto) else str(model), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise PipelineError(f"{name} fails the ONNX checker: {_line(exc)}") from None


def save(model: onnx.ModelProto, path: Path, *, external_threshold_bytes: int | None = None) -> Path:
    """Save into `path` (inside a staging folder); weights beyond the threshold go to model.onnx.data."""
    import onnx

    path = Path(path)
    external = external_threshold_bytes is not None and model.ByteSize() > external_threshold_bytes
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{path.name}.data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    return path


def set_metadata(model: onnx.ModelProto, props: dict[str, object]) -> None:
    """Replace metadata_props with `props` (non-strings JSON-encoded), in sorted order for determinism."""
    existing = {p.key: p.value for p in model.metadata_props}
    existing.update({k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in props.items()})
    del model.metadata_props[:]
    for key in sorted(existing):
        model.metadata_props.add(key=key, value=existing[key])


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    counts = collections.Counter(
        f"{n.domain}::{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type for n in model.graph.node
    )
    return dict(sorted(counts.items()))


def nonstandard_ops(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Operators outside the standard ONNX domains, by domain ({"com.microsoft": ["FusedConv"]}): a runtime
    without those contrib ops cannot load the model."""
    found: dict[str, set[str]] = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            found.setdefault(node.domain, set()).add(node.op_type)
    return {domain: sorted(ops) for domain, ops in sorted(found.items())}


def graph_summary(model: onnx.ModelProto, path: Path) -> dict:
    return {"nodes": len(model.graph.node), "ops": op_histogram(model), "bytes": model_bytes(path)}


def model_bytes(path: Path) -> int:
    """File size including external data."""
    path = Path(path)
    data = path.with_name(f"{path.name}.data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def session_options(*, threads: int = 2, level: str = "extended") -> ort.SessionOptions:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
    options.log_severity_level = 3
    return options


def session(path: Path, *, threads: int = 2, level: str = "extended",
            providers: list[str] | None = None) -> ort.InferenceSession:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), session_options(threads=threads, level=level),
                                    providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own pybind types (Fail, InvalidGraph, NotImplemented …)
        raise UnloadableModel(f"ONNX Runtime cannot load {path}: {_line(exc)}") from None


def optimize_offline(model_in: Path, model_out: Path, level: str) -> None:
    """ORT's offline graph optimization: a session at `level` serializes what it optimized."""
    import onnxruntime as ort

    options = session_options(level=level)
    options.optimized_model_filepath = str(model_out)
    try:
        ort.InferenceSession(str(model_in), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise PipelineError(f"ONNX Runtime cannot optimize {model_in}: {_line(exc)}") from None


def run_batched(sess: ort.InferenceSession, inputs: np.ndarray, batch: int = 1000) -> np.ndarray:
    name = sess.get_inputs()[0].name
    outputs = [sess.run(None, {name: inputs[i : i + batch]})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(outputs).astype(np.float32)


def _line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def fix_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

    params = {d.dim_param for i in model.graph.input for d in i.type.tensor_type.shape.dim if d.dim_param}
    for param in params:
        make_dim_param_fixed(model.graph, param, batch)
    fix_output_shapes(model)
    return model


def parameter_count(path: Path) -> int:
    """Elements in the model's initializers (weights and biases after export's folding)."""
    model = load(Path(path), check=False)
    return int(sum(np.prod(init.dims, dtype=np.int64) for init in model.graph.initializer))
