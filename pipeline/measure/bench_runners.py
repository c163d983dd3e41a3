"""The runtimes the benchmark puts side by side: what a user could run instead of our bundle, and the bundle.

Each factory returns a callable taking a float32 NCHW batch; building it (loading, compiling) happens here,
outside the timed calls. torch.compile's warm-up (the inductor compilation, once per input shape) is returned
separately, since a user pays it once per process. A bundle whose runtime lives in another environment (the
OpenVINO EP's venv) is opened there by a worker process instead (on_own_runtime).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np

from pipeline.core.errors import PipelineError
from pipeline.deploy.session import open_session
from pipeline.runtimes import cells
from pipeline.runtimes.remote import RemoteRunner


def torch_eager(model):
    """The PyTorch module as loaded (eval mode), under no_grad."""
    import torch

    def run(x: np.ndarray):
        with torch.no_grad():
            return model(torch.from_numpy(x))

    return run


def torch_compiled(model, shapes: list[tuple[int, ...]]) -> tuple[object, float]:
    """torch.compile (inductor), compiled for every shape the benchmark uses; (runner, warm-up seconds)."""
    import torch

    compiled = torch.compile(model, backend="inductor", dynamic=False)
    started = time.perf_counter()
    with torch.no_grad():
        for shape in shapes:
            compiled(torch.zeros(shape))
    warmup = time.perf_counter() - started

    def run(x: np.ndarray):
        with torch.no_grad():
            return compiled(torch.from_numpy(x))

    return run, warmup


def onnxruntime(path: Path, session: dict):
    """ONNX Runtime's CPU EP with the given session options (as a bundle's manifest states them)."""
    opened = open_session(path, session, [("CPUExecutionProvider", {})])
    name = opened.get_inputs()[0].name
    return lambda x: opened.run(None, {name: x})


def shipped_bundle(bundle: Path):
    """The bundle exactly as a consumer opens it: its model file and its manifest's session options."""
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    return onnxruntime(Path(bundle) / manifest["model"]["file"], manifest["target"]["session"]), manifest


def openvino(path: Path, threads: int):
    """The OpenVINO runtime (CPU plugin) on an ONNX file; one compiled model per batch size it sees."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    compiled: dict[tuple, object] = {}

    def run(x: np.ndarray):
        if x.shape not in compiled:
            model.reshape({model.inputs[0].any_name: list(x.shape)})
            compiled[x.shape] = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                  "PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
        return compiled[x.shape].infer({0: x})

    return run


def on_own_runtime(bundle: Path, baseline: tuple[str, Path], one: np.ndarray, many: np.ndarray,
                    workers: contextlib.ExitStack) -> dict:
    """The bundle as shipped, opened by a worker in its runtime's environment, and the fp32 baseline there
    with the same options (INT8 vs fp32 on that runtime): {row name: (runner, what it is)}; none where the
    bundle is missing or its runtime cannot be set up here (timer_for warns)."""
    if not (bundle / "manifest.json").is_file():
        return {}
    manifest = json.loads((bundle / "manifest.json").read_text())
    target = manifest["target"]
    provider, options = target["providers"][0], (target.get("provider_options") or [{}])[0]
    verified = [r["runtime"] for r in manifest["verified_on"] if r.get("runtime") and r["provider"] == provider]
    runtime = cells.timer_for(provider, verified)
    if runtime is None or runtime == "onnxruntime":  # none can run here, or it needs no worker
        return {}
    shipped = (f"shipped_{target['name']}", manifest["model"]["variant"], bundle / manifest["model"]["file"])
    found = {}
    for name, variant, path in (shipped, (f"{target['name']}_ep_{baseline[0]}", *baseline)):
        runner = workers.enter_context(RemoteRunner(runtime, path, target["session"], [(provider, options)], one, many))
        if runner.providers[0] != provider:
            raise PipelineError(f"{provider} did not take {variant} in {runtime} (it ran on {runner.providers[0]})")
        found[name] = (runner, {"runtime": f"ONNX Runtime {provider}", "environment": runtime, "variant": variant,
                                "session": target["session"], "provider_options": options, "path": path})
    return found


def gemm_peak_gflops(threads: int, size: int = 1024, repeats: int = 10) -> dict:
    """A measured fp32 peak: the best of `repeats` square GEMMs through torch (oneDNN/MKL) on `threads`
    threads. What the machine really sustains, not a clock × lanes guess."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return {"gflops": 2 * size**3 / best / 1e9, "probe": f"best of {repeats} fp32 GEMMs {size}×{size}, "
            f"{threads} threads (torch.mm)"}
