"""Quantize an fp32 ONNX model to INT8 with ONNX Runtime, with an accuracy-aware fallback.

Inputs:  model_in (the simplified fp32 model: portable, no ORT-specific fused ops), data_dir
Outputs: out_dir/model.onnx; metrics: sizes, quantized/excluded nodes and why, fp32 vs INT8 accuracy
Static:  quant_pre_process, then quantize_static with a seeded calibration reader over training images.
         If accuracy drops more than the budget, ops are ranked by sensitivity (the logit error when
         that op alone stays fp32) and the most sensitive stay fp32 until the budget holds.
Dynamic: quantize_dynamic (weights only). On CNNs its ConvInteger runs several times slower than fp32
         on the CPU EP; it is kept for completeness and the benchmark shows the cost.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.stages import StageResult

QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul")
DYNAMIC_NOTE = "dynamic INT8 uses ConvInteger for convolutions: expect it slower than fp32 on the ORT CPU EP"


@dataclass(frozen=True)
class CalibrationConfig:
    method: str = "MinMax"
    samples: int = 512
    batch_size: int = 64


@dataclass(frozen=True)
class FallbackConfig:
    max_accuracy_drop_pt: float = 0.3
    max_excluded: int = 4
    eval_samples: int = 10000


@dataclass(frozen=True)
class QuantizeConfig:
    mode: str = "static"
    format: str = "QDQ"
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    per_channel: bool = True
    reduce_range: bool = False
    symmetric_activations: bool = False
    calibration: CalibrationConfig | None = None
    keep_head_fp32: bool = True
    fallback: FallbackConfig | None = None


def run(cfg: QuantizeConfig, model_in: Path, data_dir: Path, out_dir: Path, *, seed: int) -> StageResult:
    from pipeline import onnx_utils
    from pipeline.io import atomic_dir

    _validate(cfg)
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch_name:
        scratch = Path(scratch_name)
        quantizer = _Quantizer(cfg, Path(model_in), Path(data_dir), scratch, seed)
        best, record = quantizer.quantize_within_budget()
        with atomic_dir(Path(out_dir)) as staging:
            final = staging / onnx_utils.MODEL_FILE
            model = onnx_utils.load(best)
            described = {**_describe(cfg), "excluded_nodes": record["excluded_nodes"]}
            onnx_utils.set_metadata(model, {"quantization": described})
            onnx_utils.save(model, final)
            summary = onnx_utils.graph_summary(model, final)
            int8_nodes = quantized_nodes(model)
    fp32_bytes = onnx_utils.model_bytes(Path(model_in))
    metrics = {
        **_describe(cfg),
        "nodes": summary["nodes"],
        "ops": summary["ops"],
        "bytes": summary["bytes"],
        "fp32_bytes": fp32_bytes,
        "size_ratio": summary["bytes"] / fp32_bytes,
        "quantized_nodes": int8_nodes,
        **record,
    }
    if cfg.mode == "dynamic":
        metrics["note"] = DYNAMIC_NOTE
    return StageResult(outputs={Path(out_dir).name: Path(out_dir) / onnx_utils.MODEL_FILE}, metrics=metrics)


class _Quantizer:
    """One variant's quantization runs, sharing one calibration (ORT's range cache) and one fp32 baseline."""

    def __init__(self, cfg: QuantizeConfig, model_in: Path, data_dir: Path, scratch: Path, seed: int):
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from pipeline import onnx_utils
        from pipeline.mnist import test_batch

        self.cfg, self.data_dir, self.scratch, self.seed = cfg, data_dir, scratch, seed
        self.prepared = scratch / "prepared.onnx"
        try:
            quant_pre_process(str(model_in), str(self.prepared))
        except Exception as exc:  # symbolic shape inference and ORT raise assorted types
            raise PipelineError(f"quant_pre_process failed on {model_in}: {str(exc).splitlines()[0]}") from None
        self.graph = onnx_utils.load(self.prepared, check=False).graph
        eval_samples = cfg.fallback.eval_samples if cfg.fallback else 2000
        self.eval_x, self.eval_y = test_batch(data_dir, eval_samples)
        self.fp32_logits = onnx_utils.run_batched(onnx_utils.session(model_in), self.eval_x)
        self.fp32_accuracy = _accuracy(self.fp32_logits, self.eval_y)
        self._runs = 0

    def quantize_within_budget(self) -> tuple[Path, dict]:
        base = [self.head_node()] if self.cfg.keep_head_fp32 else []
        excluded = {name: "classifier head kept fp32 (keep_head_fp32)" for name in base}
        path, accuracy = self.quantize(list(excluded))
        record = {"fp32_accuracy": self.fp32_accuracy, "fallback": []}
        budget = self.cfg.fallback
        drop = (self.fp32_accuracy - accuracy) * 100
        if self.cfg.mode == "static" and budget and drop > budget.max_accuracy_drop_pt:
            ranking = self.sensitivity_ranking(list(excluded))
            record["sensitivity"] = ranking
            for name, _ in ranking[: budget.max_excluded]:
                excluded[name] = f"accuracy drop {drop:.2f} pt > budget {budget.max_accuracy_drop_pt} pt"
                path, accuracy = self.quantize(list(excluded))
                drop = (self.fp32_accuracy - accuracy) * 100
                record["fallback"].append({"excluded": name, "accuracy": accuracy, "accuracy_drop_pt": drop})
                if drop <= budget.max_accuracy_drop_pt:
                    break
        record.update({
            "accuracy": accuracy,
            "accuracy_drop_pt": drop,
            "eval_samples": len(self.eval_y),
            "excluded_nodes": [{"node": n, "reason": r} for n, r in excluded.items()],
            "within_budget": budget is None or drop <= budget.max_accuracy_drop_pt,
        })
        return path, record

    def head_node(self) -> str:
        """The node that produces the graph's output (the logits)."""
        output = self.graph.output[0].name
        return next(n.name for n in self.graph.node if output in n.output)

    def candidates(self, excluded: list[str]) -> list[str]:
        return [n.name for n in self.graph.node if n.op_type in QUANTIZABLE_OPS and n.name not in excluded]

    def sensitivity_ranking(self, excluded: list[str]) -> list[tuple[str, float]]:
        """Each candidate op's mean |Δlogit| vs fp32 when only it stays fp32: lower error = more sensitive."""
        scores = []
        for name in self.candidates(excluded):
            path, _ = self.quantize([*excluded, name])
            scores.append((name, self._mean_abs_delta(path)))
        return sorted(scores, key=lambda item: item[1])

    def quantize(self, exclude: list[str]) -> tuple[Path, float]:
        from pipeline import onnx_utils

        self._runs += 1
        out = self.scratch / f"candidate-{self._runs}.onnx"
        try:
            self._quantize_static(out, exclude) if self.cfg.mode == "static" else self._quantize_dynamic(out, exclude)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise PipelineError(f"quantization failed: {str(exc).splitlines()[0][:300]}") from None
        logits = onnx_utils.run_batched(onnx_utils.session(out), self.eval_x)
        return out, _accuracy(logits, self.eval_y)

    def _mean_abs_delta(self, path: Path) -> float:
        from pipeline import onnx_utils

        logits = onnx_utils.run_batched(onnx_utils.session(path), self.eval_x[:1000])
        return float(np.abs(logits - self.fp32_logits[:1000]).mean())

    def _quantize_static(self, out: Path, exclude: list[str]) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        from pipeline.calibration import MnistCalibrationReader, calibration_images
        from pipeline.progress import progress_bar

        cal = self.cfg.calibration
        cache = self.scratch / "calibration-ranges.json"
        with progress_bar() as progress:
            reader = None
            if not cache.exists():
                images = calibration_images(self.data_dir, cal.samples, self.seed)
                reader = MnistCalibrationReader(images, cal.batch_size, self.graph.input[0].name, progress)
            quantize_static(
                str(self.prepared), str(out), reader,
                quant_format=QuantFormat[self.cfg.format], per_channel=self.cfg.per_channel,
                reduce_range=self.cfg.reduce_range, activation_type=QuantType[self.cfg.activation_type],
                weight_type=QuantType[self.cfg.weight_type], nodes_to_exclude=exclude,
                calibrate_method=CalibrationMethod[cal.method], calibration_cache_path=str(cache),
                extra_options={"ActivationSymmetric": self.cfg.symmetric_activations,
                               "WeightSymmetric": self.cfg.weight_type == "QInt8"},
            )

    def _quantize_dynamic(self, out: Path, exclude: list[str]) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Dynamic mode first rewrites each Gemm into `<name>_MatMul` + `<name>_Add`, then applies the
        # exclusions: exclude the rewritten name too, or an excluded Gemm is quantized anyway.
        exclude = [*exclude, *(f"{name}_MatMul" for name in exclude)]
        quantize_dynamic(
            str(self.prepared), str(out), per_channel=self.cfg.per_channel, reduce_range=self.cfg.reduce_range,
            weight_type=QuantType[self.cfg.weight_type], nodes_to_exclude=exclude,
        )


