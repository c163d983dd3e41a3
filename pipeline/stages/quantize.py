"""Quantize an fp32 ONNX model to INT8 with ONNX Runtime, with an accuracy-aware fallback.

Inputs:  model_in (the simplified fp32 model: portable, no ORT-specific fused ops), model_dir (the PyTorch
         reference), data_dir
Outputs: out_dir/model.onnx with its lineage; metrics: sizes, quantized/excluded nodes and why, parity vs
         PyTorch, and whether the variant passes validate's gates for its kind (`within_budget`)
Static:  quant_pre_process, then quantize_static with a seeded calibration reader over training images.
         If the result fails any of validate's gates for INT8 (agreement, cosine, accuracy delta, …), ops
         are ranked by sensitivity (the logit error when that op alone stays fp32) and the most sensitive
         stay fp32 one at a time until every gate passes, or `fallback.max_excluded` is reached; then the
         variant is marked out of budget with the gates that still fail.
Dynamic: quantize_dynamic (weights only). On CNNs its ConvInteger runs several times slower than fp32
         on the CPU EP; it is kept for completeness and the benchmark shows the cost.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import NonNegativeInt, PositiveInt

from pipeline.core.errors import PipelineError
from pipeline.core.stage import Schema, Stage, StageResult

QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul")
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


def run(cfg: QuantizeConfig, gates: dict, model_in: Path, model_dir: Path, data_dir: Path, out_dir: Path, *,
        variant: str, seed: int) -> StageResult:
    from pipeline.core import lineage
    from pipeline.core.io import atomic_dir
    from pipeline.model import onnx_utils

    if cfg.mode == "static" and cfg.calibration is None:
        raise PipelineError(f"quantize.{variant}: static quantization needs a `calibration` section")
    checkpoint = lineage.require_current({"simplified": Path(model_in)}, Path(model_dir), stage="quantize")
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch_name:
        quantizer = _Quantizer(cfg, Path(model_in), Path(data_dir), Path(scratch_name), seed, name=variant,
                               gates=gates[gate_kind(cfg)], model_dir=Path(model_dir))
        best, record = quantizer.quantize_within_budget()
        with atomic_dir(Path(out_dir)) as staging:
            final = staging / onnx_utils.MODEL_FILE
            model = onnx_utils.load(best)
            described = {**_describe(cfg), "excluded_nodes": record["excluded_nodes"],
                         "within_budget": record["within_budget"]}
            onnx_utils.set_metadata(model, {"quantization": described,
                                            lineage.KEY: lineage.record(checkpoint, Path(model_in))})
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
    return StageResult(outputs={variant: Path(out_dir) / onnx_utils.MODEL_FILE}, metrics=metrics)


class _Quantizer:
    """One variant's quantization runs, sharing one calibration (ORT's range cache) and one reference."""

    def __init__(self, cfg: QuantizeConfig, model_in: Path, data_dir: Path, scratch: Path, seed: int, *,
                 name: str = "", gates: dict | None = None, model_dir: Path | None = None):
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from pipeline.data.mnist import test_batch
        from pipeline.model import onnx_utils, parity

        self.cfg, self.name, self.gates = cfg, name, gates or {}
        self.data_dir, self.scratch, self.seed = data_dir, scratch, seed
        self.prepared = scratch / "prepared.onnx"
        try:
            quant_pre_process(str(model_in), str(self.prepared))
        except Exception as exc:  # symbolic shape inference and ORT raise assorted types
            raise PipelineError(f"quant_pre_process failed on {model_in}: {str(exc).splitlines()[0]}") from None
        self.graph = onnx_utils.load(self.prepared, check=False).graph
        # Without a checkpoint (the crossover's random-init models) runs are not scored: timings only.
        self.reference = None
        if model_dir is not None:
            self.eval_x, self.eval_y = test_batch(data_dir, cfg.eval_samples)
            self.reference = parity.torch_logits(model_dir, self.eval_x)
        self._runs = 0

    def quantize_within_budget(self) -> tuple[Path, dict]:
        """Quantize; while validate's gates fail, keep the next most sensitive op in fp32."""
        from pipeline.model import parity

        excluded = self.base_exclusions()
        path, metrics, failed = self.quantize(list(excluded))
        record: dict = {"fallback": []}
        limit = self.cfg.fallback.max_excluded if self.cfg.fallback and self.cfg.mode == "static" else 0
        if failed and limit:
            ranking = self.sensitivity_ranking(list(excluded))
            record["sensitivity"] = ranking
            for name, _ in ranking[:limit]:
                excluded[name] = f"kept fp32: {'; '.join(failed)}"
                path, metrics, failed = self.quantize(list(excluded))
                record["fallback"].append({"excluded": name, "failed_gates": failed,
                                           **{k: metrics[k] for k in ("accuracy", "agreement", "cosine_min")}})
                if not failed:
                    break
        record.update({
            "parity": {k: metrics[k] for k in ("samples", *parity.SUMMARY)},
            "gate_kind": gate_kind(self.cfg),
            "failed_gates": failed,
            "excluded_nodes": [{"node": n, "reason": r} for n, r in excluded.items()],
            "within_budget": not failed,
        })
        return path, record

    def base_exclusions(self) -> dict[str, str]:
        head = [self.head_node()] if self.cfg.keep_head_fp32 else []
        return {name: "classifier head kept fp32 (keep_head_fp32)" for name in head}

    def head_node(self) -> str:
        """The node that produces the graph's output (the logits)."""
        output = self.graph.output[0].name
        return next(n.name for n in self.graph.node if output in n.output)

    def candidates(self, excluded: list[str]) -> list[str]:
        return [n.name for n in self.graph.node if n.op_type in QUANTIZABLE_OPS and n.name not in excluded]

    def sensitivity_ranking(self, excluded: list[str]) -> list[tuple[str, float]]:
        """Each candidate op's mean |Δlogit| vs PyTorch when only it stays fp32: lower error = more sensitive."""
        scores = []
        for name in self.candidates(excluded):
            _, metrics, _ = self.quantize([*excluded, name])
            scores.append((name, metrics["mean_abs_logit"]))
        return sorted(scores, key=lambda item: item[1])

    def quantize(self, exclude: list[str]) -> tuple[Path, dict, list[str]]:
        """One quantization run: its path, its parity vs PyTorch, and the gates it fails."""
        from pipeline.model import parity

        self._runs += 1
        out = self.scratch / f"candidate-{self._runs}.onnx"
        try:
            self._quantize_static(out, exclude) if self.cfg.mode == "static" else self._quantize_dynamic(out, exclude)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise PipelineError(f"quantization failed: {str(exc).splitlines()[0][:300]}") from None
        if self.reference is None:
            return out, {}, []
        metrics = parity.score(out, self.reference, self.eval_x, self.eval_y)
        return out, metrics, parity.failures(parity.judge(self.name, gate_kind(self.cfg), metrics, self.gates))

    def _quantize_static(self, out: Path, exclude: list[str]) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        from pipeline.data.calibration import MnistCalibrationReader, calibration_images
        from pipeline.present.progress import progress_bar

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


