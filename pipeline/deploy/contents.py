"""What a bundle holds, and the checks that need nothing outside it: the manifest's schema and the shape of every
value a checker reads, every file's sha256, safe extraction of the .tar.gz, and the golden tensors (ONNX
TensorProto files, decoded without the onnx package). Ships inside each bundle beside verify.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

MANIFEST = "manifest.json"
SCHEMA = "onnx-deploy-manifest"
SCHEMA_VERSIONS = (1,)
# Written after the manifest by a signing producer, so the manifest does not list them: OpenSSF model signing's
# signature over every file, and the signed in-toto provenance statement it also covers. Nothing else may be
# present unlisted (the consumers write no bytecode into a bundle).
SIGNATURE = "model.sig"
PROVENANCE = "provenance.intoto.json"
UNLISTED = (MANIFEST, SIGNATURE, PROVENANCE)
REQUIRED = {
    "schema": str, "schema_version": int, "model": dict, "target": dict, "provenance": dict, "io": dict,
    "preprocessing": dict, "class_labels": list, "golden": dict, "ood": dict, "files": dict, "verified_on": list,
}
# TensorProto.DataType -> numpy dtype, for the types a golden file may hold.
_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 10: np.float16, 11: np.float64}


class BundleError(Exception):
    """The bundle cannot be trusted or read (exit 2)."""


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


def content_digest(files: dict[str, str]) -> str:
    """One sha256 for what a verification proves: every listed file but the model card, which quotes
    `verified_on` (so a record of this bundle can be added without changing what it is a record of)."""
    lines = "".join(f"{name}\t{digest}\n" for name, digest in sorted(files.items()) if name != "README.md")
    return hashlib.sha256(lines.encode()).hexdigest()


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a .tar.gz bundle member by member: absolute paths, '..' escapes, links and special files are
    refused, and each regular file is written with its bytes and mtime only. Written out rather than with
    tarfile's `data` filter, which Python gained in 3.11.4 (Debian 12 ships 3.11.2). Entries may start with `./`
    (`tar -czf x.tar.gz .`)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            for member in members:
                _extract_member(tar, member, dest)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(f"cannot read bundle {archive}: {_reason(exc)}") from None
    roots = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    single_root = dest / next(iter(roots)) if len(roots) == 1 else dest
    return single_root if single_root.is_dir() and not (dest / MANIFEST).is_file() else dest


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise BundleError(f"unsafe archive member {name[:80]!r}: absolute path")
    if ".." in PurePosixPath(name).parts:
        raise BundleError(f"unsafe archive member {name[:80]!r}: '..' in path")
    if member.issym() or member.islnk():
        raise BundleError(f"unsafe archive member {name[:80]!r}: links are not allowed")
    if not (member.isfile() or member.isdir()):
        raise BundleError(f"unsafe archive member {name[:80]!r}: not a regular file")


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    parts = [part for part in PurePosixPath(member.name).parts if part != "."]
    if not parts:
        return
    target = dest.joinpath(*parts)
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    with source, open(target, "xb") as out:  # "x": a second member of the same name is refused, not merged
        shutil.copyfileobj(source, out)
    os.utime(target, (member.mtime, member.mtime))


def _reason(exc: BaseException) -> str:
    """An OS error's cause without the (possibly very long) file name it carries."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)[:200]


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
DIMS = "a list of dimensions (whole numbers, or names for free ones)"
LEVEL = "one of ORT_DISABLE_ALL, ORT_ENABLE_BASIC, ORT_ENABLE_EXTENDED, ORT_ENABLE_ALL"
MODE = "ORT_SEQUENTIAL or ORT_PARALLEL"
THREADS = "a whole number from 0 to 1024"
# The session options a consumer applies, where the manifest gives them.
SESSION_VALUES = {"graph_optimization_level": LEVEL, "execution_mode": MODE, "intra_op_num_threads": THREADS,
                  "config_entries": MAPPING}


