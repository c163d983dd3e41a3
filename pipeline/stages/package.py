"""Package one deployment target: pick the variant, write the hand-off bundle, prove it verifies.

Inputs:  variants_dir (the target's candidates), metrics/validate.json (their gate verdicts), model_dir, pruned_dir (the
         checkpoints the candidates must descend from), data_dir (golden inputs), metrics/device_runs/
         (checks on hardware this machine lacks, each written there by the bundle's own `verify.py --record`)
Outputs: deploy/<target>/ (model, manifest.json, golden test_data_set_*/, README.md, infer.py, verify.py,
         session.py, digit.png[, required_operators.config, mobile_usability.txt]) and deploy/<target>.tar.gz;
         metrics: the chosen variant and session options, why, and every candidate's gates; observations:
         their timings
Selection: pipeline/packaging/selection.py, over (candidate that passed its gates × session options), timed on the
         target's first provider when this machine has it; otherwise the first passing candidate in the
         target's order with its own session options, because CPU timings say nothing about that hardware.
Proof:   `verified_on` holds a record per runtime cell that ran the bundle's own verify.py
         (pipeline/runtimes/), per run recorded on hardware this machine lacks whose model bytes match, and a
         `verified: false` reason for every other provider of the target. A cell that fails stops the stage
         (exit 1) before the bundle gets its final name. The bundle holds no timing, date or commit: the same
         inputs give the same bytes.
Not a digit: manifest `ood`, the bounds of the consumers' "not a digit?" flag, calibrated on this model through
         the session it ships with, and the rates measured where they were not fitted (pipeline/packaging/ood.py);
         a held-out false-rejection rate over its limit fails the stage (exit 1).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PositiveInt, StringConstraints

from pipeline.core.errors import PipelineError
from pipeline.core.io import atomic_dir, sha256_file, write_json
from pipeline.core.stage import Schema, Stage, StageResult
from pipeline.data import preprocessing
from pipeline.deploy import session as bundle_session
from pipeline.deploy import verify
from pipeline.deploy.contents import MANIFEST
from pipeline.measure.timing import Phases
from pipeline.model import lineage, onnx_utils
from pipeline.model.parity import SUMMARY
from pipeline.packaging import bundle as bundle_io
from pipeline.packaging import mobile, ood, selection, signing
from pipeline.packaging.model_card import render
from pipeline.packaging.release import VERSION
from pipeline.runtimes import cells

DEPLOY_CODE = Path(__file__).resolve().parent.parent / "deploy"
SCHEMA_VERSION = 1
# What a deployment team runs: Python (infer, verify), Node (verify.mjs) and C++ (cpp/, built against an ONNX
# Runtime release), with the shared preparation.
CONSUMER_CODE = ("infer.py", "arrays.py", "verify.py", "golden.py", "evidence.py", "contents.py", "authenticity.py",
                 "session.py", "digits.py", "numerics.py", "verify.mjs", "golden.mjs", "digits.mjs", "cpp/consumer.cpp",
                 "cpp/bundle.hpp", "cpp/manifest.hpp", "cpp/digits.hpp", "cpp/CMakeLists.txt", "cpp/release.sh")


GraphLevel = Literal["ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"]


class SessionConfig(Schema):
    """The target's own (preferred) session options; the graph level is applied at load, on the consumer's CPU."""
    graph_optimization_level: GraphLevel
    intra_op_num_threads: int = Field(ge=0)
    execution_mode: Literal["ORT_SEQUENTIAL", "ORT_PARALLEL"]
    config_entries: dict[str, str]


class SearchConfig(Schema):
    """Alternatives to the session options, tried on the target's provider when this machine has it."""
    graph_optimization_level: list[GraphLevel]
    intra_op_num_threads: list[int]
    allow_spinning: list[Literal["0", "1"]]
    provider_options: list[dict]  # alternatives to the first provider's own options (the OpenVINO EP's)


class SelectionConfig(Schema):
    rounds: int = Field(ge=3)
    per_round: PositiveInt
    min_effect: float = Field(ge=0, lt=1)
    confidence: float = Field(gt=0.5, lt=1)
    decide: bool  # false: the order ships, timings advise (same bundle on any CPU); true: this machine's timings


class TargetConfig(Schema):
    providers: list[str] = Field(min_length=1)
    provider_options: list[dict]
    session: SessionConfig
    search: SearchConfig
    selection: SelectionConfig
    candidates: list[str] = Field(min_length=1)
    format: Literal["onnx", "ort", "web"]  # web: model.onnx + onnxruntime-web + the drawing page
    fixed_batch: PositiveInt | None
    golden_atol: float = Field(gt=0)
    golden_samples: PositiveInt
    # The runtime matrix cells (pipeline/runtimes/) whose own verify.py run the bundle before it is named.
    runtimes: list[Literal[tuple(cells.RUNTIMES)]]


