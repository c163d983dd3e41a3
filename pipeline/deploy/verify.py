"""Verify a deployment bundle: every file's sha256, the manifest schema, and the golden outputs.

Standalone: needs only the standard library, numpy, onnxruntime and Pillow (the golden pictures are PNGs that
go through the bundle's own preparation, so an edited manifest or digits.py fails). Ships inside each bundle:
    python verify.py BUNDLE_DIR_OR_TAR_GZ [--provider NAME] [--json]
--provider fails (exit 2) unless NAME itself ran the golden check, since onnxruntime silently falls back to
the CPU when a provider's libraries are missing; --json prints the report for the pipeline's runtime matrix.
Exit 0: verified. Exit 1: the model runs but its outputs drift from the golden outputs beyond the
manifest's tolerance. Exit 2: the bundle itself is bad (tampered, missing or unlisted file, unsafe archive
member, invalid manifest).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import struct
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

if __package__:
    from .infer import InputError, picture_input
    from .session import open_session as open_model_session
    from .session import providers_for
else:  # run as a script inside an extracted bundle, where infer.py and session.py sit beside it
    from infer import InputError, picture_input
    from session import open_session as open_model_session
    from session import providers_for

SCHEMA = "onnx-deploy-manifest"
# Written after the manifest by a signing producer, so the manifest does not list them: OpenSSF model signing's
# signature over every file, and the signed in-toto provenance statement it also covers.
SIGNATURE = "model.sig"
PROVENANCE = "provenance.intoto.json"
SIGNING_IGNORES = (SIGNATURE, "__pycache__")  # what model.sig does not cover: itself, Python's bytecode cache
IN_TOTO = "application/vnd.in-toto+json"
SCHEMA_VERSIONS = (1,)
MANIFEST = "manifest.json"
REQUIRED = {
    "schema": str, "schema_version": int, "model": dict, "target": dict, "provenance": dict, "io": dict,
    "preprocessing": dict, "class_labels": list, "golden": dict, "files": dict, "verified_on": list,
}
# TensorProto.DataType -> numpy dtype, for the types a golden file may hold.
_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 10: np.float16, 11: np.float64}


class BundleError(Exception):
    """The bundle cannot be trusted or read (exit 2)."""


class GoldenMismatch(Exception):
    """The model ran, but its outputs differ from the golden outputs beyond tolerance (exit 1)."""


def read_tensor(path: Path) -> np.ndarray:
    """Decode an ONNX TensorProto (.pb) without the onnx package: dims (1), data_type (2),
    float_data (4), int64_data (7), raw_data (9); other fields are skipped."""
    data, pos = Path(path).read_bytes(), 0
    dims, dtype, raw, floats, int64s = [], 1, None, [], []
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            if field == 1:
                dims.append(value)
            elif field == 2:
                dtype = value
            elif field == 7:
                int64s.append(value)
        elif wire == 2:
            length, pos = _varint(data, pos)
            chunk, pos = data[pos : pos + length], pos + length
            if field == 1:
                dims.extend(_packed_varints(chunk))
            elif field == 9:
                raw = chunk
            elif field == 4:
                floats.extend(struct.unpack(f"<{len(chunk) // 4}f", chunk))
            elif field == 7:
                int64s.extend(_packed_varints(chunk))
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise BundleError(f"{path}: not a TensorProto (wire type {wire})")
    if dtype not in _DTYPES:
        raise BundleError(f"{path}: unsupported tensor data type {dtype}")
    if raw is not None:
        array = np.frombuffer(raw, dtype=_DTYPES[dtype])
    else:
        array = np.asarray(floats if floats else int64s, dtype=_DTYPES[dtype])
    if array.size != int(np.prod(dims)):
        raise BundleError(f"{path}: {array.size} values do not fill shape {dims}")
    return array.reshape(dims)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise BundleError("truncated protobuf")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7


def _packed_varints(chunk: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(chunk):
        value, pos = _varint(chunk, pos)
        values.append(value)
    return values


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a .tar.gz bundle with Python's own `data` filter (absolute paths and '..' escapes refused),
    refusing links and special files too. Entries may start with `./` (`tar -czf x.tar.gz .`)."""
    unsafe = {tarfile.AbsolutePathError: "absolute path", tarfile.OutsideDestinationError: "'..' in path"}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                if member.name.startswith("/"):  # the data filter would strip the slash; a bundle never has one
                    raise BundleError(f"unsafe archive member {member.name!r}: absolute path")
                if member.issym() or member.islnk():
                    raise BundleError(f"unsafe archive member {member.name!r}: links are not allowed")
                if not (member.isfile() or member.isdir()):
                    raise BundleError(f"unsafe archive member {member.name!r}: not a regular file")
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        reason = next((text for kind, text in unsafe.items() if isinstance(exc, kind)), str(exc))
        raise BundleError(f"unsafe archive member {exc.tarinfo.name!r}: {reason}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(f"cannot read bundle {archive}: {exc}") from None
    roots = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    single_root = dest / next(iter(roots)) if len(roots) == 1 else dest
    return single_root if single_root.is_dir() and not (dest / MANIFEST).is_file() else dest


def load_manifest(bundle: Path) -> dict:
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"no {MANIFEST} in {bundle}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{MANIFEST} is not valid JSON: {exc}") from None
    check_schema(manifest)
    return manifest


