"""How a bundle's model is opened: the manifest's providers and session options, applied one way.

verify.py, infer.py and the packager (which measures the candidates with the same options it ships) all
call `open_session`, so the options chosen at packaging time are the options every consumer runs with.
Ships in every bundle beside verify.py and infer.py; needs only onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

SPINNING = "session.intra_op.allow_spinning"


def providers_for(manifest: dict) -> list[tuple[str, dict]]:
    """The target's providers that this onnxruntime build has, in the target's order, CPU last."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    names = manifest["target"]["providers"]
    options = manifest["target"].get("provider_options") or [{} for _ in names]
    chosen = [(n, dict(o)) for n, o in zip(names, options, strict=False) if n in available]
    if not any(n == "CPUExecutionProvider" for n, _ in chosen):
        chosen.append(("CPUExecutionProvider", {}))
    return chosen


def provider_options(manifest: dict, provider: str) -> dict:
    """The manifest's options for one of its target's providers ({} for one it does not list)."""
    names = manifest["target"]["providers"]
    options = manifest["target"].get("provider_options") or [{} for _ in names]
    return next((dict(o) for n, o in zip(names, options, strict=False) if n == provider), {})


def session_options(session_cfg: dict):
    """ORT SessionOptions from a manifest's `target.session` block (graph level applied at load)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(session_cfg.get("intra_op_num_threads", 0))
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, session_cfg.get("graph_optimization_level", "ORT_ENABLE_ALL"))
    options.execution_mode = getattr(ort.ExecutionMode, session_cfg.get("execution_mode", "ORT_SEQUENTIAL"))
    options.log_severity_level = 3
    for key, value in session_cfg.get("config_entries", {}).items():
        options.add_session_config_entry(key, str(value))
    return options


def open_session(model_path: Path, session_cfg: dict, providers: list[tuple[str, dict]], *, strict: bool = False):
    """`strict`: the first provider alone, with ONNX Runtime's silent fallback of its nodes to the CPU refused."""
    import onnxruntime as ort

    options = session_options(session_cfg)
    if strict and providers[0][0] != "CPUExecutionProvider":
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    return ort.InferenceSession(str(model_path), options, providers=providers)
