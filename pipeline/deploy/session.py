"""How a bundle's model is opened: the manifest's providers and session options, applied one way.

verify.py, infer.py and the packager (which measures the candidates with the same options it ships) all
call `open_session`, so the options chosen at packaging time are the options every consumer runs with.
Ships in every bundle beside verify.py and infer.py; needs only onnxruntime.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

if __package__:
    from .contents import BundleError
else:  # run as a script inside an extracted bundle, where its sibling modules sit beside it
    from contents import BundleError

SPINNING = "session.intra_op.allow_spinning"


class ProviderMissing(Exception):
    """Not verified here: the provider is not in this onnxruntime, or could not run the model (exit 3)."""


def runtime():
    """The onnxruntime module; without one, the bundle cannot be checked here (exit 3, saying what to install)."""
    try:
        import onnxruntime
    except ImportError:
        raise ProviderMissing("no onnxruntime in this Python: install the package the model card names (pip install "
                              "onnxruntime, onnxruntime-gpu or onnxruntime-openvino)") from None
    return onnxruntime
CPU_PROVIDER = "CPUExecutionProvider"
NVIDIA = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def providers_for(manifest: dict) -> list[tuple[str, dict]]:
    """The target's providers that this onnxruntime build has, in the target's order, CPU last."""
    ort = runtime()

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
    ort = runtime()

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
    ort = runtime()

    options = session_options(session_cfg)
    if providers[0][0] in NVIDIA and hasattr(ort, "preload_dlls"):
        # The CUDA and cuDNN libraries that onnxruntime-gpu's extras installed as wheels; where none are, the
        # session itself says what is missing.
        with contextlib.suppress(Exception):
            ort.preload_dlls()
    if strict and providers[0][0] != "CPUExecutionProvider":
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    return ort.InferenceSession(str(model_path), options, providers=providers)




def open_model(bundle: Path, manifest: dict, providers: list, *, strict: bool = False):
    """The bundle's model on `providers`; a model ONNX Runtime cannot load is the bundle's fault (exit 2), a
    provider whose libraries fail to load is not verified here (exit 3), named by ONNX Runtime's own log line
    (the library it could not load, the CUDA and cuDNN versions it requires), not by the error that followed."""
    with _runtime_log() as log:
        try:
            return open_session(bundle / manifest["model"]["file"], manifest["target"].get("session", {}),
                                providers, strict=strict)
        except Exception as exc:  # ORT's pybind errors
            failure = exc
    why = f"{manifest['model']['file']}: {str(failure).splitlines()[0] if str(failure) else type(failure).__name__}"
    if strict and providers[0][0] != CPU_PROVIDER:  # its libraries (CUDA, cuDNN, TensorRT, OpenVINO) failed to load
        cause = next((line.rsplit("] ", 1)[-1] for line in log if any(mark in line for mark in LOAD_FAILURES)), None)
        raise ProviderMissing(f"{providers[0][0]} could not run {manifest['model']['file']}: {cause or why}"
                              f"{_needs(manifest, providers[0][0])}") from None
    raise BundleError(f"onnxruntime cannot load {why}") from None


# What ONNX Runtime logs when an execution provider's libraries do not load: the cause a person needs.
LOAD_FAILURES = ("Failed to load library", "cannot open shared object", "Require cuDNN", "error while loading")


@contextlib.contextmanager
def _runtime_log() -> Iterator[list[str]]:
    """ONNX Runtime's own log (it writes to file descriptor 2) while a session opens, as lines; written on to
    stderr afterwards unless the session failed (then its cause is in the one line that says so)."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    failed = True
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            lines.extend(text.splitlines())
            if text and not failed:
                sys.stderr.write(text)


def open_on(bundle: Path, manifest: dict, wanted: str, allow_fallback: bool):
    """A session on `wanted` alone, ONNX Runtime's CPU fallback refused; with `allow_fallback`, on the target's
    providers this onnxruntime has, CPU last."""
    if allow_fallback:
        return open_model(bundle, manifest, providers_for(manifest))
    have = available_providers()
    if wanted not in have:
        raise ProviderMissing(f"{wanted} is not in this onnxruntime (it has {', '.join(have)})"
                              f"{_needs(manifest, wanted)}; --allow-fallback checks on what it has, and says not "
                              f"verified on {wanted}")
    opened = open_model(bundle, manifest, [(wanted, provider_options(manifest, wanted))], strict=True)
    if opened.get_providers()[0] != wanted:
        raise ProviderMissing(f"{wanted} did not run the model (onnxruntime fell back to {opened.get_providers()[0]})"
                              f"{_needs(manifest, wanted)}")
    return opened


def _needs(manifest: dict, provider: str) -> str:
    """What the manifest says the provider needs (package, system libraries); a package that is installed
    already is said to be, rather than advised again."""
    needs = manifest["target"].get("install", {}).get(provider) or {}
    package = needs.get("package") if isinstance(needs.get("package"), str) else None
    name = re.match(r"pip install '?([A-Za-z0-9_.-]+)", package or "")
    installed = _installed(name.group(1)) if name else None
    system = needs.get("system") if isinstance(needs.get("system"), str) else None
    if installed:
        return f"; {name.group(1)} {installed} is installed" + (f", and it needs {system}" if system else "")
    words = [w for w in (package, system) if w]
    return f"; it needs {' and '.join(words)}" if words else ""


def _installed(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def check_io(manifest: dict, session) -> None:
    """The model takes and returns what the manifest declares: names, element types and shapes (a named
    dimension matches any free one), and one class label per output class."""
    for kind, actual in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        declared = manifest["io"][kind]
        if len(declared) != len(actual):
            raise BundleError(f"manifest io.{kind} declares {len(declared)} but the model has {len(actual)}")
        for i, (entry, arg) in enumerate(zip(declared, actual, strict=True)):
            found = {"name": arg.name, "dtype": arg.type.removeprefix("tensor(").removesuffix(")"),
                     "shape": [d if isinstance(d, int) else "?" for d in arg.shape]}
            wanted = {**entry, "shape": [d if isinstance(d, int) else "?" for d in entry["shape"]]}
            for field in ("name", "dtype", "shape"):
                if wanted[field] != found[field]:
                    raise BundleError(f"manifest io.{kind}[{i}].{field} is {json.dumps(entry[field])} but the "
                                      f"model's is {json.dumps(found[field])}")
    classes = session.get_outputs()[0].shape[-1]
    if isinstance(classes, int) and len(manifest["class_labels"]) != classes:
        raise BundleError(f"manifest class_labels has {len(manifest['class_labels'])} labels but the model has "
                          f"{classes} classes")


def available_providers() -> list[str]:
    ort = runtime()

    return ort.get_available_providers()
