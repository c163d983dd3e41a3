"""FLOPs of an fp32 ONNX CNN and this machine's peak, so benchmarks can say how close to the hardware
each variant runs. Counts multiply-adds as 2 FLOPs in Conv, Gemm and MatMul (everything else is noise
for these models)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference


def flops_per_image(model_path: Path) -> int:
    """Shape-infer at batch 1 and count 2·MACs of each Conv / Gemm / MatMul."""
    from pipeline.mobile import fix_batch

    model = shape_inference.infer_shapes(fix_batch(onnx.load(str(model_path)), 1))
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "FusedConv") and node.input[1] in weights:  # FusedConv: ORT's Conv+Relu
            out = shapes.get(node.output[0])
            _, c_in_per_group, *kernel = weights[node.input[1]]
            total += 2 * c_in_per_group * int(np.prod(kernel)) * int(np.prod(out[1:])) if out else 0
        elif node.op_type in ("Gemm", "MatMul") and node.input[1] in weights:
            k, n = weights[node.input[1]][-2:]
            total += 2 * k * n
    return int(total)


def peak_gflops(threads: int) -> dict:
    """Theoretical fp32 peak for `threads` cores: GHz × fp32 lanes per FMA × 2 FMA units × 2 FLOPs. An
    estimate: the FMA-unit count, datapath width and sustained clock are assumptions, not readings."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)]
    ghz = (max(mhz) / 1000) if mhz else 2.0
    flags = set(re.findall(r"flags\s*:\s*(.*)", text)[0].split()) if "flags" in text else set()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    if "AuthenticAMD" in text and lanes == 16:
        lanes = 8  # Zen 4 executes AVX-512 on 256-bit datapaths: AVX2-width throughput
    model = re.findall(r"model name\s*:\s*(.*)", text)
    return {
        "gflops": threads * ghz * lanes * 2 * 2,
        "assumed": f"{threads} cores × {ghz:.2f} GHz × {lanes} fp32 lanes × 2 FMA units × 2 FLOPs",
        "cpu": model[0].strip() if model else "unknown",
        "isa": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "amx_int8", "amx_tile"}),
    }