def check_schema(manifest: dict) -> None:
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST} must be a JSON object")
    for key, kind in REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            raise BundleError(f"{MANIFEST}: `{key}` missing or not a {kind.__name__}")
    if manifest["schema"] != SCHEMA or manifest["schema_version"] not in SCHEMA_VERSIONS:
        raise BundleError(f"{MANIFEST}: unsupported schema {manifest['schema']} v{manifest['schema_version']}")
    for key in ("file", "providers", "session"):
        if key not in manifest["model"] and key not in manifest["target"]:
            raise BundleError(f"{MANIFEST}: `{key}` missing from model/target")
    tolerance = manifest["golden"].get("tolerance", {})
    if not isinstance(tolerance.get("atol"), int | float) or not isinstance(manifest["golden"].get("sets"), list):
        raise BundleError(f"{MANIFEST}: golden.sets and golden.tolerance.atol are required")
    for where, value, wanted in _values(manifest):
        if not _is(value, wanted):
            raise BundleError(f"{MANIFEST}: `{where}` is {json.dumps(value)[:60]}, not {wanted}")


# The values the checkers read, and the shape each must have (a number where a list is wanted would otherwise
# surface as a traceback deep in the preparation code).
NUMBER, TEXT, NUMBERS, TEXTS, MAPPING, MAPPINGS = ("a number", "a string", "a list of numbers", "a list of strings",
                                                   "an object", "a list of objects")


def _values(manifest: dict) -> list[tuple[str, object, str]]:
    pre, target, golden = manifest["preprocessing"], manifest["target"], manifest["golden"]
    found = [("preprocessing.scale", pre.get("scale"), NUMBER), ("preprocessing.mean", pre.get("mean"), NUMBERS),
             ("preprocessing.std", pre.get("std"), NUMBERS), ("model.file", manifest["model"].get("file"), TEXT),
             ("target.providers", target.get("providers"), TEXTS), ("target.session", target.get("session"), MAPPING),
             ("target.provider_options", target.get("provider_options", []), MAPPINGS),
             ("class_labels", manifest["class_labels"], TEXTS), ("golden.sets", golden["sets"], TEXTS),
             ("golden.pictures", golden.get("pictures", []), MAPPINGS), ("files", manifest["files"], MAPPING)]
    for i, picture in enumerate(golden.get("pictures", []) if isinstance(golden.get("pictures"), list) else []):
        if isinstance(picture, dict):
            found += [(f"golden.pictures[{i}].file", picture.get("file"), TEXT),
                      (f"golden.pictures[{i}].label", picture.get("label"), TEXT),
                      (f"golden.pictures[{i}].logits", picture.get("logits"), NUMBERS)]
    return found


def _is(value, wanted: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if wanted == NUMBER:
        return number
    if wanted == TEXT:
        return isinstance(value, str)
    if wanted == MAPPING:
        return isinstance(value, dict)
    item = {NUMBERS: NUMBER, TEXTS: TEXT, MAPPINGS: MAPPING}[wanted]
    return isinstance(value, list) and bool(value or wanted == MAPPINGS) and all(_is(v, item) for v in value)


def check_files(bundle: Path, manifest: dict) -> int:
    """Every listed file matches its sha256; every file present is listed. Returns files checked."""
    listed = manifest["files"]
    for name, expected in sorted(listed.items()):
        path = bundle / name
        if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
            raise BundleError(f"manifest lists an unsafe path {name!r}")
        if not path.is_file():
            raise BundleError(f"missing file {name} (listed in {MANIFEST})")
        if sha256(path) != expected:
            raise BundleError(f"sha256 mismatch for {name}: the file was modified after packaging")
    present = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*")
               if (p.is_file() or p.is_symlink()) and not _bytecode_cache(p.relative_to(bundle))}
    unlisted = sorted(present - set(listed) - {MANIFEST, SIGNATURE, PROVENANCE})
    if unlisted:
        raise BundleError(f"unlisted file {unlisted[0]} in bundle (not in {MANIFEST})")
    return len(listed)


