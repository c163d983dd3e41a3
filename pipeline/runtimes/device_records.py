"""Which records in metrics/device_runs/ prove something about a bundle, and why each other one does not.

A record (pipeline/deploy/evidence.py) counts only when all of these hold:
- it is a DSSE envelope of an in-toto statement with the device-run predicate (a JSON file typed by hand is not);
- one of its signatures verifies under a public key in `device_runs/verifiers/*.pub.pem` whose id (the sha256 of
  its DER SubjectPublicKeyInfo) `packaging.trusted_verifiers` lists: a record signed by any other key is refused,
  however correct its digests;
- its subjects are the very files of the bundle being built (every file but the model card) and its checker is
  the bundle's verify.py.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.deploy.authenticity import envelope_signers, key_id, signed_statement
from pipeline.deploy.contents import content_digest
from pipeline.deploy.evidence import FACTS, PREDICATE

VERIFIER_KEYS = "verifiers"  # device_runs/verifiers/<name>.pub.pem: the public halves of verifiers' keys
# Facts of a record that identify what it proved: matched here, not repeated in verified_on.
IDENTITY = ("target", "bundle_sha256", "checker_sha256")


@dataclass
class Judgement:
    """The records of one target: the facts of those that prove this bundle, and per provider why the others
    do not ("cuda.CUDAExecutionProvider.json: not signed ...")."""
    accepted: list[dict] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)


def judge(device_runs: Path, target: str, content: str, checker: str, trusted: dict[str, str]) -> Judgement:
    """Judge every record of `target` in `device_runs` against the bundle whose content digest is `content` and
    whose verify.py has sha256 `checker`; `trusted` maps a verifier's name to its key id."""
    keys = trusted_keys(Path(device_runs), trusted)
    judgement = Judgement()
    for file in sorted(Path(device_runs).glob("*.json")):
        claimed = _claimed(file)
        if claimed.get("target") != target:
            continue
        facts, why = _check(claimed, keys, trusted, content, checker)
        if why is None:
            judgement.accepted.append({**{k: v for k, v in facts.items() if k not in IDENTITY}, "record": file.name})
        else:
            judgement.refused.setdefault(str(claimed.get("provider")), []).append(f"{file.name}: {why}")
    return judgement


def trusted_keys(device_runs: Path, trusted: dict[str, str]) -> dict[str, tuple[str, object]]:
    """key id -> (verifier name, public key) for every key file whose id the config trusts."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    names = {kid.lower(): name for name, kid in trusted.items()}
    keys = {}
    for pem in sorted((device_runs / VERIFIER_KEYS).glob("*.pub.pem")):
        try:
            key = load_pem_public_key(pem.read_bytes())
        except ValueError:
            continue
        if key_id(key) in names:
            keys[key_id(key)] = (names[key_id(key)], key)
    return keys


def _claimed(file: Path) -> dict:
    """What a record claims before any check: its envelope and predicate, or the plain JSON typed by hand."""
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    try:
        envelope_signers(data)
        predicate = json.loads(base64.b64decode(data["payload"]))["predicate"]
        return {**predicate, "envelope": data}
    except (ValueError, KeyError, TypeError):
        return data


def _check(claimed: dict, keys: dict, trusted: dict[str, str], content: str, checker: str) -> tuple[dict, str | None]:
    """The record's verified facts, or why it proves nothing about this bundle."""
    envelope = claimed.get("envelope")
    if envelope is None:
        return {}, ("not a signed attestation (a record counts only as written by the bundle's `verify.py --record "
                    "FILE --record-key KEY`, signed by a trusted verifier)")
    signers = envelope_signers(envelope)
    known = [kid for kid in signers if kid in keys]
    named = {kid.lower(): name for name, kid in trusted.items()}
    if not known and any(kid in named for kid in signers):
        name = next(named[kid] for kid in signers if kid in named)
        return {}, f"signed by trusted verifier {name}, whose public key is not in device_runs/{VERIFIER_KEYS}/"
    if not known:
        ids = ", ".join(kid[:16] for kid in signers) or "no key"
        return {}, f"signed by {ids}, which packaging.trusted_verifiers does not list"
    name, key = keys[known[0]]
    try:
        statement = signed_statement(envelope, key)
    except ValueError as exc:
        return {}, f"unreadable: {exc}"
    if statement is None or statement.get("predicateType") != PREDICATE:
        return {}, f"its signature does not verify under trusted verifier {name}'s key"
    facts = statement.get("predicate", {})
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement.get("subject", [])}
    if content_digest(subjects) != content or facts.get("checker_sha256") != checker:
        return {}, f"records another build of it (content sha256 {content_digest(subjects)[:12]})"
    if not all(k in facts for k in FACTS):
        return {}, f"its predicate lacks {', '.join(k for k in FACTS if k not in facts)}"
    return {**facts, "verifier": name}, None