def _values(manifest: dict) -> list[tuple[str, object, str]]:
    pre, target, golden, ood = manifest["preprocessing"], manifest["target"], manifest["golden"], manifest["ood"]
    found = [("preprocessing.scale", pre.get("scale"), NUMBER), ("preprocessing.mean", pre.get("mean"), NUMBERS),
             ("preprocessing.std", pre.get("std"), NUMBERS), ("model.file", manifest["model"].get("file"), TEXT),
             ("target.providers", target.get("providers"), TEXTS), ("target.session", target.get("session"), MAPPING),
             ("target.provider_options", target.get("provider_options", []), MAPPINGS),
             ("class_labels", manifest["class_labels"], TEXTS), ("golden.sets", golden["sets"], TEXTS),
             ("golden.pictures", golden.get("pictures", []), MAPPINGS), ("files", manifest["files"], MAPPING),
             ("ood.thresholds", ood.get("thresholds"), MAPPING),
             ("io.inputs", manifest["io"].get("inputs"), MAPPINGS), ("io.outputs", manifest["io"].get("outputs"),
                                                                       MAPPINGS)]
    for i, picture in enumerate(_listed(golden.get("pictures"))):
        found += [(f"golden.pictures[{i}].file", picture.get("file"), TEXT),
                  (f"golden.pictures[{i}].label", picture.get("label"), TEXT),
                  (f"golden.pictures[{i}].logits", picture.get("logits"), NUMBERS)]
    session = target.get("session") if isinstance(target.get("session"), dict) else {}
    found += [(f"target.session.{key}", session[key], wanted) for key, wanted in SESSION_VALUES.items()
              if key in session]
    thresholds = ood.get("thresholds") if isinstance(ood.get("thresholds"), dict) else {}
    found += [(f"ood.thresholds.{name}", value, NUMBER) for name, value in sorted(thresholds.items())]
    for kind in ("inputs", "outputs"):
        for i, entry in enumerate(_listed(manifest["io"].get(kind))):
            found += [(f"io.{kind}[{i}].name", entry.get("name"), TEXT),
                      (f"io.{kind}[{i}].shape", entry.get("shape"), DIMS),
                      (f"io.{kind}[{i}].dtype", entry.get("dtype"), TEXT)]
    return found


def _listed(value) -> list[dict]:
    """The objects of a list value (the rest is refused by its own entry in _values)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _is(value, wanted: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if wanted == NUMBER:
        return number
    if wanted == TEXT:
        return isinstance(value, str)
    if wanted == MAPPING:
        return isinstance(value, dict)
    if wanted in (LEVEL, MODE):
        return isinstance(value, str) and value in wanted.replace(" or ", ", ").removeprefix("one of ").split(", ")
    if wanted == THREADS:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1024
    if wanted == DIMS:
        return isinstance(value, list) and all(
            isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in value)
    item = {NUMBERS: NUMBER, TEXTS: TEXT, MAPPINGS: MAPPING}[wanted]
    return isinstance(value, list) and bool(value or wanted == MAPPINGS) and all(_is(v, item) for v in value)


def check_files(bundle: Path, manifest: dict) -> int:
    """Every listed file matches its sha256; every file present is listed. Returns files checked."""
    listed = manifest["files"]
    for name, expected in sorted(listed.items()):
        path = bundle / name
        if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
            raise BundleError(f"manifest lists an unsafe path {name[:80]!r}")
        if not _is_file(path):
            raise BundleError(f"missing file {_short(name)} (listed in {MANIFEST} `files`)")
        if not isinstance(expected, str) or sha256(path) != expected:
            raise BundleError(f"sha256 mismatch for {name}: the file was modified after packaging")
    present = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() or p.is_symlink()}
    unlisted = sorted(present - set(listed) - set(UNLISTED))
    if unlisted:
        raise BundleError(f"unlisted file {unlisted[0]} in bundle (not in {MANIFEST})")
    return len(listed)


def _is_file(path: Path) -> bool:
    """A regular file; a name the file system cannot even look up (too long, say) is not one."""
    try:
        return path.is_file()
    except OSError:
        return False


def _short(name: str) -> str:
    return name if len(name) <= 80 else f"{name[:60]}… ({len(name)} characters)"