def quantize_for_timing(cfg: QuantizeConfig, model_in: Path, data_dir: Path, out: Path, seed: int) -> Path:
    """One quantization with the preset's exclusions and no fallback, for models without a checkpoint (the
    benchmark's random-init crossover models): timings only, no parity."""
    import shutil

    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        quantizer = _Quantizer(cfg, Path(model_in), Path(data_dir), Path(scratch), seed)
        path, _, _ = quantizer.quantize(list(quantizer.base_exclusions()))
        shutil.copy(path, out)
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


def _describe(cfg: QuantizeConfig) -> dict:
    described = {
        "mode": cfg.mode, "format": cfg.format, "activation_type": cfg.activation_type,
        "weight_type": cfg.weight_type, "per_channel": cfg.per_channel, "reduce_range": cfg.reduce_range,
        "symmetric_activations": cfg.symmetric_activations, "keep_head_fp32": cfg.keep_head_fp32,
    }
    if cfg.calibration:
        described["calibration"] = {"method": cfg.calibration.method, "samples": cfg.calibration.samples}
    return described


STAGE = Stage(
    name="quantize", run=run, help="Quantize the simplified model to INT8: every configured variant, or one.",
    owns={"quantize": dict[str, QuantizeConfig]},
    config={"cfg": "quantize.${key}", "gates": "validate.gates", "seed": "seed"},
    inputs={"model_in": "${paths.variants}/simplified/model.onnx", "model_dir": "${paths.model}",
            "data_dir": "${paths.data}"},
    outputs={"out_dir": "${paths.variants}/${key}"}, foreach="quantize", item_arg="variant",
)
