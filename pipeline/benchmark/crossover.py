"""Where does INT8 start to pay off? Export CNNs of growing size, quantize each with the x86 INT8 preset,
and time INT8 against fp32 on the same inputs (interleaved rounds, ratios with bootstrap intervals).

Weights are random-init (timings do not depend on their values); calibration uses real MNIST images so the
quantization ranges are realistic. Accuracy is not measured here: see validate for the trained model.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import PositiveInt

from pipeline.benchmark import runners
from pipeline.core.stage import Schema
from pipeline.measure.timing import idle_after, interleaved_rounds, interleaved_throughput, ratio_interval
from pipeline.model import checkpoint, onnx_utils
from pipeline.model.quantization import quantize_plain
from pipeline.model.torch_export import export_module


class CrossoverConfig(Schema):
    """bench.crossover: the models, the quantize preset that makes their INT8 twins, and how long each is timed
    (rounds and confidence are bench's own)."""
    models: list[dict[str, Any]]
    quantize: str
    calibration_samples: PositiveInt
    latency_per_round: PositiveInt = 20
    warmup: PositiveInt = 20


@dataclass(frozen=True)
class Timing:
    """What the crossover shares with the rest of bench: session options, batch, rounds, confidence."""
    session: dict
    batch: int
    rounds: int
    confidence: float


def sweep(cfg: CrossoverConfig, timing: Timing, *, quantize_cfg, opset: int, data_dir: Path, seed: int) -> list[dict]:
    """Each model exported at the pipeline's opset (export.opset) and quantized by `quantize_cfg`, timed INT8
    against fp32."""
    import torch

    # Both models spin while they run but stop when Run returns (same throughput; batch-1 latency pays the
    # wake-up alike): the next turn needs no 120 ms pause for parked threads, which made this sweep 16 s longer.
    session = {**timing.session, "config_entries": {**timing.session.get("config_entries", {}),
                                                    "session.force_spinning_stop": "1"}}
    qcfg = quantize_cfg.model_copy(update={"calibration": quantize_cfg.calibration.model_copy(
        update={"samples": cfg.calibration_samples})})
    many = np.random.default_rng(1).standard_normal((timing.batch, 1, 28, 28)).astype(np.float32)
    one = many[:1]
    results = []
    with tempfile.TemporaryDirectory(prefix="crossover-") as scratch:
        for i, spec in enumerate(cfg.models):
            torch.manual_seed(seed)
            module = checkpoint.build(dict(spec)).eval()
            fp32 = Path(scratch) / f"m{i}.onnx"
            onnx_utils.save(export_module(module, opset=opset, dynamic_batch=True), fp32)
            int8 = quantize_plain(qcfg, fp32, data_dir, Path(scratch) / f"q{i}.onnx", seed)
            fns = {"fp32": runners.onnxruntime(fp32, session), "int8": runners.onnxruntime(int8, session)}
            idle_s = dict.fromkeys(fns, idle_after(session))
            latency = interleaved_rounds({k: functools.partial(f, one) for k, f in fns.items()},
                                         rounds=timing.rounds, per_round=cfg.latency_per_round, warmup=cfg.warmup,
                                         idle_s=idle_s)
            rates = interleaved_throughput({k: functools.partial(f, many) for k, f in fns.items()},
                                           batch=len(many), rounds=timing.rounds, per_round=1, idle_s=idle_s)
            throughput = ratio_interval(rates["int8"], rates["fp32"], confidence=timing.confidence)
            speedup = ratio_interval(latency["fp32"], latency["int8"], confidence=timing.confidence)
            results.append({
                "model": spec["_target_"].rsplit(".", 1)[-1] + (f"(width={spec['width']})" if "width" in spec else ""),
                "parameters": sum(p.numel() for p in module.parameters()),
                "fp32_images_per_s": float(np.median(rates["fp32"])),
                "int8_images_per_s": float(np.median(rates["int8"])),
                "throughput_ratio": throughput["ratio"], "throughput_ratio_ci": [throughput["low"], throughput["high"]],
                "latency_ratio": speedup["ratio"], "latency_ratio_ci": [speedup["low"], speedup["high"]],
                "size_ratio": onnx_utils.model_bytes(int8) / onnx_utils.model_bytes(fp32),
            })
    return results