class PackagingConfig(Schema):
    """What applies to every target's bundle."""
    # A cell of a target's `runtimes` this machine could not set up fails the stage (the CI gate), not a warning.
    require_runtimes: bool
    # Whose device records count (metrics/device_runs/): verifier name -> key id, the sha256 of the public key's
    # DER SubjectPublicKeyInfo (`openssl pkey -pubin -in KEY.pub.pem -outform DER | sha256sum`); the key itself
    # lies in metrics/device_runs/verifiers/<name>.pub.pem.
    trusted_verifiers: dict[str, Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]]


def run(cfg: TargetConfig, policy: PackagingConfig, variants_dir: Path, parity_file: Path, model_dir: Path,
        pruned_dir: Path, data_dir: Path, device_runs: Path, out_dir: Path, archive: Path, digest: Path, *, target: str,
        sign_key: Path | None = None) -> StageResult:
    if sign_key is not None:
        signing.private_key(Path(sign_key))  # a key it cannot use fails now, before any work
    parity = _parity_report(Path(parity_file))
    checkpoints = lineage.checkpoint_digests(Path(model_dir), Path(pruned_dir))
    candidates = _candidates(cfg, Path(variants_dir), parity, checkpoints)
    phase = Phases()
    with phase("search"):
        timer = cells.timer_for(cfg.providers[0], cfg.runtimes)
        chosen, options, provider_options, reason, evidence = selection.choose(cfg, candidates, timer)
    block = _target_block(cfg, options, provider_options)
    with atomic_dir(Path(out_dir)) as staging:
        model_file, extras = _write_model(cfg, chosen["path"], staging)
        if "mobile" in extras:
            block = mobile.usable_providers(block, extras["mobile"]["usability"]["verdicts"])
        session = bundle_session.open_model(staging, {"model": {"file": model_file}, "target": block},
                                      [("CPUExecutionProvider", {})])
        golden = bundle_io.write_golden_set(session, Path(data_dir), staging, cfg.golden_samples, cfg.fixed_batch,
                                            cfg.golden_atol)
        golden["pictures"] = bundle_io.write_golden_pictures(session, Path(data_dir), staging, golden["grid"])
        with phase("not-a-digit calibration"):  # the flag's bounds, measured on this model as it ships
            not_a_digit = ood.calibrate(session, Path(data_dir), cfg.fixed_batch, preprocessing.as_manifest())
        bundle_io.write_sample_digit(Path(data_dir), staging)
        for script in CONSUMER_CODE:
            (staging / script).parent.mkdir(exist_ok=True)
            shutil.copy(DEPLOY_CODE / script, staging / script)
        shipped = {"file": model_file, "bytes": (staging / model_file).stat().st_size, **extras}
        checkpoint = checkpoints[lineage.checkpoint_of(chosen["name"])]
        manifest = _manifest(block, target, chosen, reason, candidates, shipped, session, golden, checkpoint,
                             not_a_digit)
        manifest["parity"]["samples"] = parity.get("samples")
        manifest["files"] = bundle_io.file_hashes(staging)
        write_json(staging / MANIFEST, manifest)  # for the bundle's own checkers, which read it as a consumer does
        # Each runtime cell runs the bundle's own verify.py before the bundle gets its final name; then the
        # manifest gets their records and the model card, and is written again with the files' final digests.
        with phase("runtime matrix"):
            manifest["verified_on"] = cells.verified_on(staging, manifest, target, block["providers"], cfg.runtimes,
                                                        Path(device_runs), policy.trusted_verifiers)
            if policy.require_runtimes:
                cells.require_ran(manifest["verified_on"], target)
        (staging / "README.md").write_text(render(manifest))
        manifest["files"] = bundle_io.file_hashes(staging)
        write_json(staging / MANIFEST, manifest)
        if sign_key is not None:
            signing.sign_bundle(staging, Path(sign_key), _inputs(chosen, manifest), cfg.model_dump(mode="json"))
        # The bundle's own check here (CPU EP): its provider is proven by the runtime matrix above.
        report = verify.verify(staging, allow_fallback=True)
    bundle_io.write_tarball(Path(out_dir), Path(archive))
    archive_sha256 = bundle_io.write_digest(Path(archive), Path(digest))
    return StageResult(
        outputs={"bundle": Path(out_dir), "archive": Path(archive), "digest": Path(digest)},
        metrics={"target": target, "providers": block["providers"], "chosen": chosen["name"],
                 "archive_sha256": archive_sha256,
                 "signed": sign_key is not None, "session": options, "reason": reason,
                 "verified": {**{k: v for k, v in report.items() if k not in ("bundle", "files")},
                              "max_abs_delta": cells.quoted_delta(report["max_abs_delta"], golden["grid"])},
                 "verified_on": _cells_verified(manifest["verified_on"]),
                 "ood": {"thresholds": not_a_digit["thresholds"], **not_a_digit["measured"]},
                 "candidates": [_public(c) for c in candidates]},
        # When the matrix ran is an observation: in the manifest it would change the bundle's bytes every day.
        observations={"selection": evidence, "verified_at": _now(), "phases_s": phase.seconds},
        notices=selection.advice(evidence, target),
    )


