"""Verify a deployment bundle: every file's sha256, the manifest, and the golden outputs on the target's provider.

Standalone: needs only the standard library, numpy and onnxruntime (the golden pictures are PAM files that go
through the bundle's own preparation, so an edited manifest or digits.py fails). Ships inside each bundle:
    python verify.py BUNDLE_DIR_OR_TAR_GZ [--provider NAME] [--allow-fallback] [--sha256 HEX_OR_FILE]
                     [--public-key PEM] [--json] [--record FILE --record-key PEM]
The golden check runs on the target's own first provider (or --provider NAME) alone, with ONNX Runtime's
silent CPU fallback refused; --allow-fallback runs it on what this onnxruntime has and says "not verified on".
The first line says what was established about the files: consistent, authentic, or signature present.
--record FILE --record-key PEM writes, after a check on the provider itself (never a fallback), the evidence
`package` copies into `verified_on` on a machine without that provider: an in-toto statement (the files checked as
subjects; this checker's digest, the runtime package and version, the device and the golden results as predicate)
in a DSSE envelope signed with the verifier's EC key (evidence.py; needs `cryptography`).
Exit 0: verified. 1: the model runs but its outputs drift from the golden outputs beyond the manifest's
tolerance. 2: the bundle itself is bad (tampered, missing or unlisted file, unsafe archive member, invalid
manifest). 3: not verified here: the provider is missing from this onnxruntime, or could not run the model, or
numpy or onnxruntime is not installed.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

if __package__:
    from .authenticity import established, load_private_key, opened_bundle
    from .contents import MANIFEST, BundleError, check_files, content_digest, load_manifest
    from .evidence import write_record
    from .golden import GoldenMismatch, check_all
    from .session import ProviderMissing, check_io, open_on
else:  # run as a script inside an extracted bundle, where its sibling modules sit beside it
    _prefix, sys.dont_write_bytecode = sys.pycache_prefix, True  # never write bytecode into the bundle, nor read
    sys.pycache_prefix = str(Path(__file__).resolve().parent / "__no_bytecode__")  # a .pyc planted in __pycache__
    try:
        from authenticity import established, load_private_key, opened_bundle
        from contents import MANIFEST, BundleError, check_files, content_digest, load_manifest
        from evidence import write_record
        from golden import GoldenMismatch, check_all
        from session import ProviderMissing, check_io, open_on
    except ImportError as missing:  # numpy: what this Python lacks, in one line
        print(f"not verified: {missing.name} is not installed in this Python: pip install numpy and the onnxruntime "
              "package the model card names", file=sys.stderr)
        sys.exit(3)
    finally:
        sys.pycache_prefix = _prefix


def verify(path: Path, provider: str | None = None, sha256_expected: str | None = None,
           public_key: Path | None = None, allow_fallback: bool = False) -> dict:
    """Verify a bundle directory or .tar.gz; returns a report, raises BundleError / GoldenMismatch /
    ProviderMissing. The golden check runs on `provider` (default: the target's first) alone, unless
    `allow_fallback`; with `sha256_expected` (hex, or a .sha256 file), the .tar.gz must be the published one;
    with `public_key` (PEM), model.sig must be the producer's OpenSSF model signature of every file (and
    provenance.intoto.json signed by the same key). Without either, the files are only shown consistent with the
    manifest, which anyone could rewrite."""
    path = Path(path)
    with opened_bundle(path, sha256_expected, public_key) as bundle:
        manifest = load_manifest(bundle)
        files = check_files(bundle, manifest)
        wanted = provider or manifest["target"]["providers"][0]
        opened = open_on(bundle, manifest, wanted, allow_fallback)
        check_io(manifest, opened)
        golden = check_all(bundle, manifest, opened)
        return {"bundle": str(path), "target": manifest["target"].get("name"), "files_checked": files,
                "bundle_sha256": content_digest(manifest["files"]), "model_sha256": manifest["files"][
                    manifest["model"]["file"]],
                **established(bundle, sha256_expected, public_key), "providers": opened.get_providers(),
                "wanted_provider": wanted, "verified_on_provider": opened.get_providers()[0] == wanted,
                **runtime_facts(), **golden, "files": manifest["files"]}


def runtime_facts() -> dict:
    """What ran the check: the onnxruntime build and the machine as this process sees it."""
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "machine": platform.machine()}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python verify.py", description="Check every sha256, the manifest and the golden outputs of a bundle.")
    parser.add_argument("bundle", help="the bundle folder or its .tar.gz")
    parser.add_argument("--provider", help="run the golden check on this execution provider alone (default: the "
                                           "target's first)")
    parser.add_argument("--allow-fallback", action="store_true", help="check on the target's providers this "
                        "onnxruntime has (CPU last) when the wanted one is missing; says not verified on it")
    parser.add_argument("--sha256", help="the published sha256 of the .tar.gz (hex, or its .sha256 file)")
    parser.add_argument("--public-key", type=Path, help="the producer's public key (PEM): model.sig must be its "
                                                          "OpenSSF model signature of every file (needs model-signing)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--record", type=Path, help="after a check on the provider itself, write the evidence the "
                        "producer's `package` copies into verified_on (exit 3 if the provider did not run it)")
    parser.add_argument("--record-key", type=Path, help="the verifier's EC private key (PEM) that signs --record")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.record and args.allow_fallback:
        print("error: --record proves a provider ran the bundle: it cannot be combined with --allow-fallback",
              file=sys.stderr)
        return 2
    if bool(args.record) != bool(args.record_key):
        print("error: --record and --record-key go together: a record counts only signed by a verifier's key",
              file=sys.stderr)
        return 2
    try:
        if args.record_key:
            load_private_key(args.record_key)  # a key that cannot sign fails now, before the check
        report = verify(Path(args.bundle), args.provider, args.sha256, args.public_key, args.allow_fallback)
    except ProviderMissing as exc:
        return _failed(3, f"not verified: {exc}", args.json)
    except BundleError as exc:
        return _failed(2, f"error: {exc}", args.json)
    except GoldenMismatch as exc:
        return _failed(1, f"verification failed: {exc}", args.json)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:  # a value no check above foresaw
        return _failed(2, f"error: {MANIFEST} holds a value this checker cannot use ({type(exc).__name__}: {exc})",
                       args.json)
    if args.record:
        write_record(args.record, report, report["files"], Path(__file__), args.record_key)
        print(f"recorded the check on {report['providers'][0]} in {args.record}, signed", file=sys.stderr)
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "files"}))
        return 0
    print("\n".join(summary_lines(report)))
    return 0


def _failed(code: int, line: str, as_json: bool) -> int:
    """The one line on stderr; with --json, also {"verified": false, "exit": code, "reason": line} on stdout, so a
    script reading stdout learns why."""
    print(line, file=sys.stderr)
    if as_json:
        print(json.dumps({"verified": False, "exit": code, "reason": line}))
    return code


def summary_lines(report: dict) -> list[str]:
    """What a person reads: first what was established about the files, then what the golden check proved."""
    checked = (f"{report['golden_samples']} golden samples and {report['golden_pictures']} pictures on "
               f"{report['providers'][0]}, max |Δ| {report['max_abs_delta']:.3g}")
    verdict = f"verified {report['target']}" if report["verified_on_provider"] else (
        f"not verified on {report['wanted_provider']} (--allow-fallback): {report['target']} checked")
    return [f"{report['established']}: {report['files_checked']} files match {MANIFEST}; {report['because']}",
            f"{verdict}: {checked}"]


if __name__ == "__main__":
    sys.exit(main())
