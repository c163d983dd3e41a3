"""The runtimes the benchmark puts side by side: what a user could run instead of our bundle, and the bundle.

Each factory returns a callable taking a float32 NCHW batch; building it (loading, compiling) happens here,
outside the timed calls. torch.compile's warm-up (the inductor compilation, once per input shape) is returned
separately, since a user pays it once per process. A bundle whose runtime lives in another environment (the
OpenVINO EP's venv) is opened there by a worker process instead (on_own_runtime). `assemble` builds every runner
bench's config asks for, each as the interleaving times it.
"""

from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path

import numpy as np

from pipeline.core.errors import PipelineError
from pipeline.deploy.session import open_session
from pipeline.measure.timing import InProcess, idle_after
from pipeline.model import checkpoint
from pipeline.runtimes import cells
from pipeline.runtimes.remote import RemoteRunner

EAGER = "torch_eager"
COMPILED = "torch_compile"


def shipped_row(target: str) -> str:
    """The bench row of the bundle a target ships (bench.shipped_target), timed as shipped."""
    return f"shipped_{target}"


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


def shipped_bundle(bundle: Path, manifest: dict):
    """The bundle exactly as a consumer opens it: its model file and its manifest's session options."""
    return onnxruntime(Path(bundle) / manifest["model"]["file"], manifest["target"]["session"])


def openvino(path: Path, threads: int) -> tuple[object, str]:
    """The OpenVINO runtime (CPU plugin) on an ONNX file, one compiled model per batch size it sees; (runner, the
    precision its heaviest layers compute in). With its defaults, as a user runs it: on a CPU with AVX512_BF16 or
    AMX it computes an fp32 model in bf16, and a QDQ model's quantized layers in int8."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    options = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    precision = compute_precision(core.compile_model(model, "CPU", options))
    compiled: dict[tuple, object] = {}

    def run(x: np.ndarray):
        if x.shape not in compiled:
            model.reshape({model.inputs[0].any_name: list(x.shape)})
            compiled[x.shape] = core.compile_model(model, "CPU", options).create_infer_request()
        return compiled[x.shape].infer({0: x})

    return run, precision


def compute_precision(compiled) -> str:
    """What an OpenVINO compiled model's convolutions and matrix products run in, from its runtime model: int8
    where any is quantized (the highest-rate precision present), else bf16, fp16 or fp32."""
    found = {op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ops()
             if op.get_rt_info()["layerType"].astype(str) in ("Convolution", "GroupConvolution", "FullyConnected",
                                                             "MatMul")}
    for precision, names in (("int8", {"u8", "i8"}), ("bf16", {"bf16"}), ("fp16", {"f16"})):
        if found & names:
            return precision
    return "fp32"


def on_own_runtime(bundle: Path, manifest: dict | None, baseline: tuple[str, Path], one: np.ndarray,
                   many: np.ndarray, workers: contextlib.ExitStack) -> dict:
    """The bundle as shipped, opened by a worker in its runtime's environment, and the fp32 baseline there
    with the same options (INT8 vs fp32 on that runtime): {row name: (runner, what it is)}; none where the
    bundle is missing (no manifest) or its runtime cannot be set up here (timer_for warns)."""
    if manifest is None:
        return {}
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


def inputs(batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch-1 and batch-N inputs every runner is timed on (fixed seeds: the same in every process)."""
    one = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    many = np.random.default_rng(1).standard_normal((batch, 1, 28, 28)).astype(np.float32)
    return one, many


def assemble(cfg, model_dir: Path, variants: dict[str, Path], deploy_dir: Path, manifests: dict[str, dict],
             workers: contextlib.ExitStack) -> tuple[dict, dict]:
    """Every runner bench's config (`cfg`) asks for (timing.InProcess, or a RemoteRunner whose worker `workers`
    closes), and what each is: runtime, variant, options (and how to probe its memory). `manifests`: each
    bundle's under deploy_dir, by its folder's name."""
    model, _ = checkpoint.load(model_dir)  # one load serves eager and torch.compile
    shapes = [(1, 1, 28, 28), (cfg.throughput_batch, 1, 28, 28)]
    fns = {EAGER: torch_eager(model)}
    info = {EAGER: {"runtime": "PyTorch eager", "variant": EAGER, "path": model_dir / "model.pt", "rss": "torch"}}
    if cfg.peers.torch_compile:
        fns[COMPILED], warmup = torch_compiled(model, shapes)
        info[COMPILED] = {"runtime": "torch.compile (inductor)", "variant": EAGER, "warmup_s": round(warmup, 1)}
    manifest = manifests.get(cfg.shipped_target)
    if manifest is not None:
        shipped, bundle = shipped_row(cfg.shipped_target), deploy_dir / cfg.shipped_target
        fns[shipped] = shipped_bundle(bundle, manifest)
        info[shipped] = {"runtime": "ONNX Runtime CPU EP", "variant": manifest["model"]["variant"],
                         "session": manifest["target"]["session"], "path": bundle / manifest["model"]["file"]}
    for name, path in variants.items():
        fns[name] = onnxruntime(path, cfg.session)
        info[name] = {"runtime": "ONNX Runtime CPU EP", "variant": name, "session": cfg.session, "path": path,
                      "rss": "onnx"}
    if cfg.peers.openvino:
        pruning = [cfg.pruning.pruned, cfg.pruning.unpruned] if cfg.pruning else []
        for name in dict.fromkeys([cfg.baseline, cfg.int8_artifact, *pruning]):
            if name in variants:
                fns[f"openvino_{name}"], precision = openvino(variants[name], cfg.threads)
                info[f"openvino_{name}"] = {"runtime": "OpenVINO runtime (CPU plugin)", "variant": name,
                                            "path": variants[name], "precision": precision}
    one, many = inputs(cfg.throughput_batch)
    timed = {name: InProcess(functools.partial(fn, one), functools.partial(fn, many), cfg.throughput_batch,
                             idle_after(info[name].get("session"))) for name, fn in fns.items()}
    for target in cfg.runtime_targets:
        on_own = on_own_runtime(deploy_dir / target, manifests.get(target), (cfg.baseline, variants[cfg.baseline]),
                                one, many, workers)
        for name, (runner, about) in on_own.items():
            timed[name], info[name] = runner, about
    return timed, info