def _cells_verified(records: list[dict]) -> str:
    """"verified of run" over the runtime cells only: a provider that no cell could run is a record of its own
    (`verified: false`, with the reason), not a cell that failed."""
    cells_run = [r for r in records if r.get("runtime")]
    return f"{sum(r['verified'] for r in cells_run)}/{len(cells_run)}"


def _inputs(chosen: dict, manifest: dict) -> dict[str, dict]:
    """What the bundle was built from, by digest: the provenance statement's resolved dependencies."""
    return {"checkpoint (model.pt)": {"sha256": manifest["provenance"]["checkpoint_sha256"]},
            "dataset (MNIST, canonical IDX)": {"sha256": manifest["provenance"]["dataset_sha256"]},
            f"variant {chosen['name']} ({Path(chosen['path']).name})": {"sha256": sha256_file(Path(chosen["path"]))}}


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _parity_report(path: Path) -> dict:
    if not path.is_file():
        raise PipelineError(f"{path} not found: run `pipeline validate` first (targets ship only validated variants)")
    return json.loads(path.read_text())


def _public(candidate: dict) -> dict:
    """A candidate as the manifest and metrics show it: no paths (timings live in metrics/timings/)."""
    return {k: v for k, v in candidate.items() if k != "path"}


def _candidates(cfg: TargetConfig, variants_dir: Path, parity: dict, checkpoints: dict[str, str]) -> list[dict]:
    """Each candidate variant in the target's order, with its gate verdicts from validate. One built from
    another checkpoint, or changed since validate judged it, is not eligible and says how to rebuild it."""
    paths = {name: onnx_utils.variant_path(variants_dir, name) for name in cfg.candidates}
    stale = lineage.stale({n: p for n, p in paths.items() if p.is_file()}, checkpoints)
    candidates = []
    for name, path in paths.items():
        entry = parity.get("variants", {}).get(name)
        if name not in stale and entry and path.is_file() and entry.get("sha256") != sha256_file(path):
            stale[name] = "changed since validate judged it"
        entry = None if name in stale else entry
        candidates.append({
            "name": name, "path": path, "built": path.is_file(), "kind": entry["kind"] if entry else None,
            "stale": f"{stale[name]}: {lineage.rebuild_advice([name])}" if name in stale else None,
            "parity": {k: entry[k] for k in SUMMARY} if entry else None,
            "passed_gates": bool(path.is_file() and entry and entry["passed"]),
            "failed_gates": [] if entry is None else [g for g, v in entry["gates"].items() if not v["passed"]],
            "validated": entry is not None,
            # Operators outside standard ONNX (ORT's com.microsoft fusions): only some runtimes can load them.
            "nonstandard": onnx_utils.nonstandard_ops(onnx_utils.load(path, check=False)) if path.is_file() else {},
        })
    return candidates


def _write_model(cfg: TargetConfig, source: Path, staging: Path) -> tuple[str, dict]:
    """Copy (or fix the batch of, or convert to .ort) the chosen model; return its file name and extras."""
    model = onnx_utils.load(source)
    if cfg.fixed_batch:
        model = onnx_utils.fix_batch(model, cfg.fixed_batch)
    if cfg.format in ("onnx", "web"):
        onnx_utils.save(model, staging / "model.onnx", external_threshold_bytes=1 << 30)
        if cfg.format == "web":
            bundle_io.write_web_page(staging, DEPLOY_CODE / "web")
        return "model.onnx", {}
    with tempfile.TemporaryDirectory(prefix="mobile-") as scratch:
        fixed = Path(scratch) / "model.onnx"
        onnx_utils.save(model, fixed)
        verdict = mobile.usability(fixed)
        (staging / "mobile_usability.txt").write_text(verdict.pop("report"))
        mobile.to_ort_format(fixed, staging)
    return "model.ort", {"mobile": {"fixed_batch": cfg.fixed_batch, "usability": verdict,
                                    "reduced_build_config": "required_operators.config"}}


