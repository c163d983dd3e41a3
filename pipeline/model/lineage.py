"""Lineage: what each ONNX variant was built from, by content digest, so nothing stale is scored or shipped.

Every variant carries, in its metadata, the digest of the checkpoint it descends from and the digest of
the file it was derived from (checkpoint → exported → simplified → each variant). validate, package and
bench refuse any variant whose recorded digests do not match the files on disk now. Digests, not the git
commit: the same inputs give the same bytes on any commit, and a rerun that changes nothing stays a no-op.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.core.config import invocation
from pipeline.core.errors import PipelineError
from pipeline.core.io import sha256_file
from pipeline.model import onnx_utils
from pipeline.model.checkpoint import SPEC, WEIGHTS

KEY = "lineage"
# Each variant's parent, for the chain check: a variant built from an older `simplified` is stale too.
PARENTS = {"exported": None, "simplified": "exported", "optimized": "simplified", "fp16": "simplified",
           "pruned_exported": None, "pruned": "pruned_exported"}
DEFAULT_PARENT = "simplified"  # every quantize variant
FROM_EXPORT = ("exported", "simplified", "optimized", "fp16", "pruned_exported", "pruned")  # `pipeline export`'s chain
# Variants that descend from the pruned checkpoint (the prune stage's), not the trained one.
PRUNED = ("pruned_exported", "pruned")


def checkpoint_of(variant: str) -> str:
    """Which checkpoint a variant descends from: "pruned" or "model" (the config's paths.<that>)."""
    return "pruned" if variant in PRUNED else "model"


PRUNED_FROM = "pruned_from"  # the pruned checkpoint's model.json: the digest of the checkpoint it was pruned from
# ... and prune's accuracy gate on it: {"passed": bool, "drop_upper_pt": …, "max_drop_pt": …}. A pruned checkpoint
# that failed its gate is written (to look at), but no stage exports, validates or ships it.
ACCURACY_GATE = "accuracy_gate"


def checkpoint_digests(model_dir: Path, pruned_dir: Path | None) -> dict[str, str]:
    """{"model": digest, "pruned": digest} of the checkpoints on disk now; no "pruned" where pruned_dir holds no
    usable pruned checkpoint of this model (why_no_pruned says why)."""
    digests = {"model": checkpoint_digest(model_dir)}
    if pruned_dir is not None and why_no_pruned(pruned_dir, digests["model"]) is None:
        digests["pruned"] = checkpoint_digest(pruned_dir)
    return digests


def why_no_pruned(pruned_dir: Path, model_digest: str) -> str | None:
    """Why pruned_dir holds no pruned checkpoint to build variants from, in words; None where it holds one: pruned
    from the checkpoint whose digest is model_digest (not from a model trained since) and past its accuracy gate."""
    written = _pruned_spec(Path(pruned_dir))
    if written is None:
        return f"{pruned_dir} holds no pruned checkpoint (run `pipeline prune`)"
    if written.get(PRUNED_FROM) != model_digest:
        return f"{pruned_dir} was pruned from another checkpoint than the current model (run `pipeline prune`)"
    gate = written.get(ACCURACY_GATE)
    if not isinstance(gate, dict) or gate.get("passed") is not True:
        bound = f" (drop upper bound {gate.get('drop_upper_pt')} > {gate.get('max_drop_pt')} pt)" \
            if isinstance(gate, dict) else ""
        return f"{pruned_dir} failed prune's accuracy gate{bound}: see metrics/prune.json for the settings past it"
    return None


def _pruned_spec(pruned_dir: Path) -> dict | None:
    spec = pruned_dir / SPEC
    if not (pruned_dir / WEIGHTS).is_file() or not spec.is_file():
        return None
    try:
        written = json.loads(spec.read_text())
    except json.JSONDecodeError:
        return None
    return written if isinstance(written, dict) else None


def checkpoint_digest(model_dir: Path) -> str:
    """sha256 over the checkpoint's files (weights and the spec that rebuilds the module)."""
    digest = hashlib.sha256()
    for name in (WEIGHTS, SPEC):
        file = Path(model_dir) / name
        if not file.is_file():
            raise PipelineError(f"missing checkpoint file {file} (run `pipeline train`)")
        digest.update(f"{name}:{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def record(checkpoint: str, parent: Path | None = None) -> dict:
    """The lineage entry for a new variant built from `parent` (None: straight from the checkpoint)."""
    entry = {"checkpoint_sha256": checkpoint}
    if parent is not None:
        entry["parent_sha256"] = sha256_file(parent)
    return entry


def read(model_path: Path) -> dict:
    """A variant's recorded lineage; {} for a model built before lineage existed (always stale)."""
    meta = onnx_utils.metadata(onnx_utils.load(model_path, check=False))
    try:
        return json.loads(meta.get(KEY, "{}"))
    except json.JSONDecodeError:
        return {}


def inherit(parent_path: Path) -> str:
    """The checkpoint digest a derived variant inherits from its parent file."""
    checkpoint = read(parent_path).get("checkpoint_sha256")
    if not checkpoint:
        raise PipelineError(f"{parent_path} records no lineage (built by an older pipeline): "
                            f"{rebuild_advice([Path(parent_path).parent.name])}")
    return checkpoint


def stale(variants: dict[str, Path], checkpoint: str | dict[str, str]) -> dict[str, str]:
    """{variant: why} for each variant not built from its checkpoint (`checkpoint`, or by checkpoint_of from
    checkpoint_digests) or from its parent file as it is now."""
    reasons = {}
    for name, path in variants.items():
        entry = read(path)
        current = checkpoint if isinstance(checkpoint, str) else checkpoint.get(checkpoint_of(name))
        if current is None:
            reasons[name] = "no pruned checkpoint of the current model (run `pipeline prune`)"
            continue
        if entry.get("checkpoint_sha256") != current:
            built = (entry.get("checkpoint_sha256") or "unknown")[:12]
            reasons[name] = f"built from checkpoint {built}, current is {current[:12]}"
            continue
        parent = PARENTS.get(name, DEFAULT_PARENT)
        parent_path = Path(path).parent.parent / parent / Path(path).name if parent else None
        if parent_path is not None and parent_path.is_file() and entry.get("parent_sha256") != sha256_file(parent_path):
            reasons[name] = f"built from an older {parent}"
    return reasons


def require_current(variants: dict[str, Path], model_dir: Path, *, stage: str, pruned_dir: Path | None = None
                    ) -> dict[str, str]:
    """The current checkpoint digests (checkpoint_digests), or one PipelineError line naming every stale variant."""
    checkpoint = checkpoint_digests(model_dir, pruned_dir)
    reasons = stale(variants, checkpoint)
    if reasons:
        listed = "; ".join(f"{name} ({why})" for name, why in reasons.items())
        raise PipelineError(f"{stage} refuses stale variant(s): {listed}; {rebuild_advice(list(reasons))}")
    return checkpoint


def rebuild_advice(variants: list[str]) -> str:
    """The commands that rebuild these variants from the current checkpoint, with the config this command
    ran with (the same overrides, or DVC's params.yaml)."""
    how = invocation()
    if how.params is not None:
        return f"rebuild with {how.command('export')}"
    commands = [f"`{how.command('export')}`"] if set(variants) & set(FROM_EXPORT) else []
    quantized = [v for v in variants if v not in FROM_EXPORT]
    commands += [f"`{how.command('quantize', '--variant', v)}`" for v in quantized]
    return "rebuild with " + " then ".join(commands)
