"""INT8 quantization with ONNX Runtime: the presets' schema, one quantization run, and what a result holds.

The quantize stage searches (fallback by sensitivity, gated against PyTorch) over runs made here; the
benchmark's crossover sweep makes plain runs of random-init models, which have no checkpoint to score against.
Variants are held to validate's gate set named by `gate_kind`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import NonNegativeInt, PositiveInt

from pipeline.core.errors import PipelineError
from pipeline.core.stage import Schema
from pipeline.data.calibration import MnistCalibrationReader, calibration_images
from pipeline.model import onnx_utils
from pipeline.present.progress import progress_bar

QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul")
# Elementwise math ORT also quantizes by default (GELU's Mul and Add, SiLU's Sigmoid): the fallback keeps them
# fp32 by op type, all at once, since an activation built of several such nodes is only as good as its worst.
ELEMENTWISE_OPS = ("Add", "Mul", "Sigmoid", "Softmax", "LeakyRelu")
DYNAMIC_NOTE = "dynamic INT8 uses ConvInteger for convolutions: expect it slower than fp32 on the ORT CPU EP"


class CalibrationConfig(Schema):
    method: Literal["MinMax", "Entropy", "Percentile"]
    samples: PositiveInt
    batch_size: PositiveInt


class FallbackConfig(Schema):
    max_excluded: NonNegativeInt


class QuantizeConfig(Schema):
    mode: Literal["static", "dynamic"]
    format: Literal["QDQ", "QOperator"]
    activation_type: Literal["QUInt8", "QInt8"]
    weight_type: Literal["QUInt8", "QInt8"]
    per_channel: bool
    reduce_range: bool
    symmetric_activations: bool
    calibration: CalibrationConfig | None
    keep_head_fp32: bool
    eval_samples: PositiveInt
    fallback: FallbackConfig | None


def gate_kind(cfg: QuantizeConfig) -> str:
    """Which of validate's gate sets a variant is held to."""
    return "int8_dynamic" if cfg.mode == "dynamic" else "int8"


def variant_kinds(quantize: dict[str, QuantizeConfig], fp16: bool) -> dict[str, str]:
    """Every ONNX variant the config builds, in pipeline order, with the gate kind it is held to."""
    kinds = {"exported": "fp32", "simplified": "fp32", "optimized": "fp32"}
    if fp16:
        kinds["fp16"] = "fp16"
    kinds.update({name: gate_kind(qcfg) for name, qcfg in quantize.items()})
    return kinds


class Quantization:
    """Quantization runs of one fp32 model under one preset, sharing its pre-processing and one calibration
    (ORT's range cache in `scratch`)."""
    def __init__(self, cfg: QuantizeConfig, model_in: Path, data_dir: Path, scratch: Path, seed: int):
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.cfg, self.data_dir, self.scratch, self.seed = cfg, data_dir, scratch, seed
        self.prepared = scratch / "prepared.onnx"
        try:
            quant_pre_process(str(model_in), str(self.prepared))
        except Exception:  # ORT's symbolic shape inference fails on some graphs (a ReduceMax it cannot type):
            try:            # ONNX's own shape inference, which quantization needs, is enough for a static batch
                quant_pre_process(str(model_in), str(self.prepared), skip_symbolic_shape=True)
            except Exception as exc:  # ORT raises assorted types
                raise PipelineError(f"quant_pre_process failed on {model_in}: {str(exc).splitlines()[0]}") from None
        self.graph = onnx_utils.load(self.prepared, check=False).graph
        self._runs = 0

    def base_exclusions(self) -> dict[str, str]:
        head = [self.head_node()] if self.cfg.keep_head_fp32 else []
        return {name: "classifier head kept fp32 (keep_head_fp32)" for name in head}

    def head_node(self) -> str:
        """The node that produces the graph's output (the logits)."""
        output = self.graph.output[0].name
        return next(n.name for n in self.graph.node if output in n.output)

    def candidates(self, excluded: list[str]) -> dict[str, list[str]]:
        """What the fallback may keep fp32, one unit at a time: each Conv/Gemm/MatMul node alone, and every
        node of each elementwise op type present (`every Mul`)."""
        units = {n.name: [n.name] for n in self.graph.node if n.op_type in QUANTIZABLE_OPS and n.name not in excluded}
        for op in ELEMENTWISE_OPS:
            nodes = [n.name for n in self.graph.node if n.op_type == op and n.name not in excluded]
            if nodes:
                units[f"every {op}"] = nodes
        return units

    def run(self, exclude: list[str]) -> Path:
        """One quantization run with these nodes kept fp32; the path of its model."""
        self._runs += 1
        out = self.scratch / f"candidate-{self._runs}.onnx"
        try:
            self._quantize_static(out, exclude) if self.cfg.mode == "static" else self._quantize_dynamic(out, exclude)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise PipelineError(f"quantization failed: {str(exc).splitlines()[0][:300]}") from None
        return out

    def _quantize_static(self, out: Path, exclude: list[str]) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

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


def quantize_plain(cfg: QuantizeConfig, model_in: Path, data_dir: Path, out: Path, seed: int) -> Path:
    """One quantization with the preset's exclusions and no fallback (the benchmark's random-init crossover
    models, which have no checkpoint to score against): for timing only."""
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        quantization = Quantization(cfg, Path(model_in), Path(data_dir), Path(scratch), seed)
        shutil.copy(quantization.run(list(quantization.base_exclusions())), out)
    return Path(out)


def quantized_nodes(model) -> list[str]:
    """Nodes that compute in INT8: integer ops (QOperator / dynamic), or ops whose weight (input 1) comes
    from a DequantizeLinear (QDQ). An excluded op may still read a dequantized activation: it is fp32."""
    integer_ops = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm"}
    dequantized = {out for n in model.graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    return [
        n.name for n in model.graph.node
        if n.op_type in integer_ops or (n.op_type in QUANTIZABLE_OPS and n.input[1] in dequantized)
    ]


def describe(cfg: QuantizeConfig) -> dict:
    described = {
        "mode": cfg.mode, "format": cfg.format, "activation_type": cfg.activation_type,
        "weight_type": cfg.weight_type, "per_channel": cfg.per_channel, "reduce_range": cfg.reduce_range,
        "symmetric_activations": cfg.symmetric_activations, "keep_head_fp32": cfg.keep_head_fp32,
    }
    if cfg.calibration:
        described["calibration"] = {"method": cfg.calibration.method, "samples": cfg.calibration.samples}
    return described
