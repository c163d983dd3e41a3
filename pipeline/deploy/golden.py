"""The golden check every Python consumer of a bundle makes before it answers (verify.py, and infer.py before it
classifies): the golden tensors on the opened session, and the golden pictures through the bundle's own
preparation. Ships inside each bundle beside verify.py; needs only numpy and onnxruntime.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

if __package__:
    from .contents import BundleError, read_tensor
    from .digits import NoInk, NotAPicture, normalized, prepare, read_netpbm
else:  # run as a script inside an extracted bundle, where its sibling modules sit beside it
    _prefix, sys.dont_write_bytecode = sys.pycache_prefix, True  # never write bytecode into the bundle
    sys.pycache_prefix = str(Path(__file__).resolve().parent / "__no_bytecode__")
    try:
        from contents import BundleError, read_tensor
        from digits import NoInk, NotAPicture, normalized, prepare, read_netpbm
    finally:
        sys.pycache_prefix = _prefix


class GoldenMismatch(Exception):
    """The model ran, but its outputs differ from the golden outputs beyond tolerance (exit 1)."""


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
    """Each raw picture (netpbm, which every consumer decodes itself), prepared by the bundle's own code with the
    manifest's preprocessing, gives the recorded logits (within atol) and, through class_labels, the recorded
    label."""
    atol = manifest["golden"]["tolerance"]["atol"]
    pictures = manifest["golden"].get("pictures", [])
    for picture in pictures:
        try:
            rgba = read_netpbm((bundle / picture["file"]).read_bytes())
        except NotAPicture as exc:
            raise BundleError(f"golden picture {picture['file']}: {exc}") from None
        except OSError:
            raise BundleError(f"golden picture {picture['file']}: missing") from None
        try:
            pixels = prepare(rgba, *session.get_inputs()[0].shape[2:])
        except NoInk as exc:
            raise GoldenMismatch(f"{picture['file']}: the bundle's preparation refuses it: {exc}") from None
        x = normalized(pixels[None], manifest["preprocessing"])
        logits = session.run(None, {session.get_inputs()[0].name: x})[0][0]
        label = manifest["class_labels"][int(logits.argmax())]
        delta = float(np.abs(logits.astype(np.float64) - np.asarray(picture["logits"])).max())
        if label != picture["label"] or not delta <= atol:
            raise GoldenMismatch(
                f"{picture['file']}: prepared as the manifest says, the model answers {label} (max |Δ| {delta:.3g} "
                f"from the recorded logits, atol {atol:g}) where {picture['label']} was recorded: preprocessing, "
                "class_labels or the preparation code changed")
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


def check_all(bundle: Path, manifest: dict, session) -> dict:
    """The golden tensors and the golden pictures; returns what was compared."""
    report = check_golden(bundle, manifest, session)
    report["golden_pictures"] = check_golden_pictures(bundle, manifest, session)
    return report
