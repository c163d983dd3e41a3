"""Package the shipped bundles' models as one ONNX Runtime model package, and prove it through ORT's own API.

Inputs:  deploy_dir (the bundles `package` wrote: each one's manifest says its model, providers and options)
Outputs: model_package/ (ORT's manifest.json and one folder per variant; model.sig when signed);
         metrics: the variants, ORT's selection on this machine (default options and each device policy),
         and each variant's golden check
Proof:   for each variant whose execution provider this onnxruntime has, a session made by
         `ModelPackageContext.select_component(...).create_session()` reproduces its bundle's golden outputs
         within the bundle's tolerance (exit 1 otherwise); a variant whose provider is absent is "not verified",
         with the reason. Every variant's model file is its bundle's (same sha256), or exit 1.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from pipeline.core.errors import PipelineError, RuntimeCellFailure
from pipeline.core.io import atomic_dir
from pipeline.core.stage import Schema, Stage, StageResult
from pipeline.deploy.contents import MANIFEST
from pipeline.packaging import ort_package, signing
from pipeline.packaging.release import VERSION
from pipeline.runtimes import cells
from pipeline.runtimes.envs import RuntimeUnavailable

PROBE = Path(cells.__file__).with_name("package_probe.py")


class ModelPackageConfig(Schema):
    component: str  # the component's name: what a consumer selects
    description: str


def run(cfg: ModelPackageConfig, targets: dict, deploy_dir: Path, out_dir: Path, *,
        sign_key: Path | None = None) -> StageResult:
    if sign_key is not None:
        signing.private_key(Path(sign_key))  # a key it cannot use fails now, before any work
    bundles = _bundles(Path(deploy_dir), list(targets))
    entries = ort_package.variants(bundles)
    if not entries:
        raise PipelineError(f"no bundle in {deploy_dir} that ONNX Runtime loads (format onnx or ort): run package")
    with atomic_dir(Path(out_dir)) as staging:
        ort_package.write(staging, cfg.component, VERSION, cfg.description, entries, Path(deploy_dir))
        ort_package.check_same_models(staging, cfg.component, bundles)
        checks = [_check(staging, cfg.component, e, Path(deploy_dir) / e["bundle"], bundles[e["bundle"]])
                  for e in entries]
        chosen = _selection(staging, cfg.component, [e["ep"] for e in entries])
        if sign_key is not None:
            signing.sign_folder(staging, Path(sign_key))
    return StageResult(
        outputs={"package": Path(out_dir)},
        metrics={"component": cfg.component, "variants": [_public(e) for e in entries], "verified": checks,
                 "selection": chosen, "signed": sign_key is not None},
        notices=[f"{c['variant']}: not verified ({c['reason']})" for c in checks if not c["verified"]],
    )


def _bundles(deploy_dir: Path, order: list[str]) -> dict[str, dict]:
    """Each built bundle's manifest, in the order of the targets (ORT breaks ties by declaration order)."""
    found = {}
    for target in order:
        manifest = deploy_dir / target / MANIFEST
        if manifest.is_file():
            found[target] = json.loads(manifest.read_text())
    return found


def _check(root: Path, component: str, entry: dict, bundle: Path, manifest: dict) -> dict:
    """The variant opened through ORT's package API (runtimes/package_probe.py) where an environment here has its
    provider, and its bundle's golden outputs reproduced within the bundle's tolerance."""
    record = {"variant": entry["name"], "ep": entry["ep"], "device": entry["device"]}
    try:
        interpreter, runtime = cells.package_interpreter(entry["ep"])
    except RuntimeUnavailable as exc:
        return {**record, "verified": False, "reason": f"{exc}; its bundle's model card says what it needs"}
    probe = [*interpreter, str(PROBE), str(root), component, entry["name"], str(bundle)]
    done = subprocess.run(probe, capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    tolerance = manifest["golden"]["tolerance"]
    why = (done.stderr.strip() or f"exit {done.returncode}").splitlines()[-1] if report is None else \
        _golden_failure(report, manifest, tolerance["atol"], entry["ep"])
    if why:
        raise RuntimeCellFailure(f"model package variant {entry['name']} ({entry['ep']}) does not reproduce its "
                                 f"bundle's golden outputs through ModelPackageContext: {why[:300]}")
    return {**record, "verified": True, "runtime": runtime, "providers": report["providers"],
            "golden_samples": report["golden_samples"],
            "max_abs_delta": cells.quoted_delta(report["max_abs_delta"], manifest["golden"].get("grid"))}


def _selection(root: Path, component: str, providers: list[str]) -> dict[str, list[dict]]:
    """What ORT selects in each environment here that opens some variant (this one; OpenVINO's plugin one)."""
    chosen = {}
    for provider in dict.fromkeys(providers):
        try:
            interpreter, runtime = cells.package_interpreter(provider)
        except RuntimeUnavailable:
            continue
        if runtime not in chosen:
            done = subprocess.run([*interpreter, str(PROBE), "--select", str(root), component], capture_output=True,
                                  text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
            if done.returncode != 0:
                raise RuntimeCellFailure(f"ModelPackageContext cannot open the model package in {runtime}: "
                                  f"{(done.stderr.strip() or 'no output').splitlines()[-1][:300]}")
            chosen[runtime] = json.loads(done.stdout.strip().splitlines()[-1])
    return chosen


def _golden_failure(report: dict, manifest: dict, atol: float, ep: str) -> str | None:
    """What the probe's report shows wrong, or None."""
    io = {k: [t["name"] for t in manifest["io"][k]] for k in ("inputs", "outputs")}
    if {"inputs": report["inputs"], "outputs": report["outputs"]} != io:
        return f"the model takes {report['inputs']} and returns {report['outputs']}, the manifest says {io}"
    if report["providers"][0] != ep:
        return f"ORT ran it on {report['providers'][0]}, not {ep}"
    if not report["max_abs_delta"] <= atol:
        return f"max |Δ| {report['max_abs_delta']:.3g} exceeds atol {atol:g}"
    if report["top1_agreement"] != 1.0:
        return f"top-1 agreement {report['top1_agreement']:.4f}, not 1"
    return None


def _public(entry: dict) -> dict:
    return {k: entry[k] for k in ("name", "bundle", "ep", "device", "model_file", "model_sha256")}


STAGE = Stage(
    name="model_package", run=run,
    help="Write the ONNX Runtime model package of the bundles' models (one variant per EP) and check it via ORT.",
    owns={"model_package": ModelPackageConfig}, config={"cfg": "model_package", "targets": "target"},
    inputs={"deploy_dir": "${paths.deploy}"}, outputs={"out_dir": "${paths.model_package}"},
    headline=lambda m: {"variants": len(m["variants"]), "verified": sum(c["verified"] for c in m["verified"])},
    artifacts={"model-package": "out_dir"},
    artifact_meta=lambda _, m: {
        "desc": "ONNX Runtime model package: one component, one variant per execution provider; "
                "onnxruntime.ModelPackageContext(root) selects the variant for the machine it runs on",
        "labels": ["onnxruntime-model-package", "onnx"],
        "meta": {"component": m.get("component"), "variants": {v["name"]: v["ep"] for v in m.get("variants", [])}}},
    code=("pipeline/runtimes/package_probe.py",),
    file_options={"sign_key": "Sign the package with this EC private key (PEM): OpenSSF model signing (model.sig "
                              "over every file); `model_signing verify key` checks it."},
)