def _target_block(cfg: TargetConfig, session: dict, first_provider_options: dict) -> dict:
    """The manifest's `target`: providers and the chosen options, which verify.py and infer.py apply."""
    provider_options = [first_provider_options, *(dict(o) for o in cfg.provider_options[1:])]
    return {"providers": list(cfg.providers), "provider_options": provider_options,
            "install": {p: cells.provider_needs(p) for p in cfg.providers},
            "session": session, "format": cfg.format, "fixed_batch": cfg.fixed_batch}


def _manifest(block, target, chosen, reason, candidates, shipped, session, golden, checkpoint: str,
              not_a_digit: dict) -> dict:
    import onnxruntime as ort

    source = onnx_utils.load(chosen["path"], check=False)
    meta = onnx_utils.metadata(source)
    extras = {k: v for k, v in shipped.items() if k not in ("file", "bytes")}
    opset = max(o.version for o in source.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "schema": "onnx-deploy-manifest",
        "schema_version": SCHEMA_VERSION,
        "model": {"name": "mnist-digits", "version": f"{VERSION}+{checkpoint[:12]}",
                  "architecture": meta.get("model_target"), "variant": chosen["name"], "kind": chosen["kind"],
                  "file": shipped["file"], "bytes": shipped["bytes"], "opset": opset,
                  "nonstandard_ops": chosen["nonstandard"]},
        "target": {"name": target, **block},
        "provenance": {"checkpoint_sha256": checkpoint, "dataset_sha256": meta.get("dataset_sha256"),
                       "lineage": json.loads(meta.get("lineage", "{}")),
                       "packaged_with": f"pipeline {VERSION}, onnxruntime {ort.__version__}"},
        "io": {"inputs": [_io(i) for i in session.get_inputs()], "outputs": [_io(o) for o in session.get_outputs()]},
        "preprocessing": preprocessing.as_manifest(),
        "class_labels": preprocessing.CLASS_LABELS,
        "quantization": json.loads(meta["quantization"]) if "quantization" in meta else None,
        "parity": {"reference": "PyTorch eval mode, MNIST test set", **chosen["parity"]},
        "selection": {"chosen": chosen["name"], "reason": reason, "candidates": [_public(c) for c in candidates]},
        "verified_on": [],
        "golden": golden,
        "ood": not_a_digit,
        **extras,
        "files": {},
    }


def _io(arg) -> dict:
    return {"name": arg.name, "shape": [d if isinstance(d, int) else str(d) for d in arg.shape],
            "dtype": arg.type.removeprefix("tensor(").removesuffix(")")}


def _artifact(target: str, metrics: dict) -> dict:
    """The bundle's DVC artifact entry: what it is and, once built, what it ships."""
    chosen = next((c for c in metrics.get("candidates", []) if c["name"] == metrics.get("chosen")), {})
    return {"desc": f"The {target} deployment bundle (.tar.gz): model, manifest.json, golden I/O, model card, "
                    "consumers (Python, Node.js, C++; the page for web); check it with its own verify.py",
            "labels": ["bundle", "onnx", target],
            "meta": {"target": target, "provider": (metrics.get("providers") or [None])[0],
                     "variant": metrics.get("chosen"), "accuracy": (chosen.get("parity") or {}).get("accuracy")}}


STAGE = Stage(
    name="package", run=run, help="Build the deployable bundle for each target: chosen variant, manifest, golden I/O.",
    owns={"target": dict[str, TargetConfig], "packaging": PackagingConfig},
    config={"cfg": "target.${key}", "policy": "packaging"},
    inputs={"variants_dir": "${paths.variants}", "parity_file": "${paths.metrics}/validate.json",
            "model_dir": "${paths.model}", "pruned_dir": "${paths.pruned}", "data_dir": "${paths.data}",
            "device_runs": "${paths.metrics}/device_runs"},
    outputs={"out_dir": "${paths.deploy}/${key}", "archive": "${paths.deploy}/${key}.tar.gz",
             "digest": "${paths.deploy}/${key}.tar.gz.sha256"},
    foreach="target", item_arg="target",
    code=("pipeline/deploy", "pipeline/runtimes/wasm_timing", "pipeline/runtimes/worker.py"),
    headline=lambda m: {"chosen": m["chosen"], "verified": m["verified_on"]},
    artifacts={"bundle-${key}": "archive"}, artifact_meta=lambda target, m: _artifact(target, m),
    file_options={"sign_key": "Sign the bundle with this EC private key (PEM): OpenSSF model signing (model.sig over "
                              "every file) and a signed in-toto provenance statement; `verify --public-key` and "
                              "`model_signing verify key` check them."},
)
