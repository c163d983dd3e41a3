"""This machine's peak arithmetic rate per precision, measured with the fastest GEMMs available here, so the
benchmark can say what share of the hardware each runner uses, against the peak of the precision it computes in.

- fp32: ONNX Runtime's MatMul (MLAS SGEMM) and torch.mm (oneDNN/MKL, which trails MLAS on AMD CPUs).
- int8: ONNX Runtime's MatMulInteger with u8 activations × s8 weights, the pair ORT's QDQ INT8 models run (MLAS
  QGEMM, with VNNI or AMX kernels where the CPU has them: the machine's recorded ISA flags say which).
- bf16: torch.mm on bfloat16 (oneDNN), only when a runner computes in bf16, as the OpenVINO runtime does by default
  on CPUs with AVX512_BF16 or AMX: there its rate is about twice fp32's, so an fp32 peak would be the wrong yardstick.

How each GEMM runs, and why (measured on the 2-core machine this was written on): square sizes 1024, 1536 and
2048, since a power-of-two size alone loses up to 10 % to cache-set aliasing; B a constant initializer, as a
model's weights are, which ORT pre-packs (a few % faster than B as an input); intra-op threads = the bench's
threads; spinning off, which leaves the GEMM's rate as it is and the next runner no spinning tail to wait out. A
one-node graph has nothing for the graph optimizer to do. A probe's turn is the best of CALLS calls: contention only
lowers a GEMM's rate, so the best call is what the hardware sustains. (The probe this replaces, one torch.mm size
timed once after the rounds, was slower than MLAS and open to whatever load hit that moment.)

The probes take their turns in bench's interleaved throughput rounds (timing.interleaved), so a round's peak (its
best probe) and a runner's rate in that round come from the same stretch of time: a runner's share of the peak is
the ratio of the two paired by round, with its bootstrap interval (timing.ratio_interval).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.measure.timing import ratio_interval

SIZES = (1024, 1536, 2048)
CALLS = 3
UNITS = {"fp32": "GFLOP/s", "int8": "GOP/s", "bf16": "GFLOP/s"}
ORT_FP32 = "onnxruntime MatMul (MLAS SGEMM)"
ORT_INT8 = "onnxruntime MatMulInteger u8×s8 (MLAS QGEMM)"


@dataclass(frozen=True)
class Probe:
    """One square GEMM on one backend; a turn gives its rate in G(FL)OP/s (2 operations per multiply-add)."""

    precision: str
    backend: str
    size: int
    call: Callable[[], object]

    def turn(self) -> float:
        best = float("inf")
        for _ in range(CALLS):
            started = time.perf_counter()
            self.call()
            best = min(best, time.perf_counter() - started)
        return 2 * self.size**3 / best / 1e9


def probes(threads: int, precisions: set[str]) -> dict[str, Probe]:
    """The fp32 probes (ORT and torch at every size), plus int8 and bf16 ones where asked for, each warmed up."""
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    found = {}
    for size in SIZES:
        a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
        found[f"peak_fp32_onnxruntime_{size}"] = Probe("fp32", ORT_FP32, size, _onnxruntime("MatMul", a, b, threads))
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        found[f"peak_fp32_torch_{size}"] = Probe("fp32", "torch.mm", size, functools.partial(torch.mm, ta, tb))
        if "bf16" in precisions:
            found[f"peak_bf16_torch_{size}"] = Probe("bf16", "torch.mm (bfloat16)", size,
                                                     functools.partial(torch.mm, ta.bfloat16(), tb.bfloat16()))
        if "int8" in precisions:
            a8 = rng.integers(0, 256, (size, size), dtype=np.uint8)
            b8 = rng.integers(-128, 128, (size, size), dtype=np.int8)
            found[f"peak_int8_onnxruntime_{size}"] = Probe("int8", ORT_INT8, size,
                                                           _onnxruntime("MatMulInteger", a8, b8, threads))
    for probe in found.values():
        probe.call()
        probe.call()
    return found


def alongside(turns: dict[str, Callable[[], float]], found: dict[str, Probe]) -> dict[str, Callable[[], float]]:
    """The runners' turns with the probes' spread evenly among them (r p r r p …), so that every stretch of a
    round has a probe near it and a burst of load cannot fall on all of a round's probes and none of its runners."""
    spots = [(i / len(turns), 0, name) for i, name in enumerate(turns)]
    spots += [(j / len(found), 1, name) for j, name in enumerate(found)]
    return {name: turns[name] if kind == 0 else found[name].turn for _, kind, name in sorted(spots)}


def _onnxruntime(op: str, a: np.ndarray, b: np.ndarray, threads: int) -> Callable[[], object]:
    """A one-node ONNX model, Y = op(A, B) with B a constant, in an ORT CPU session on `threads` threads."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    out_type = TensorProto.INT32 if op == "MatMulInteger" else TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["Y"])], "gemm",
        [helper.make_tensor_value_info("A", helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))],
        [helper.make_tensor_value_info("Y", out_type, [a.shape[0], b.shape[1]])],
        initializer=[numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return functools.partial(session.run, None, {"A": a})


def peaks(rates: dict[str, list[float]], found: dict[str, Probe]) -> dict:
    """Per precision: each round's peak (its best probe), their median (`rate`, what shares are taken against)
    and the best round, the backend and size with the highest median, and every probe's median."""
    result = {}
    for precision in [p for p in UNITS if any(probe.precision == p for probe in found.values())]:
        names = [name for name, probe in found.items() if probe.precision == precision]
        per_round = [max(rates[name][i] for name in names) for i in range(len(rates[names[0]]))]
        top = max(names, key=lambda name: np.median(rates[name]))
        result[precision] = {
            "rate": float(np.median(per_round)), "best": max(per_round), "unit": UNITS[precision],
            "backend": found[top].backend, "size": found[top].size, "per_round": per_round,
            "probes": {name: {"backend": found[name].backend, "size": found[name].size,
                              "median": float(np.median(rates[name]))} for name in names}}
    return result


def share(images_per_s: list[float], ops_per_image: float, peak: dict | None, confidence: float) -> dict:
    """A runner's rate over the peak of its precision, paired by round: {share_of_peak, share_of_peak_ci}, or
    no share when no peak of that precision was measured."""
    if peak is None:
        return {"share_of_peak": None, "share_of_peak_ci": None}
    achieved = [rate * ops_per_image / 1e9 for rate in images_per_s]
    ratio = ratio_interval(achieved, peak["per_round"], confidence=confidence)
    return {"share_of_peak": ratio["ratio"], "share_of_peak_ci": [ratio["low"], ratio["high"]]}
