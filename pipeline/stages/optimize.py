"""Simplify with onnxsim, optimize offline with ONNX Runtime, and derive an fp16 variant for GPUs.

Inputs:  the exported model
Outputs: variants_dir/{simplified,optimized,fp16}/model.onnx; metrics: node count and op histogram
         before/after each step, and each step's max |Δ| against its input on random inputs
Caveat:  level 'all' adds NCHWc layout ops tuned to this CPU: that model is only for this machine class,
         and is marked portable=false. Portable artifacts use 'extended'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.stages import StageResult

LEVELS = ("basic", "extended", "all")
# Graph rewrites must not change the math; fp16 may, within this bound on standardized MNIST inputs.
REWRITE_TOLERANCE = 1e-4
FP16_TOLERANCE = 0.05


@dataclass(frozen=True)
class Fp16Config:
    enabled: bool = True
    keep_io_types: bool = True


@dataclass(frozen=True)
class OptimizeConfig:
    level: str = "extended"
    simplify: bool = True
    fp16: Fp16Config = field(default_factory=Fp16Config)


def run(cfg: OptimizeConfig, model_in: Path, variants_dir: Path) -> StageResult:
    from pipeline import onnx_utils

    if cfg.level not in LEVELS:
        raise PipelineError(f"optimize.level must be one of {', '.join(LEVELS)}, not {cfg.level!r}")
    source = onnx_utils.load(Path(model_in))
    steps = {"exported": onnx_utils.graph_summary(source, Path(model_in))}
    outputs = {}

    simplified = _write(variants_dir, "simplified", _simplify(source) if cfg.simplify else source)
    outputs["simplified"], steps["simplified"] = simplified, _summary(simplified, Path(model_in))

    optimized = _write_ort_optimized(variants_dir, simplified, cfg.level)
    outputs["optimized"], steps["optimized"] = optimized, _summary(optimized, simplified)
    steps["optimized"]["portable"] = cfg.level != "all"

    if cfg.fp16.enabled:
        fp16 = _write(variants_dir, "fp16", _to_fp16(onnx_utils.load(simplified), cfg.fp16.keep_io_types))
        outputs["fp16"], steps["fp16"] = fp16, _summary(fp16, simplified, tolerance=FP16_TOLERANCE)
    return StageResult(outputs=outputs, metrics={"level": cfg.level, "steps": steps})


def _write(variants_dir: Path, name: str, model) -> Path:
    """Check and write one variant folder atomically."""
    from pipeline import onnx_utils
    from pipeline.io import atomic_dir

    onnx_utils.check_model(model, name)
    with atomic_dir(Path(variants_dir) / name) as staging:
        onnx_utils.save(model, staging / onnx_utils.MODEL_FILE)
    return onnx_utils.variant_path(variants_dir, name)


def _write_ort_optimized(variants_dir: Path, source: Path, level: str) -> Path:
    """ORT offline optimization, tagged with its level and whether it is portable across CPUs."""
    from pipeline import onnx_utils
    from pipeline.io import atomic_dir

    with atomic_dir(Path(variants_dir) / "optimized") as staging:
        path = staging / onnx_utils.MODEL_FILE
        onnx_utils.optimize_offline(source, path, level)
        model = onnx_utils.load(path, check=False)
        onnx_utils.set_metadata(model, {"ort_optimization_level": level, "portable": str(level != "all").lower()})
        onnx_utils.save(model, path)
    return onnx_utils.variant_path(variants_dir, "optimized")


def _simplify(model):
    import onnxsim

    try:
        # Check at batch 4: onnxsim would otherwise set the dynamic batch to 1 and say so three times.
        shapes = {i.name: [4, *[d.dim_value for d in i.type.tensor_type.shape.dim[1:]]] for i in model.graph.input}
        simplified, ok = onnxsim.simplify(model, check_n=3, test_input_shapes=shapes)
    except Exception as exc:  # onnxsim surfaces onnx/ORT errors of many types
        raise PipelineError(f"onnxsim failed: {str(exc).splitlines()[0][:300]}") from None
    if not ok:
        raise PipelineError("onnxsim's own check found the simplified model's outputs differ")
    return simplified


def _to_fp16(model, keep_io_types: bool):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from pipeline import onnx_utils

    converted = convert_float_to_float16(model, keep_io_types=keep_io_types)
    onnx_utils.set_metadata(converted, {"precision": "fp16", "io_types": "float32" if keep_io_types else "float16"})
    return topological_sort(converted)


def topological_sort(model):
    """The fp16 converter appends its Cast nodes at the end; the checker wants producers first."""
    graph = model.graph
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise PipelineError("graph has a cycle or a dangling input; cannot sort it")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)
    return model


def _summary(path: Path, reference: Path, tolerance: float = REWRITE_TOLERANCE) -> dict:
    """Graph summary plus this model's max |Δ| against the model it was derived from."""
    from pipeline import onnx_utils

    summary = onnx_utils.graph_summary(onnx_utils.load(path, check=False), path)
    delta = max_output_delta(path, reference)
    if not delta <= tolerance:
        raise PipelineError(f"{path.parent.name}: outputs moved by {delta:.3g} vs its input (limit {tolerance:g})")
    return {**summary, "max_abs_delta_vs_input": delta}


def max_output_delta(path: Path, reference: Path, batch: int = 8, seed: int = 0) -> float:
    """Random inputs are fine here: a graph rewrite must preserve the function everywhere."""
    from pipeline import onnx_utils

    x = np.random.default_rng(seed).standard_normal((batch, 1, 28, 28)).astype(np.float32)
    a = onnx_utils.run_batched(onnx_utils.session(path), x)
    b = onnx_utils.run_batched(onnx_utils.session(reference), x)
    return float(np.abs(a - b).max())
