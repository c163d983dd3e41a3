"""An ONNX Runtime model package (ORT 1.32's own format and API) of the shipped bundles' models.

One component, one variant per bundle that ONNX Runtime loads (format onnx or ort), written with
`onnxruntime.ModelPackage`: the variant's folder holds the bundle's own model file (the same bytes), and its
`ep`, `device` and `executor_info["ort"]` (model file, the target's session config entries and its first
provider's options) say how ORT opens it. `ModelPackageContext(root).select_component(name, options)` then lets
ORT pick the variant for the machine it runs on: the first variant whose EP and device match the first execution
provider the session options ask for, ties to the first declared (the order of conf/target/).

ORT's manifest has no field for the graph optimization level or the thread count; each variant's
`additional_metadata` records the target's whole session block, the bundle it came from and the model's sha256.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.core.errors import PipelineError
from pipeline.core.io import sha256_file

MANIFEST = "manifest.json"
# The hardware an execution provider runs on, as ORT's model package names it (`device`). OpenVINO's is its
# provider option `device_type` (CPU, GPU, NPU).
EP_DEVICES = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "gpu", "TensorrtExecutionProvider": "gpu",
              "DmlExecutionProvider": "gpu", "QNNExecutionProvider": "npu", "NnapiExecutionProvider": "npu",
              "XnnpackExecutionProvider": "cpu", "CoreMLExecutionProvider": "npu"}
CPU = "CPUExecutionProvider"
ORT_FORMATS = ("onnx", "ort")


def device_of(provider: str, options: dict) -> str | None:
    if provider == "OpenVINOExecutionProvider":
        return str(options.get("device_type", "CPU")).split(".")[0].lower()
    return EP_DEVICES.get(provider)


def variants(bundles: dict[str, dict]) -> list[dict]:
    """The variants of the bundles (target -> manifest, in the targets' order) that ORT loads: each bundle's model
    on its first provider, named after the target; an .ort bundle (ORT Mobile) also on the CPU EP, which its
    target lists as the provider of any phone without NNAPI or XNNPACK (`<target>-cpu`)."""
    found = []
    for target, manifest in bundles.items():
        block = manifest["target"]
        if block.get("format") not in ORT_FORMATS:
            continue
        wanted = [block["providers"][0]] + ([CPU] if block["format"] == "ort" and CPU in block["providers"][1:] else [])
        for provider in wanted:
            entry = _variant(target if provider == wanted[0] else f"{target}-cpu", target, provider, manifest)
            if entry is not None:
                found.append(entry)
    return found


def _variant(name: str, target: str, provider: str, manifest: dict) -> dict | None:
    block = manifest["target"]
    index = block["providers"].index(provider)
    options = {k: str(v) for k, v in ((block.get("provider_options") or [])[index:index + 1] or [{}])[0].items()}
    device = device_of(provider, options)
    if device is None:
        return None
    return {"name": name, "bundle": target, "ep": provider, "device": device, "model_file": manifest["model"]["file"],
            "model_sha256": manifest["files"][manifest["model"]["file"]],
            "session_options": {k: str(v) for k, v in block["session"].get("config_entries", {}).items()},
            "provider_options": options, "session": block["session"]}


def write(root: Path, component: str, version: str, description: str, entries: list[dict],
          deploy_dir: Path) -> None:
    """The package at `root` (absent or empty): ORT's manifest.json and <component>/<variant>/<model file>."""
    import onnxruntime as ort

    package = ort.ModelPackage()
    package.set_metadata(name=component, version=version, description=description)
    package.commit(str(root))  # an empty package: gives the package its root, where variant folders must exist
    package.set_component_inline(component, json.dumps({"variants": {}}))
    for entry in entries:
        folder = root / component / entry["name"]
        folder.mkdir(parents=True)
        shutil.copyfile(deploy_dir / entry["bundle"] / entry["model_file"], folder / entry["model_file"])
        metadata = {"bundle": entry["bundle"], "model_sha256": entry["model_sha256"], "session": entry["session"]}
        package.set_variant(component, entry["name"], json.dumps(
            {"variant_directory": f"{component}/{entry['name']}", "ep": entry["ep"], "device": entry["device"],
             "additional_metadata": metadata}, sort_keys=True))
        info = {"model_file": entry["model_file"], "session_options": entry["session_options"],
                "provider_options": entry["provider_options"]}
        package.set_variant_executor_info_inline(component, entry["name"], "ort", json.dumps(info, sort_keys=True))
    package.commit()
    package.close()


def check_same_models(root: Path, component: str, bundles: dict[str, dict]) -> None:
    """Every variant's model file is byte for byte its bundle's (the manifest's sha256), or PipelineError."""
    manifest = json.loads((root / MANIFEST).read_text())
    for name, declared in manifest["components"][component]["variants"].items():
        model = root / declared["variant_directory"] / declared["executor_info"]["ort"]["model_file"]
        bundle = declared["additional_metadata"]["bundle"]
        expected = bundles[bundle]["files"][bundles[bundle]["model"]["file"]]
        if sha256_file(model) != expected:
            raise PipelineError(f"the model package's {name} variant is not the {bundle} bundle's model")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.split("] ")[-1][:300]