def quantized_nodes(model) -> list[str]:
    """Nodes that compute in INT8: integer ops (QOperator / dynamic), or ops whose weight (input 1) comes
    from a DequantizeLinear (QDQ). An excluded op may still read a dequantized activation: it is fp32."""
    integer_ops = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm"}
    dequantized = {out for n in model.graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    return [
        n.name for n in model.graph.node
        if n.op_type in integer_ops or (n.op_type in QUANTIZABLE_OPS and n.input[1] in dequantized)
    ]


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def _describe(cfg: QuantizeConfig) -> dict:
    described = {
        "mode": cfg.mode, "format": cfg.format, "activation_type": cfg.activation_type,
        "weight_type": cfg.weight_type, "per_channel": cfg.per_channel, "reduce_range": cfg.reduce_range,
        "symmetric_activations": cfg.symmetric_activations, "keep_head_fp32": cfg.keep_head_fp32,
    }
    if cfg.calibration:
        described["calibration"] = {"method": cfg.calibration.method, "samples": cfg.calibration.samples}
    return described


def _validate(cfg: QuantizeConfig) -> None:
    choices = {
        "mode": ("static", "dynamic"), "format": ("QDQ", "QOperator"),
        "activation_type": ("QUInt8", "QInt8"), "weight_type": ("QUInt8", "QInt8"),
    }
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise PipelineError(f"quantize.{key} must be one of {', '.join(allowed)}, not {getattr(cfg, key)!r}")
    if cfg.mode == "static" and cfg.calibration is None:
        raise PipelineError("static quantization needs a `calibration` section")
    if cfg.calibration and cfg.calibration.method not in ("MinMax", "Entropy", "Percentile"):
        raise PipelineError(f"calibration.method must be MinMax, Entropy or Percentile, not {cfg.calibration.method!r}")