def _bytecode_cache(relative: Path) -> bool:
    """Python's own cache of session.py, written beside it when verify.py or infer.py first runs."""
    return relative.parent.as_posix() == "__pycache__" and relative.suffix == ".pyc"


def open_session(bundle: Path, manifest: dict, providers: list):
    try:
        return open_model_session(bundle / manifest["model"]["file"], manifest["target"].get("session", {}),
                                  providers)
    except Exception as exc:  # ORT's pybind errors
        raise BundleError(f"onnxruntime cannot load {manifest['model']['file']}: {str(exc).splitlines()[0]}") from None


def check_io(manifest: dict, session) -> None:
    """The manifest's declared input/output names are what the model really takes and returns."""
    for kind, actual in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        declared = [entry.get("name") for entry in manifest["io"].get(kind, [])]
        if declared != [a.name for a in actual]:
            raise BundleError(f"manifest io.{kind} {declared} but the model has {[a.name for a in actual]}")


def check_golden(bundle: Path, manifest: dict, session) -> dict:
    tolerance = manifest["golden"]["tolerance"]
    worst, compared, agreeing = 0.0, 0, 0
    for name in manifest["golden"]["sets"]:
        x = read_tensor(bundle / name / "input_0.pb")
        expected = read_tensor(bundle / name / "output_0.pb")
        check_input(session, x, f"{name}/input_0.pb")
        actual = session.run(None, {session.get_inputs()[0].name: x})[0]
        if actual.shape != expected.shape:
            raise GoldenMismatch(f"{name}: output shape {actual.shape} != golden {expected.shape}")
        delta = float(np.abs(actual.astype(np.float64) - expected).max())
        if not delta <= tolerance["atol"]:
            raise GoldenMismatch(f"{name}: max |Δ| {delta:.3g} exceeds atol {tolerance['atol']:g}")
        same_label = int((actual.argmax(1) == expected.argmax(1)).sum())
        if tolerance.get("top1_must_match", True) and same_label != len(x):
            raise GoldenMismatch(f"{name}: top-1 labels differ from the golden outputs")
        worst, compared, agreeing = max(worst, delta), compared + len(x), agreeing + same_label
    return {"golden_sets": len(manifest["golden"]["sets"]), "golden_samples": compared, "max_abs_delta": worst,
            "top1_agreement": agreeing / compared}


def check_golden_pictures(bundle: Path, manifest: dict, session) -> int:
    """Each raw PNG, prepared by the bundle's own code with the manifest's preprocessing, gives the recorded
    logits (within atol) and label."""
    atol = manifest["golden"]["tolerance"]["atol"]
    pictures = manifest["golden"].get("pictures", [])
    for picture in pictures:
        try:
            x = picture_input(bundle / picture["file"], manifest["preprocessing"], *session.get_inputs()[0].shape[2:])
        except InputError as exc:
            raise GoldenMismatch(f"{picture['file']}: the bundle's preparation refuses it: {exc}") from None
        except ImportError:
            raise BundleError("the golden pictures need Pillow to decode: pip install pillow") from None
        logits = session.run(None, {session.get_inputs()[0].name: x})[0][0]
        label = manifest["class_labels"][int(logits.argmax())]
        delta = float(np.abs(logits.astype(np.float64) - np.asarray(picture["logits"])).max())
        if label != picture["label"] or not delta <= atol:
            raise GoldenMismatch(
                f"{picture['file']}: prepared as the manifest says, the model answers {label} (max |Δ| {delta:.3g} "
                f"from the recorded logits, atol {atol:g}) where {picture['label']} was recorded: the preprocessing "
                "or the preparation code changed")
    return len(pictures)


