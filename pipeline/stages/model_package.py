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
from pathlib import Path

from pipeline.core.errors import GateFailure, PipelineError
from pipeline.core.io import atomic_dir
from pipeline.core.stage import Schema, Stage, StageResult
from pipeline.deploy.contents import MANIFEST
from pipeline.deploy.verify import GoldenMismatch, check_golden, check_io
from pipeline.packaging import ort_package, signing
from pipeline.packaging.release import VERSION
from pipeline.runtimes import cells


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
        chosen = ort_package.selection(staging, cfg.component)
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
    """The variant's golden check through the package API, where this onnxruntime has its provider."""
    import onnxruntime as ort

    record = {"variant": entry["name"], "ep": entry["ep"], "device": entry["device"]}
    if entry["ep"] not in ort.get_available_providers():
        return {**record, "verified": False, "reason": f"{entry['ep']} is not in this onnxruntime "
                f"({', '.join(ort.get_available_providers())}); its bundle says what it needs"}
    try:
        session = ort_package.variant_session(root, component, entry["name"])
        check_io(manifest, session)
        golden = check_golden(bundle, manifest, session)
    except (GoldenMismatch, RuntimeError) as exc:
        raise GateFailure(f"model package variant {entry['name']} ({entry['ep']}) does not reproduce its bundle's "
                          f"golden outputs: {str(exc).splitlines()[0]}") from None
    return {**record, "verified": golden["top1_agreement"] == 1.0, "providers": session.get_providers(),
            "golden_samples": golden["golden_samples"],
            "max_abs_delta": cells.quoted_delta(golden["max_abs_delta"], manifest["golden"].get("grid"))}


def _public(entry: dict) -> dict:
    return {k: entry[k] for k in ("name", "bundle", "ep", "device", "model_file", "model_sha256")}


STAGE = Stage(
    name="model_package", run=run,
    help="Write the ONNX Runtime model package of the bundles' models (one variant per EP) and check it via ORT.",
    owns={"model_package": ModelPackageConfig}, config={"cfg": "model_package", "targets": "target"},
    inputs={"deploy_dir": "${paths.deploy}"}, outputs={"out_dir": "${paths.model_package}"},
    headline=lambda m: {"variants": len(m["variants"]), "verified": sum(c["verified"] for c in m["verified"]),
                        "selected": m["selection"][0]["variant"]},
    artifacts={"model-package": "out_dir"},
    artifact_meta=lambda _, m: {
        "desc": "ONNX Runtime model package: one component, one variant per execution provider; "
                "onnxruntime.ModelPackageContext(root) selects the variant for the machine it runs on",
        "labels": ["onnxruntime-model-package", "onnx"],
        "meta": {"component": m.get("component"), "variants": {v["name"]: v["ep"] for v in m.get("variants", [])}}},
    file_options={"sign_key": "Sign the package with this EC private key (PEM): OpenSSF model signing (model.sig "
                              "over every file); `model_signing verify key` checks it."},
)
