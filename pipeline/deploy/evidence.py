"""The evidence of a check on hardware the producer lacks: what `verify.py --record FILE` writes on that machine.

Ships inside each bundle beside verify.py. A record names what was checked (the digest of every file but the model
card, the model's digest), by which checker (verify.py's own digest), on what (the onnxruntime package and
version, the device) and with what result (the golden samples and pictures, max |Δ|, top-1 agreement). The
producer commits it to metrics/device_runs/; `package` copies it into the bundle's `verified_on` only while those
digests match the bundle it builds (pipeline/runtimes/cells.py), so no record outlives what it proved.
"""

from __future__ import annotations

import platform
from pathlib import Path

if __package__:
    from .contents import sha256
else:  # run inside an extracted bundle
    from contents import sha256

RECORD_SCHEMA = "device-run/1"
RECORD_KEYS = ("provider", "package", "onnxruntime", "device", "architecture", "golden_samples", "golden_pictures",
               "max_abs_delta", "top1_agreement")


def device_record(report: dict, checker: Path) -> dict:
    """The evidence of one check on a provider, from this checker's own report (what `--record` writes)."""
    import datetime
    from importlib import metadata

    installed = [d for d in ("onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime")
                 if _has_distribution(metadata, d)]
    package = f"{installed[0]}=={metadata.version(installed[0])}" if installed else \
        f"onnxruntime {report['onnxruntime']}"
    facts = {**report, "provider": report["providers"][0], "package": package, "device": _device(),
             "architecture": report["machine"]}
    return {"schema": RECORD_SCHEMA, "target": report["target"], "verified": True, "emulated": False,
            "bundle_sha256": report["bundle_sha256"], "model_sha256": report["model_sha256"],
            "checker_sha256": sha256(Path(checker).resolve()), **{k: facts[k] for k in RECORD_KEYS},
            "date": datetime.date.today().isoformat()}


def _has_distribution(metadata, name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def _device() -> str:
    """The GPU (nvidia-smi's name, driver and CUDA version) where there is one, else the CPU's model name."""
    import subprocess

    try:
        query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
        gpus = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
        if gpus:
            name, driver = (part.strip() for part in gpus[0].split(",", 1))
            return f"{name} (driver {driver})"
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
             if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()
