"""Open one variant of an ONNX Runtime model package the way a consumer does, and run its bundle's golden inputs.

    python package_probe.py PACKAGE_ROOT COMPONENT VARIANT BUNDLE_DIR
    python package_probe.py --select PACKAGE_ROOT COMPONENT

Prints one JSON line: the variant ORT selected, the providers its session runs on, the model's input and output
names, and the golden results (samples, max |Δ|, top-1 agreement); with --select, the variant ORT selects here
(every plugin EP of this environment registered) with default session options and under each device policy.
Run by the model_package stage with the interpreter of an environment that has the variant's execution
provider: this one for the CPU EP, the `onnxruntime-ep-openvino` environment for OpenVINO's plugin EP (ORT 1.32
loads it as a library). Standalone: onnxruntime and numpy, and the bundle's own contents.py for its tensors.

ORT selects a variant by provider, not by name, so the probe opens a copy of the package that declares this
variant alone (its folder and its manifest entry, unchanged), asking for the variant's provider first.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

# Execution providers that ORT 1.32 loads from a plugin package rather than having built in.
PLUGINS = {"OpenVINOExecutionProvider": "onnxruntime_ep_openvino"}


def plugin_devices(ep: str) -> list:
    """Register the plugin library of `ep` (if it is one) and return its devices here."""
    if ep not in PLUGINS:
        return []
    plugin = importlib.import_module(PLUGINS[ep])
    ort.register_execution_provider_library(plugin.get_ep_name(), plugin.get_library_path())
    return [device for device in ort.get_ep_devices() if device.ep_name == ep]


def open_variant(root: Path, component: str, variant: str, scratch: Path):
    manifest = json.loads((root / "manifest.json").read_text())
    declared = manifest["components"][component]["variants"][variant]
    shutil.copytree(root / declared["variant_directory"], scratch / declared["variant_directory"])
    only = {**manifest, "components": {component: {"variants": {variant: declared}}}}
    (scratch / "manifest.json").write_text(json.dumps(only))
    options = ort.SessionOptions()
    devices = plugin_devices(declared["ep"])
    if devices:
        options.add_provider_for_devices(devices, {})
    picked = ort.ModelPackageContext(str(scratch)).select_component(component, ort.ModelPackageOptions(options))
    return picked.get_selected_variant_name(), picked.create_session()  # the variant's own options applied


def golden(session, bundle: Path) -> dict:
    sys.path.insert(0, str(bundle))
    from contents import read_tensor  # the bundle's own reader

    manifest = json.loads((bundle / "manifest.json").read_text())
    worst, agreeing, samples = 0.0, 0, 0
    for name in manifest["golden"]["sets"]:
        x, expected = read_tensor(bundle / name / "input_0.pb"), read_tensor(bundle / name / "output_0.pb")
        actual = session.run(None, {session.get_inputs()[0].name: x})[0]
        if actual.shape != expected.shape:
            raise ValueError(f"{name}: output shape {actual.shape} != golden {expected.shape}")
        worst = max(worst, float(np.abs(actual.astype(np.float64) - expected).max()))
        agreeing += int((actual.argmax(1) == expected.argmax(1)).sum())
        samples += len(x)
    return {"golden_samples": samples, "max_abs_delta": worst, "top1_agreement": agreeing / samples}


def selection(root: Path, component: str) -> list[dict]:
    """The variant ORT selects, with default session options and under each OrtExecutionProviderDevicePolicy."""
    for ep, module in PLUGINS.items():
        if importlib.util.find_spec(module) is not None:
            plugin_devices(ep)
    context = ort.ModelPackageContext(str(root))
    cases = [("default session options", None), *((f"policy {name}", policy) for name, policy in
                                                   ort.OrtExecutionProviderDevicePolicy.__members__.items())]
    chosen = []
    for label, policy in cases:
        options = ort.SessionOptions()
        if policy is not None:
            options.set_provider_selection_policy(policy)
        try:
            picked = context.select_component(component, ort.ModelPackageOptions(options))
            chosen.append({"options": label, "variant": picked.get_selected_variant_name(),
                           "providers": picked.create_session().get_providers()})
        except RuntimeError as exc:
            chosen.append({"options": label, "variant": None, "reason": str(exc).strip().splitlines()[-1][-300:]})
    return chosen


def main(argv: list[str]) -> int:
    if argv[0] == "--select":
        print(json.dumps(selection(Path(argv[1]), argv[2])))
        return 0
    root, component, variant, bundle = Path(argv[0]), argv[1], argv[2], Path(argv[3])
    with tempfile.TemporaryDirectory(prefix="package-probe-") as scratch:
        selected, session = open_variant(root, component, variant, Path(scratch))
        report = {"variant": selected, "providers": session.get_providers(),
                  "inputs": [i.name for i in session.get_inputs()],
                  "outputs": [o.name for o in session.get_outputs()], **golden(session, bundle)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
