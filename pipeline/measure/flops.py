"""The arithmetic one image costs in an ONNX CNN, so benchmarks can say how close to the hardware each runner
runs (against this machine's measured peaks, measure/peak.py).

Counts multiply-adds as 2 operations in Conv, Gemm and MatMul (everything else is noise for these models), and
only those on real inputs: a kernel tap that falls on zero padding adds nothing, and ONNX Runtime's NCHWc
convolutions skip it (MLAS narrows the kernel at padded rows and columns). Counting padded taps too would credit
a runner with arithmetic it never did, and put it above the machine's peak: for the 28×28 MNIST CNN they are
~13 % of the nominal count. An implementation that does compute them (im2col + GEMM) does more work than counted,
so its share of the peak is a lower bound, never an overstatement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.model.onnx_utils import fix_batch


def flops_per_image(model_path: Path) -> int:
    """Shape-infer at batch 1 and count 2·MACs on real inputs of each Conv / Gemm / MatMul."""
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    model = shape_inference.infer_shapes(fix_batch(onnx.load(str(model_path)), 1))
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "FusedConv") and node.input[1] in weights:  # FusedConv: ORT's Conv+Relu
            out, inp = shapes.get(node.output[0]), shapes.get(node.input[0])
            if not out or not inp:
                continue
            c_out, c_in_per_group, *kernel = weights[node.input[1]]
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            taps = in_bounds_taps(inp[2:], out[2:], kernel, attrs)
            total += 2 * c_in_per_group * c_out * taps
        elif node.op_type in ("Gemm", "MatMul") and node.input[1] in weights:
            k, n = weights[node.input[1]][-2:]
            total += 2 * k * n
    return int(total)


def in_bounds_taps(inputs: list[int], outputs: list[int], kernel: list[int], attrs: dict) -> int:
    """Σ over output positions of the kernel taps that land inside the input (not on padding): per spatial
    dimension the count of (output, tap) pairs in bounds, multiplied across dimensions (bounds are per axis)."""
    dims = len(kernel)
    strides = attrs.get("strides") or [1] * dims
    dilations = attrs.get("dilations") or [1] * dims
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    pads = attrs.get("pads") or [0] * (2 * dims)
    total = 1
    for axis in range(dims):
        size, out, k, s, d = inputs[axis], outputs[axis], kernel[axis], strides[axis], dilations[axis]
        begin = pads[axis]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            needed = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            begin = needed // 2 if auto_pad == "SAME_UPPER" else needed - needed // 2
        elif auto_pad == "VALID":
            begin = 0
        positions = np.arange(out)[:, None] * s - begin + np.arange(k)[None, :] * d
        total *= int(((positions >= 0) & (positions < size)).sum())
    return total
