"""Where does INT8 start to pay off? Export CNNs of growing size, quantize each with the x86 INT8 preset,
and time INT8 against fp32 on the same inputs.

Weights are random-init (timings do not depend on their values); calibration uses real MNIST images so the
quantization ranges are realistic. Accuracy is not measured here: see validate for the trained model.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np


def sweep(cfg, *, quantize_cfg, data_dir: Path, seed: int) -> list[dict]:
    import torch

    from pipeline import checkpoint, onnx_utils
    from pipeline.stages import export, quantize
    from pipeline.timing import interleaved_latency_ms, percentiles, throughput

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
            onnx_utils.save(export.export_module(module, opset=18, dynamic_batch=True), fp32)
            int8 = quantize.quantize_for_timing(qcfg, fp32, data_dir, Path(scratch) / f"q{i}.onnx", seed)
            sessions = {"fp32": onnx_utils.session(fp32, threads=cfg.threads),
                        "int8": onnx_utils.session(int8, threads=cfg.threads)}
            runs = {k: functools.partial(s.run, None, {"input": one}) for k, s in sessions.items()}
            latency = interleaved_latency_ms(runs, rounds=5, per_round=40, warmup=20)
            rate = {k: float(np.median([throughput(functools.partial(s.run, None, {"input": many}),
                                                   batch=len(many), runs=3, warmup=1) for _ in range(3)]))
                    for k, s in sessions.items()}
            results.append({
                "model": spec["_target_"].rsplit(".", 1)[-1] + (f"(width={spec['width']})" if "width" in spec else ""),
                "parameters": sum(p.numel() for p in module.parameters()),
                "fp32_images_per_s": rate["fp32"], "int8_images_per_s": rate["int8"],
                "throughput_ratio": rate["int8"] / rate["fp32"],
                "latency_ratio": percentiles(latency["fp32"])["p50"] / percentiles(latency["int8"])["p50"],
                "size_ratio": onnx_utils.model_bytes(int8) / onnx_utils.model_bytes(fp32),
            })
    return results
