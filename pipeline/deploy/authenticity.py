"""What a check can establish beyond the bundle itself: that the archive is the one whose sha256 the producer
published, and that model.sig is the producer's OpenSSF model signature of every file (with the signed in-toto
provenance statement beside it). Ships inside each bundle beside verify.py; the signature check needs
`model-signing` (and so `cryptography`) installed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

if __package__:
    from .contents import PROVENANCE, SIGNATURE, BundleError, safe_extract, sha256
else:  # run as a script inside an extracted bundle
    from contents import PROVENANCE, SIGNATURE, BundleError, safe_extract, sha256

IN_TOTO = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"


@contextlib.contextmanager
def opened_bundle(path: Path, sha256_expected: str | None = None, public_key: Path | None = None) -> Iterator[Path]:
    """The bundle as a folder (a .tar.gz extracted into a scratch folder), once the checks that need something
    from outside it pass: the published sha256 of the archive and the producer's signature of every file."""
    if not path.exists():
        raise BundleError(f"bundle not found: {path}")
    if sha256_expected is not None:
        check_archive_digest(path, sha256_expected)
    with tempfile.TemporaryDirectory(prefix="verify-") as scratch:
        bundle = safe_extract(path, Path(scratch)) if path.is_file() else path
        if public_key is not None:
            check_signature(bundle, public_key)
        yield bundle


def check_archive_digest(archive: Path, expected: str) -> None:
    """The .tar.gz is byte for byte the one whose sha256 the producer published."""
    if not archive.is_file():
        raise BundleError("--sha256 checks the .tar.gz as published, not an extracted folder")
    if Path(expected).is_file():  # sha256sum's format: "<hex>  <name>"
        expected = next(iter(Path(expected).read_text().split()), "")
    expected = expected.strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise BundleError(f"--sha256 wants 64 hex digits or a .sha256 file, got {expected[:70]!r}")
    actual = sha256(archive)
    if actual != expected:
        raise BundleError(f"{archive.name} has sha256 {actual[:16]}…, not the published {expected[:16]}…: "
                          "it is not the archive the producer published")


def established(bundle: Path, sha256_expected: str | None, public_key: Path | None) -> dict:
    """What the check proved: `authentic` (the published sha256 or the producer's signature matched),
    `signature present, not checked`, or only `consistent` (the files match a manifest anyone could rewrite)."""
    anchors = [f"{SIGNATURE} verifies under {Path(public_key).name} (OpenSSF model signing, every file)"] \
        if public_key is not None else []
    if sha256_expected is not None:
        anchors.append("the archive is the published one (its sha256)")
    if anchors:
        return {"established": "authentic", "because": "; ".join(anchors)}
    if (bundle / SIGNATURE).is_file():
        return {"established": "signature present, not checked",
                "because": f"give --public-key (the producer's) to check {SIGNATURE}"}
    return {"established": "consistent", "because": "nothing here proves who made them: give --sha256 (the "
            "published .sha256) or --public-key"}


def check_signature(bundle: Path, public_key: Path) -> None:
    """model.sig is the producer's OpenSSF model signature (key-based, offline) over every file of the bundle,
    and provenance.intoto.json, when present, is a statement signed by the same key about these very files."""
    signature_file = bundle / SIGNATURE
    if not signature_file.is_file():
        raise BundleError(f"the bundle is not signed (no {SIGNATURE}), but --public-key asks for a signature")
    try:
        from model_signing import verifying
    except ImportError:
        raise BundleError("checking model.sig needs OpenSSF model signing: pip install model-signing pyopenssl "
                          "(or run `model_signing verify key` from it)") from None
    if not Path(public_key).is_file():
        raise BundleError(f"public key not found: {public_key}")
    try:
        verifying.Config().use_elliptic_key_verifier(public_key=str(public_key)).verify(bundle, signature_file)
    except Exception as exc:  # ValueError (files, key), InvalidSignature, KeyError/JSONDecodeError (a broken .sig)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"{SIGNATURE} does not verify under {Path(public_key).name}: {reason[:300]}") from None
    if (bundle / PROVENANCE).is_file():
        check_provenance(bundle, public_key)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def key_id(public_key) -> str:
    """A public key's id: the sha256 of its DER SubjectPublicKeyInfo, what
    `openssl pkey -pubin -in KEY.pub.pem -outform DER | sha256sum` prints."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return sha256_bytes(der)


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def load_private_key(key_file: Path):
    """An EC private key (PEM) to sign with, or a BundleError line saying what is wrong with the file."""
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        raise BundleError("signing needs the cryptography package: pip install cryptography") from None

    try:
        key = load_pem_private_key(Path(key_file).read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BundleError(f"cannot read the signing key {key_file}: {str(exc).splitlines()[0]}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise BundleError(f"{key_file} is not an EC private key (P-256/P-384/P-521: openssl ecparam -name "
                          "prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt)")
    return key


def dsse_envelope(key, statement: dict) -> dict:
    """DSSE: ECDSA-SHA256 over the pre-authentication encoding of the canonical statement JSON, with the
    signing key's id."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    signature = key.sign(pae(IN_TOTO, payload), ec.ECDSA(hashes.SHA256()))
    return {"payloadType": IN_TOTO, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode()}]}


def envelope_signers(envelope: dict) -> list[str]:
    """The key ids a DSSE envelope claims to be signed by (unchecked); ValueError if it is not an envelope."""
    if not isinstance(envelope, dict) or envelope.get("payloadType") != IN_TOTO \
            or not isinstance(envelope.get("signatures"), list):
        raise ValueError("not a DSSE envelope of an in-toto statement")
    return [s["keyid"] for s in envelope["signatures"] if isinstance(s, dict) and isinstance(s.get("keyid"), str)]


def signed_statement(envelope: dict, public_key) -> dict | None:
    """The in-toto statement of a DSSE envelope when one of its signatures verifies under `public_key`,
    else None; ValueError when the envelope or its payload is malformed."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    envelope_signers(envelope)
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        message = pae(envelope["payloadType"], payload)
        statement = json.loads(payload)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable DSSE payload: {exc}") from None
    for signature in envelope["signatures"]:
        try:
            public_key.verify(base64.b64decode(signature["sig"]), message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, TypeError, AttributeError, KeyError, ValueError):
            continue
        if isinstance(statement, dict) and statement.get("_type") == IN_TOTO_STATEMENT:
            return statement
    return None


def check_provenance(bundle: Path, public_key: Path) -> dict:
    """provenance.intoto.json: a DSSE envelope signed by `public_key` whose statement's subjects are this bundle's
    files with their present sha256; returns the statement."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        envelope = json.loads((bundle / PROVENANCE).read_text())
        statement = signed_statement(envelope, load_pem_public_key(Path(public_key).read_bytes()))
        subjects = {} if statement is None else {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{PROVENANCE} is not a DSSE envelope of an in-toto statement: {exc}") from None
    if statement is None:
        raise BundleError(f"{PROVENANCE} is not signed by {Path(public_key).name}")
    manifest = json.loads((bundle / "manifest.json").read_text())
    about = {manifest["model"]["file"], "manifest.json"}
    if statement.get("predicateType") != SLSA_PROVENANCE \
            or not about <= set(subjects):
        raise BundleError(f"{PROVENANCE} is not an SLSA provenance statement about this bundle's model and manifest")
    for name, digest in subjects.items():
        unsafe = PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts
        if unsafe or not (bundle / name).is_file() or sha256(bundle / name) != digest:
            raise BundleError(f"{PROVENANCE} names {name} with another sha256 than the bundle's")
    return statement
