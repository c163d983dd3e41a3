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

import numpy as np
from pydantic import NonNegativeInt, PositiveInt

from pipeline.core.errors import PipelineError
from pipeline.core.stage import Schema
from pipeline.data.calibration import MnistCalibrationReader, calibration_images
from pipeline.model import onnx_utils
from pipeline.present.chatter import captured
from pipeline.present.progress import progress_bar

QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul")
# Other ops ORT quantizes by default (GELU's Mul and Add, SiLU's Sigmoid, attention's Softmax, LayerNorm): the
# fallback keeps them fp32 by op type, all at once, since an activation built of several such nodes is only as
# good as its worst.
ELEMENTWISE_OPS = ("Add", "Mul", "Sigmoid", "Softmax", "LeakyRelu", "LayerNormalization")
# Attention's two products (queries by keys, weights by values) multiply activations by activations: both sides
# quantized. One unit for all of them, beside each MatMul alone.
ATTENTION_PRODUCTS = "every MatMul of two activations"
DYNAMIC_NOTE = "dynamic INT8 uses ConvInteger for convolutions: expect it slower than fp32 on the ORT CPU EP"


class CalibrationConfig(Schema):
    method: Literal["MinMax", "Entropy", "Percentile"]
    samples: PositiveInt
    batch_size: PositiveInt


class FallbackConfig(Schema):
    max_excluded: NonNegativeInt
    trials: PositiveInt  # units measured at each step of the fallback


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
    kinds.update({"pruned_exported": "fp32", "pruned": "fp32"})
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
        weights = {t.name for t in self.graph.initializer}
        products = [n.name for n in self.graph.node if n.op_type == "MatMul" and n.name not in excluded
                    and not weights.intersection(n.input)]
        if len(products) > 1:
            units[ATTENTION_PRODUCTS] = products
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

        cache = self.scratch / "calibration-ranges.json"
        with progress_bar() as progress:
            if not cache.exists():
                self._calibrate(cache, progress)
        # A cache hit: ORT loads the ranges and needs no reader. Its quantizer logs a line per weight it cannot
        # quantize per channel (LayerNorm's): chatter, into the log.
        with captured("quantize"):
            quantize_static(
                str(self.prepared), str(out), None,
                quant_format=QuantFormat[self.cfg.format], per_channel=self.cfg.per_channel,
                reduce_range=self.cfg.reduce_range, activation_type=QuantType[self.cfg.activation_type],
                weight_type=QuantType[self.cfg.weight_type], nodes_to_exclude=exclude,
                calibrate_method=CalibrationMethod[self.cfg.calibration.method], calibration_cache_path=str(cache),
                extra_options={"ActivationSymmetric": self.cfg.symmetric_activations,
                               "WeightSymmetric": self.cfg.weight_type == "QInt8"},
            )

    def _calibrate(self, cache: Path, progress) -> None:
        """Write ORT's range cache as quantize_static would (same calibrator, same arguments), each range
        rounded by `portable_range`, so that every run of this preset quantizes with kernel-independent ranges."""
        from onnxruntime.quantization import CalibrationMethod
        from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        cal = self.cfg.calibration
        images = calibration_images(self.data_dir, cal.samples, self.seed)
        reader = MnistCalibrationReader(images, cal.batch_size, self.graph.input[0].name, progress)
        # quantize_static's own call: its default op types (it passes these, not None, which would calibrate
        # every float tensor), no calibrator options (its Calib* extra_options, none here), the CPU EP.
        with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
            calibrator = create_calibrator(
                self.prepared, sorted({*QLinearOpsRegistry, *QDQRegistry}),
                augmented_model_path=str(Path(tmp) / "augmented_model.onnx"),
                calibrate_method=CalibrationMethod[cal.method],
            )
            calibrator.collect_data(reader)
            ranges = calibrator.compute_data()
            del calibrator  # its session holds the augmented model
        for tensor in ranges.values():  # other fields (Percentile's hist, bins) stay as computed
            tensor.lowest, tensor.highest = portable_range(tensor.lowest, tensor.highest)
        save_tensors_data(ranges, cache)

    def _quantize_dynamic(self, out: Path, exclude: list[str]) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Dynamic mode first rewrites each Gemm into `<name>_MatMul` + `<name>_Add`, then applies the
        # exclusions: exclude the rewritten name too, or an excluded Gemm is quantized anyway.
        exclude = [*exclude, *(f"{name}_MatMul" for name in exclude)]
        quantize_dynamic(
            str(self.prepared), str(out), per_channel=self.cfg.per_channel, reduce_range=self.cfg.reduce_range,
            weight_type=QuantType[self.cfg.weight_type], nodes_to_exclude=exclude,
        )


def portable_range(lowest, highest):
    """A calibration range rounded outward (lowest down, highest up) to multiples of 2 ** (ceil(log2 m) - 7),
    m = max |bound|: a grid step of a 64th to a 128th of the range's magnitude.

    Ranges are activations' extremes from ORT running the fp32 model, whose MLAS kernels differ by CPU
    (AVX2 vs AVX-512), so two x86-64 machines get ranges a few float32 ulps apart, and with them different
    scales and model bytes. The grid is ~1e4 times coarser than that noise: both round to the same range
    unless a bound lies within ~1e-6 (relative) of a grid point, or m of a power of two. Idempotent; each
    bound keeps its dtype and shape (numpy scalar or array, elementwise for per-channel ranges)."""
    lo, hi = np.asarray(lowest), np.asarray(highest)
    m = np.maximum(np.abs(lo), np.abs(hi)).astype(np.float64)
    mantissa, exponent = np.frexp(m)  # m = mantissa * 2**exponent, 0.5 <= mantissa < 1
    step = np.ldexp(1.0, exponent - (mantissa == 0.5) - 7)  # exact: rounded bounds are k * step, |k| <= 128
    keep = (m == 0) | ~np.isfinite(m)
    lo_r = np.where(keep, lo, np.floor(lo / step) * step).astype(lo.dtype)
    hi_r = np.where(keep, hi, np.ceil(hi / step) * step).astype(hi.dtype)
    return tuple(r if isinstance(b, np.ndarray) else r[()] for b, r in ((lowest, lo_r), (highest, hi_r)))


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
