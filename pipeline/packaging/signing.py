"""Signing a bundle the way the ecosystem checks it, offline, with the producer's EC private key (PEM).

- model.sig: OpenSSF model signing (the `model-signing` library): a Sigstore bundle whose DSSE envelope holds
  an in-toto statement listing every file's sha256. `model_signing verify key BUNDLE --signature
  BUNDLE/model.sig --public_key KEY.pub` checks it with no code of ours, and so does `pipeline verify
  --public-key` (and the bundle's verify.py where model-signing is installed). An edited, added or removed file
  fails both.
- provenance.intoto.json: a DSSE envelope (the same key) over an in-toto statement with an SLSA v1 provenance
  predicate: what was built (the model file and manifest.json, by sha256), from what (checkpoint, dataset,
  the chosen variant, the target's parameters), by which commit and toolchain. model.sig covers it too.

ECDSA signatures are randomized, so a signed bundle is not byte-reproducible; an unsigned one is.
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pipeline.core.errors import PipelineError
from pipeline.core.io import sha256_file
from pipeline.core.provenance import source_commit
from pipeline.deploy.authenticity import (
    IN_TOTO_STATEMENT,
    SLSA_PROVENANCE,
    check_signature,
    dsse_envelope,
    load_private_key,
)
from pipeline.deploy.contents import PROVENANCE, SIGNATURE, BundleError
from pipeline.packaging.release import VERSION

BUILD_TYPE = "https://onnx-deploy-pipeline.invalid/package/v1"  # names the recipe: `pipeline package`
TOOLCHAIN = ("onnxruntime", "onnx", "torch", "numpy", "model-signing")


def private_key(key_file: Path):
    """The producer's EC private key, or one PipelineError line saying what is wrong with the file."""
    try:
        return load_private_key(key_file)
    except BundleError as exc:
        raise PipelineError(str(exc)) from None


def sign_bundle(bundle: Path, key_file: Path, inputs: dict[str, dict], parameters: dict) -> None:
    """provenance.intoto.json, then model.sig over every file of the bundle (the provenance included), then the
    consumer's own check of both under the key's public half."""
    key = private_key(key_file)
    statement = provenance_statement(bundle, inputs, parameters)
    (bundle / PROVENANCE).write_text(json.dumps(dsse_envelope(key, statement), indent=1) + "\n")
    sign_folder(bundle, key_file)


def sign_folder(folder: Path, key_file: Path) -> None:
    """model.sig: the OpenSSF model signature of every file in `folder` (nothing ignored: an ignored __pycache__
    or .git file could be planted), then the consumer's own check of it under the key's public half."""
    import tempfile

    from cryptography.hazmat.primitives import serialization
    from model_signing import hashing, signing

    key = private_key(key_file)
    ignored = hashing.Config().set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=False)
    try:
        signing.Config().use_elliptic_key_signer(private_key=str(key_file)).set_hashing_config(ignored).sign(
            folder, folder / SIGNATURE)
    except Exception as exc:  # model_signing raises assorted types for keys it cannot use
        raise PipelineError(f"model signing failed with {key_file}: {str(exc).splitlines()[0]}") from None
    with tempfile.TemporaryDirectory(prefix="signing-") as scratch:
        public = Path(scratch) / "producer.pub.pem"
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
        check_signature(folder, public)


def provenance_statement(bundle: Path, inputs: dict[str, dict], parameters: dict) -> dict:
    """An in-toto v1 statement: the model file and manifest as subjects, an SLSA v1 build definition."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    subjects = [manifest["model"]["file"], "manifest.json"]
    return {
        "_type": IN_TOTO_STATEMENT,
        "subject": [{"name": name, "digest": {"sha256": sha256_file(bundle / name)}} for name in subjects],
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"target": manifest["target"]["name"], "parameters": parameters,
                                       "source": {"commit": source_commit()}},
                "internalParameters": {"toolchain": _toolchain()},
                "resolvedDependencies": [{"name": name, "digest": digest} for name, digest in inputs.items()],
            },
            "runDetails": {"builder": {"id": f"pipeline {VERSION}"}},
        },
    }


def _toolchain() -> dict[str, str]:
    found = {"python": platform.python_version(), "pipeline": VERSION}
    for name in TOOLCHAIN:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
