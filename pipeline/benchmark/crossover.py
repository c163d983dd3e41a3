"""Where does INT8 start to pay off? Export CNNs of growing size, quantize each with the x86 INT8 preset,
and time INT8 against fp32 on the same inputs (interleaved rounds, ratios with bootstrap intervals).

Weights are random-init (timings do not depend on their values); calibration uses real MNIST images so the
quantization ranges are realistic. Accuracy is not measured here: see validate for the trained model.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from pipeline.benchmark import runners
from pipeline.measure.timing import idle_after, interleaved_rounds, interleaved_throughput, ratio_interval
from pipeline.model import checkpoint, onnx_utils
from pipeline.model.quantization import quantize_plain
from pipeline.model.torch_export import export_module


def sweep(cfg, *, quantize_cfg, data_dir: Path, seed: int) -> list[dict]:
    import torch

    # Both models spin while they run but stop when Run returns (same throughput; batch-1 latency pays the
    # wake-up alike): the next turn needs no 120 ms pause for parked threads, which made this sweep 16 s longer.
    session = {**cfg.session, "config_entries": {**cfg.session.get("config_entries", {}),
                                                 "session.force_spinning_stop": "1"}}
    qcfg = quantize_cfg.model_copy(update={"calibration": quantize_cfg.calibration.model_copy(
        update={"samples": cfg.crossover.calibration_samples})})
    many = np.random.default_rng(1).standard_normal((cfg.throughput_batch, 1, 28, 28)).astype(np.float32)
    one = many[:1]
    results = []
    with tempfile.TemporaryDirectory(prefix="crossover-") as scratch:
        for i, spec in enumerate(cfg.crossover.models):
            torch.manual_seed(seed)
            module = checkpoint.build(dict(spec)).eval()
            fp32 = Path(scratch) / f"m{i}.onnx"
            onnx_utils.save(export_module(module, opset=18, dynamic_batch=True), fp32)
            int8 = quantize_plain(qcfg, fp32, data_dir, Path(scratch) / f"q{i}.onnx", seed)
            fns = {"fp32": runners.onnxruntime(fp32, session), "int8": runners.onnxruntime(int8, session)}
            idle_s = dict.fromkeys(fns, idle_after(session))
            latency = interleaved_rounds({k: functools.partial(f, one) for k, f in fns.items()}, rounds=cfg.rounds,
                                         per_round=20, warmup=20, idle_s=idle_s)
            rates = interleaved_throughput({k: functools.partial(f, many) for k, f in fns.items()},
                                           batch=len(many), rounds=cfg.rounds, per_round=1, idle_s=idle_s)
            throughput = ratio_interval(rates["int8"], rates["fp32"], confidence=cfg.confidence)
            speedup = ratio_interval(latency["fp32"], latency["int8"], confidence=cfg.confidence)
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
