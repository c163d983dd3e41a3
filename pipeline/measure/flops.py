"""FLOPs of an fp32 ONNX CNN and this machine's peak, so benchmarks can say how close to the hardware
each variant runs. Counts multiply-adds as 2 FLOPs in Conv, Gemm and MatMul (everything else is noise
for these models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.packaging.mobile import fix_batch


def flops_per_image(model_path: Path) -> int:
    """Shape-infer at batch 1 and count 2·MACs of each Conv / Gemm / MatMul."""
    import onnx
    from onnx import numpy_helper, shape_inference

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