def check_input(session, x: np.ndarray, what: str) -> None:
    """Name-independent checks a model input must pass: dtype, rank, fixed dims, non-empty, finite."""
    spec = session.get_inputs()[0]
    expected_dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16}.get(spec.type)
    if expected_dtype is not None and x.dtype != expected_dtype:
        raise BundleError(f"{what}: dtype {x.dtype} but the model takes {spec.type}")
    if x.ndim != len(spec.shape):
        raise BundleError(f"{what}: rank {x.ndim} {tuple(x.shape)} but the model takes rank {len(spec.shape)}")
    if x.shape[0] == 0:
        raise BundleError(f"{what}: batch of 0")
    for axis, (got, want) in enumerate(zip(x.shape, spec.shape, strict=True)):
        if isinstance(want, int) and want > 0 and got != want:
            raise BundleError(f"{what}: dimension {axis} is {got} but the model takes {want}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise BundleError(f"{what}: {int((~np.isfinite(x)).sum())} NaN/Inf values in the input")


def verify(path: Path, provider: str | None = None, sha256_expected: str | None = None,
           public_key: Path | None = None) -> dict:
    """Verify a bundle directory or .tar.gz; returns a report, raises BundleError / GoldenMismatch.
    With `provider`, the golden check must run on that provider, not on a fallback; with `sha256_expected`
    (hex, or a .sha256 file), the .tar.gz must be the published one; with `public_key` (PEM), model.sig must be
    the producer's OpenSSF model signature of every file (and provenance.intoto.json signed by the same key).
    Without either, the files are only shown consistent with the manifest, which anyone could rewrite."""
    path = Path(path)
    with opened_bundle(path, sha256_expected, public_key) as bundle:
        manifest = load_manifest(bundle)
        files = check_files(bundle, manifest)
        providers = providers_for(manifest)
        names = [name for name, _ in providers]
        opened = open_session(bundle, manifest, providers)
        if provider is not None and opened.get_providers()[0] != provider:
            raise BundleError(f"{provider} did not run the model (this onnxruntime ran it on "
                              f"{opened.get_providers()[0]}; it has {', '.join(available_providers())})")
        check_io(manifest, opened)
        golden = check_golden(bundle, manifest, opened)
        golden["golden_pictures"] = check_golden_pictures(bundle, manifest, opened)
        return {"bundle": str(path), "target": manifest["target"].get("name"), "files_checked": files,
                **established(bundle, sha256_expected, public_key),
                "providers": opened.get_providers(), "requested_providers": names, **runtime_facts(), **golden}


@contextlib.contextmanager
def opened_bundle(path: Path, sha256_expected: str | None = None, public_key: Path | None = None) -> Iterator[Path]:
    """The bundle as a folder (a .tar.gz extracted into a scratch folder), once the checks that need something
    from outside it pass: the published sha256 of the archive and the producer's signature of the manifest."""
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
    return {"established": "consistent", "because": "the files match manifest.json; nothing here proves who made "
            "them: give --sha256 (the published .sha256) or --public-key"}


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


def check_provenance(bundle: Path, public_key: Path) -> dict:
    """provenance.intoto.json: a DSSE envelope signed by `public_key` whose statement's subjects are this bundle's
    files with their present sha256; returns the statement."""
    import base64

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    def signed_by(key, signature: dict, message: bytes) -> bool:
        try:
            key.verify(base64.b64decode(signature["sig"]), message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, TypeError, AttributeError):  # another signature, or not an EC key
            return False
        return True

    try:
        envelope = json.loads((bundle / PROVENANCE).read_text())
        payload = base64.b64decode(envelope["payload"], validate=True)
        key = load_pem_public_key(Path(public_key).read_bytes())
        message = pae(envelope["payloadType"], payload)
        signed = any(signed_by(key, s, message) for s in envelope["signatures"])
        statement = json.loads(payload)
        subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{PROVENANCE} is not a DSSE envelope of an in-toto statement: {exc}") from None
    if envelope["payloadType"] != IN_TOTO or not signed:
        raise BundleError(f"{PROVENANCE} is not signed by {Path(public_key).name}")
    for name, digest in subjects.items():
        unsafe = PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts
        if unsafe or not (bundle / name).is_file() or sha256(bundle / name) != digest:
            raise BundleError(f"{PROVENANCE} names {name} with another sha256 than the bundle's")
    return statement


def available_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def runtime_facts() -> dict:
    """What ran the check: the onnxruntime build and the machine as this process sees it."""
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "machine": platform.machine()}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python verify.py", description="Check every sha256, the manifest and the golden outputs of a bundle.")
    parser.add_argument("bundle", help="the bundle folder or its .tar.gz")
    parser.add_argument("--provider", help="fail unless this execution provider runs the golden check")
    parser.add_argument("--sha256", help="the published sha256 of the .tar.gz (hex, or its .sha256 file)")
    parser.add_argument("--public-key", type=Path, help="the producer's public key (PEM): model.sig must be its "
                                                          "OpenSSF model signature of every file (needs model-signing)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report = verify(Path(args.bundle), args.provider, args.sha256, args.public_key)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GoldenMismatch as exc:
        print(f"verification failed: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:  # a value no check above foresaw
        print(f"error: {MANIFEST} holds a value this checker cannot use ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
        return 0
    print("\n".join(summary_lines(report)))
    return 0


def summary_lines(report: dict) -> list[str]:
    """What a person reads: first what was established about the files, then what the golden check proved."""
    return [f"{report['established']}: {report['files_checked']} files match {MANIFEST}; {report['because']}",
            f"verified {report['target']}: {report['golden_samples']} golden samples and {report['golden_pictures']} "
            f"pictures on {report['providers'][0]}, max |Δ| {report['max_abs_delta']:.3g}"]


if __name__ == "__main__":
    sys.exit(main())
