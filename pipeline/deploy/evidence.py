"""The evidence of a check on hardware the producer lacks: what `verify.py --record FILE --record-key KEY` writes.

Ships inside each bundle beside verify.py. A record is a signed attestation, not a form anyone could fill in: a
DSSE envelope (the signing stack of the bundles' provenance) of an in-toto v1 statement whose subjects are the
bundle's files with their sha256 and whose predicate is the checker's own report: which provider ran it, with
which runtime package and version, on which device, with which golden results, and verify.py's own digest. It is
signed with the verifier's EC key. It holds no date: the manifest that quotes it must be the same bytes on every run.

The producer commits it to metrics/device_runs/; `package` (pipeline/runtimes/cells.py) copies its facts into the
bundle's `verified_on` only when the signature verifies under a key that `evidence.trusted_verifiers` lists and the
subjects are the bundle it builds, so no record outlives what it proved and no typed record counts.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

if __package__:
    from .authenticity import dsse_envelope, load_private_key
    from .contents import sha256
else:  # run inside an extracted bundle
    from authenticity import dsse_envelope, load_private_key
    from contents import sha256

PREDICATE = "https://onnx-deploy-pipeline.invalid/device-run/v1"
STATEMENT = "https://in-toto.io/Statement/v1"
FACTS = ("target", "provider", "package", "onnxruntime", "device", "architecture", "bundle_sha256", "model_sha256",
         "checker_sha256", "golden_samples", "golden_pictures", "max_abs_delta", "top1_agreement")


def device_statement(report: dict, files: dict[str, str], checker: Path) -> dict:
    """The in-toto statement of one check on a provider, from this checker's own report and the files it checked."""
    from importlib import metadata

    installed = [d for d in ("onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime")
                 if _has_distribution(metadata, d)]
    package = f"{installed[0]}=={metadata.version(installed[0])}" if installed else \
        f"onnxruntime {report['onnxruntime']}"
    facts = {**report, "provider": report["providers"][0], "package": package, "device": _device(),
             "architecture": report["machine"], "checker_sha256": sha256(Path(checker).resolve())}
    return {"_type": STATEMENT,
            "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(files.items())],
            "predicateType": PREDICATE,
            "predicate": {"verified": True, "emulated": False, **{k: facts[k] for k in FACTS}}}


def write_record(path: Path, report: dict, files: dict[str, str], checker: Path, key_file: Path) -> None:
    """The signed record (a DSSE envelope, JSON) at `path`."""
    envelope = dsse_envelope(load_private_key(key_file), device_statement(report, files, checker))
    Path(path).write_text(json.dumps(envelope, indent=1, sort_keys=True) + "\n")


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
