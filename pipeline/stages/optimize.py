"""Simplify with onnxsim, optimize offline with ONNX Runtime, and derive an fp16 variant for GPUs.

Inputs:  the exported model, data_dir (real test images for the rewrite checks)
Outputs: variants/{simplified,optimized,fp16,pruned}/model.onnx, each with its lineage (pruned: the pruned
         export, simplified); metrics: node count and
         op histogram after each step, and each step's parity against its input (validate's gates)
Caveat:  level 'all' adds NCHWc layout ops tuned to this CPU: that model is only for this machine class,
         and is marked portable=false. Portable artifacts use 'extended'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import PositiveInt

from pipeline.core.errors import PipelineError
from pipeline.core.io import atomic_dir
from pipeline.core.stage import Schema, Stage, StageResult
from pipeline.data.mnist import TEST_IMAGES, test_batch
from pipeline.model import lineage, onnx_utils, parity
from pipeline.present.chatter import captured


class Fp16Config(Schema):
    enabled: bool
    keep_io_types: bool


class OptimizeConfig(Schema):
    level: Literal["basic", "extended", "all"]
    simplify: bool
    check_samples: PositiveInt
    fp16: Fp16Config


def run(cfg: OptimizeConfig, gates: dict, confidence: float, final_samples: int | None, required: list[str],
        model_in: Path, data_dir: Path, pruned_in: Path, simplified_dir: Path, optimized_dir: Path, fp16_dir: Path,
        pruned_dir: Path) -> StageResult:
    """Each step is held to validate's gates for its kind against the model it was derived from, with the rule
    of an intermediate check (it fails only what validate would fail on its images)."""
    source = onnx_utils.load(Path(model_in))
    checkpoint = lineage.inherit(Path(model_in))
    x, _ = test_batch(Path(data_dir), cfg.check_samples)
    check = _Check(x, gates, confidence, final_samples or TEST_IMAGES, required)
    steps = {"exported": onnx_utils.graph_summary(source, Path(model_in))}
    outputs = {}

    simplified_model = _simplify(source) if cfg.simplify else source
    onnx_utils.set_metadata(simplified_model, {lineage.KEY: lineage.record(checkpoint, Path(model_in))})
    outputs["simplified"], steps["simplified"] = _write(simplified_dir, "simplified", simplified_model,
                                                        Path(model_in), check)

    simplified = outputs["simplified"]
    outputs["optimized"], steps["optimized"] = _write_ort_optimized(
        optimized_dir, simplified, cfg.level, lineage.record(checkpoint, simplified), check)

    if cfg.fp16.enabled:
        fp16_model = _to_fp16(onnx_utils.load(simplified), cfg.fp16.keep_io_types)
        onnx_utils.set_metadata(fp16_model, {lineage.KEY: lineage.record(checkpoint, simplified)})
        outputs["fp16"], steps["fp16"] = _write(fp16_dir, "fp16", fp16_model, simplified, check)

    if Path(pruned_in).is_file():  # the pruned model gets the portable step only: `pruned` is simplified
        pruned = onnx_utils.load(Path(pruned_in))
        pruned_model = _simplify(pruned) if cfg.simplify else pruned
        onnx_utils.set_metadata(pruned_model, {lineage.KEY: lineage.record(lineage.inherit(Path(pruned_in)),
                                                                           Path(pruned_in))})
        outputs["pruned"], steps["pruned"] = _write(pruned_dir, "pruned", pruned_model, Path(pruned_in), check)
    else:
        check.notices.append(f"pruned: not built, no {pruned_in} (run `pipeline prune`, then `pipeline export`)")
    return StageResult(outputs=outputs, metrics={"level": cfg.level, "steps": steps}, notices=check.notices)


def _write(out_dir: Path, name: str, model, reference: Path, check: _Check) -> tuple[Path, dict]:
    """Check one variant against the model it derives from, then write its folder atomically (a failing
    variant leaves nothing behind)."""
    onnx_utils.check_model(model, name)
    with atomic_dir(Path(out_dir)) as staging:
        path = onnx_utils.save(model, staging / onnx_utils.MODEL_FILE)
        step = check(path, reference, name)
    return Path(out_dir) / onnx_utils.MODEL_FILE, step


def _write_ort_optimized(out_dir: Path, source: Path, level: str, lineage_entry: dict, check: _Check
                         ) -> tuple[Path, dict]:
    """ORT offline optimization, tagged with its level and whether it is portable across CPUs."""
    with atomic_dir(Path(out_dir)) as staging:
        path = staging / onnx_utils.MODEL_FILE
        onnx_utils.optimize_offline(source, path, level)
        model = onnx_utils.load(path, check=False)
        onnx_utils.set_metadata(model, {"ort_optimization_level": level, "portable": str(level != "all").lower(),
                                        lineage.KEY: lineage_entry})
        onnx_utils.save(model, path)
        step = {**check(path, source, "optimized"), "portable": level != "all"}
    return Path(out_dir) / onnx_utils.MODEL_FILE, step


def _simplify(model):
    import onnxsim

    try:
        # Check at batch 4: onnxsim would otherwise set the dynamic batch to 1 and say so three times.
        shapes = {i.name: [4, *[d.dim_value for d in i.type.tensor_type.shape.dim[1:]]] for i in model.graph.input}
        with captured("onnxsim"):
            simplified, ok = onnxsim.simplify(model, check_n=3, test_input_shapes=shapes)
    except Exception as exc:  # onnxsim surfaces onnx/ORT errors of many types
        raise PipelineError(f"onnxsim failed: {str(exc).splitlines()[0][:300]}") from None
    if not ok:
        raise PipelineError("onnxsim's own check found the simplified model's outputs differ")
    return simplified


def _to_fp16(model, keep_io_types: bool):
    from onnxruntime.transformers.float16 import convert_float_to_float16

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


class _Check:
    """One rewrite's parity against the model it was derived from, on the first `check_samples` test images,
    held to validate's gates for the variant's kind. A required variant (validate.required) that fails stops
    the stage (exit 1, nothing written); any other is written, and its failure is reported for validate,
    which judges it on all its images and rejects it there."""
    def __init__(self, x, gates: dict, confidence: float, final_samples: int, required: list[str]):
        self.x, self.gates, self.confidence, self.final_samples = x, gates, confidence, final_samples
        self.required, self.notices = required, []

    def __call__(self, path: Path, reference: Path, name: str) -> dict:
        kind = "fp16" if name == "fp16" else "fp32"
        reference_logits = parity.onnx_logits(reference, self.x)
        metrics = parity.score(path, reference_logits, self.x, reference_logits.argmax(1))
        verdicts = parity.judge(name, kind, metrics, self.gates[kind], confidence=self.confidence,
                                final_samples=self.final_samples)
        if name in self.required:
            parity.raise_failures(name, kind, verdicts, context=f"{name} vs its input")
        failed = parity.failures(verdicts)
        if failed:
            self.notices.append(f"{name} vs its input fails: {'; '.join(failed)}: validate will reject it "
                                f"({parity.remedy(name, kind, verdicts)})")
        summary = onnx_utils.graph_summary(onnx_utils.load(path, check=False), path)
        return {**summary, "max_abs_delta_vs_input": metrics["max_abs_logit"],
                "agreement_vs_input": metrics["agreement"], "failed_gates_vs_input": failed}


STAGE = Stage(
    name="optimize", run=run, help="onnxsim, ORT offline optimization at optimize.level, then the fp16 variant.",
    owns={"optimize": OptimizeConfig},
    config={"cfg": "optimize", "gates": "validate.gates", "confidence": "validate.confidence",
            "final_samples": "validate.samples", "required": "validate.required"},
    inputs={"model_in": "${paths.variants}/exported/model.onnx", "data_dir": "${paths.data}",
            "pruned_in": "${paths.variants}/pruned_exported/model.onnx"},
    outputs={"simplified_dir": "${paths.variants}/simplified", "optimized_dir": "${paths.variants}/optimized",
             "fp16_dir": "${paths.variants}/fp16", "pruned_dir": "${paths.variants}/pruned"},
)
