"""Is it a digit at all? Calibrating the bundle's "not a digit?" flag on the shipped model.

The flag (digits.not_a_digit, ported to digits.mjs) holds the prepared 28x28 and the model's answer against six
bounds (digits.CHECKS): too little or too much ink, too many separate pieces, too wide, too solid (a blob or a
photo), and too low an energy (logsumexp of the logits: no class fits). The bounds are measured here, for the
model a bundle ships, through the bundle's own preparation (digits.prepare) and the session options it ships
with:

- the MNIST test set is split by index: even images calibrate, odd images are held out;
- each bound may cut off one tail (TAILS) of the calibration digits, rounded outwards onto a coarse grid
  (GRID, so float noise on another CPU cannot move it); of every combination of tails that rejects at most
  CALIBRATION_BUDGET of the calibration digits together, the one that flags the most synthetic non-digits of
  the calibration set (seed SEED_CALIBRATE) is kept;
- then the rule is measured where it was not fitted: the false-rejection rate on the held-out digits (it must be
  at most MAX_FALSE_REJECTION, else the stage fails) and the detection rate on a second synthetic set (seed
  SEED_MEASURE).

The synthetic non-digits come from pipeline/packaging/non_digits.py. What does not depend on the model (each
picture through the bundle's preparation, and its ink statistics) is kept under .cache/ood/, keyed by the
digest of its inputs, so a run's six targets prepare the pictures once.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

from pipeline.core.errors import CalibrationFailure
from pipeline.core.io import exclusive, sha256_file, write_bytes
from pipeline.data import mnist
from pipeline.deploy import digits
from pipeline.deploy.infer import run_in_batches
from pipeline.packaging import non_digits

CALIBRATION_BUDGET = 0.005   # share of calibration digits the bounds may reject together
MAX_FALSE_REJECTION = 0.01   # the held-out false-rejection rate a shipped rule must stay within
TAILS = (0.0, 0.0005, 0.001, 0.002, 0.003, 0.005)  # the tails a single bound may cut off (0: the extreme digit)
GRID = {"ink_fraction": 0.005, "components": 1, "aspect": 0.05, "solid": 0.01, "energy": 0.25}
SEED_CALIBRATE, SEED_MEASURE = 1, 2
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "ood"
SETS = ("calibration", "held_out", "fake_calibration", "fake_measure")


def calibrate(session, data_dir: Path, fixed_batch: int | None, pre: dict) -> dict:
    """The manifest's `ood` block for the model behind `session`: thresholds, how they were fitted, and the
    measured rates. Fails (CalibrationFailure) where the held-out false-rejection rate exceeds MAX_FALSE_REJECTION."""
    sets = prepared_sets(Path(data_dir))
    digit_stats = [s for s in statistics(session, sets["calibration"], fixed_batch, pre) if s is not None]
    fake_stats = statistics(session, sets["fake_calibration"], fixed_batch, pre)
    thresholds = fit(digit_stats, fake_stats)
    held_out = sets["held_out"]
    rejected = sum(bool(_flag(s, thresholds)) for s in statistics(session, held_out, fixed_batch, pre))
    kinds = sets["fake_measure_kinds"]
    measured = statistics(session, sets["fake_measure"], fixed_batch, pre)
    # A picture refused as blank is never labelled, but it is not a detection either: counted apart.
    blank = [stats is None for stats in measured]
    flagged = [stats is not None and bool(_flag(stats, thresholds)) for stats in measured]
    by_kind = {kind: _per_kind(kind, kinds, flagged, blank) for kind in non_digits.KINDS}
    labelled = len(flagged) - sum(blank)
    rate = rejected / len(held_out["ink"])
    block = {
        "rule": "flagged as not a digit when any bound is crossed: statistics of the prepared 28x28 (ink: pixels at "
                "least half as bright as the brightest; pieces: 8-connected) and energy = logsumexp(logits)",
        "thresholds": thresholds,
        "calibration": {"digits": f"{len(sets['calibration']['ink'])} MNIST test digits (even indices)",
                        "non_digits": f"{len(fake_stats)} synthetic non-digits (seed {SEED_CALIBRATE})",
                        "budget": CALIBRATION_BUDGET},
        "measured": {
            "false_rejection": {"samples": len(held_out["ink"]), "rejected": rejected, "rate": round(rate, 6),
                                "data": "held-out MNIST test digits (odd indices, not used for calibration)"},
            "detection": {"samples": labelled, "detected": sum(flagged), "rate": round(sum(flagged) / labelled, 6),
                          "refused_blank": sum(blank),
                          "data": f"synthetic non-digits (seed {SEED_MEASURE}, not used for calibration) that were "
                                  "not refused as blank",
                          "by_kind": by_kind},
        },
    }
    if rate > MAX_FALSE_REJECTION:
        raise CalibrationFailure(f"the not-a-digit rule rejects {rejected} of {len(held_out['ink'])} held-out MNIST "
                                 f"test digits ({rate:.2%}), over {MAX_FALSE_REJECTION:.0%}")
    return block


def _per_kind(kind: str, kinds: list[str], flagged: list[bool], blank: list[bool]) -> str:
    """"flagged/classified" for one kind, and how many of its pictures were refused as blank."""
    mine = [i for i, k in enumerate(kinds) if k == kind]
    refused = sum(blank[i] for i in mine)
    shown = f"{sum(flagged[i] for i in mine)}/{len(mine) - refused}"
    return shown + (f" ({refused} refused as blank)" if refused else "")


def prepared_sets(data_dir: Path) -> dict:
    """Every picture of the four sets through the bundle's preparation, with its ink statistics: what does not
    depend on the model, so it is computed once per data and code and kept under .cache/ood/ (the file's name is
    the digest of MNIST, digits.py, non_digits.py and this module: a cache can only be reused for the same
    inputs, and the results are the same with or without it)."""
    data = mnist.load(Path(data_dir))
    key = hashlib.sha256(f"{mnist.digest(Path(data_dir))}{_source_digest()}".encode()).hexdigest()[:16]
    cached = CACHE / f"{key}.npz"
    with exclusive(cached):
        if not cached.is_file():
            _save(cached, _prepare_sets(data))
    return _load(cached)


def _prepare_sets(data) -> dict:
    test = [_rgba(image) for image in data.test_images]
    measured = non_digits.synthetic(data.train_images, SEED_MEASURE)
    return {"calibration": prepare_all(test[0::2]), "held_out": prepare_all(test[1::2]),
            "fake_calibration": prepare_all([p for _, p in non_digits.synthetic(data.train_images,
                                                                                  SEED_CALIBRATE)]),
            "fake_measure": prepare_all([p for _, p in measured]), "fake_measure_kinds": [k for k, _ in measured]}


def _save(path: Path, sets: dict) -> None:
    """Arrays and JSON only (no pickle: a cache file is never code)."""
    arrays = {f"{name}.pictures": np.stack(value["pictures"]) for name, value in sets.items() if name in SETS}
    meta = {name: value["ink"] for name, value in sets.items() if name in SETS}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, meta=np.array(json.dumps({"ink": meta, "kinds": sets["fake_measure_kinds"]})))
    write_bytes(path, buffer.getvalue())


def _load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as saved:
        meta = json.loads(str(saved["meta"]))
        sets = {name: {"pictures": list(saved[f"{name}.pictures"]), "ink": meta["ink"][name]} for name in SETS}
    return {**sets, "fake_measure_kinds": meta["kinds"]}


def _source_digest() -> str:
    return "".join(sha256_file(Path(module.__file__)) for module in (digits, non_digits, sys.modules[__name__]))


def prepare_all(pictures: list[np.ndarray]) -> dict:
    """Each picture through the bundle's preparation: the prepared 28x28 and its ink statistics (None: refused
    as blank, which a consumer reports as an error, never a label)."""
    prepared = []
    for picture in pictures:
        try:
            prepared.append(digits.prepare(picture))
        except digits.NoInk:
            prepared.append(None)
    return {"pictures": [p for p in prepared if p is not None],
            "ink": [None if p is None else digits.ink_stats(p) for p in prepared]}


def statistics(session, prepared: dict, fixed_batch: int | None, pre: dict) -> list[dict]:
    """Ink statistics plus the model's logits, per picture of a prepared set."""
    x = digits.normalized(np.stack(prepared["pictures"]), pre)
    logits = iter(run_in_batches(session, x, fixed_batch, step=512))
    return [None if ink is None else {**ink, "logits": next(logits)} for ink in prepared["ink"]]


def fit(digit_stats: list[dict], fake_stats: list[dict]) -> dict:
    """The bounds, one tail of TAILS each, that flag the most calibration non-digits while rejecting at most
    CALIBRATION_BUDGET of the calibration digits together: every combination is tried (ties: fewer digits
    rejected, then the earlier combination with tails in increasing order)."""
    fakes = [s for s in fake_stats if s is not None]
    keys = [(name, side) for name, side, _ in digits.CHECKS]
    digit_values = {name: np.array([_value(s, name) for s in digit_stats]) for name, _ in keys}
    fake_values = {name: np.array([_value(s, name) for s in fakes]) for name, _ in keys}
    bounds = [[_bound(digit_values[name], name, side, tail) for tail in TAILS] for name, side in keys]
    # Which digits and which non-digits each (check, tail) flags, packed into bits for the search below.
    digit_bits = np.array([[np.packbits(_crosses(digit_values[name], side, b)) for b in row]
                           for (name, side), row in zip(keys, bounds, strict=True)])
    fake_bits = np.array([[np.packbits(_crosses(fake_values[name], side, b)) for b in row]
                          for (name, side), row in zip(keys, bounds, strict=True)])
    popcount = np.array([bin(i).count("1") for i in range(256)])
    combos = np.array(list(itertools.product(range(len(TAILS)), repeat=len(keys))))
    digit_out = np.zeros((len(combos), digit_bits.shape[2]), np.uint8)
    fake_out = np.zeros((len(combos), fake_bits.shape[2]), np.uint8)
    for k in range(len(keys)):
        digit_out |= digit_bits[k][combos[:, k]]
        fake_out |= fake_bits[k][combos[:, k]]
    rejected, detected = popcount[digit_out].sum(1), popcount[fake_out].sum(1)
    allowed = rejected <= CALIBRATION_BUDGET * len(digit_stats)
    best = int(np.lexsort((np.arange(len(combos)), rejected, -detected, ~allowed))[0])
    return {f"{name}_{side}": bounds[k][combos[best, k]] for k, (name, side) in enumerate(keys)}


def _bound(values: np.ndarray, name: str, side: str, tail: float) -> float:
    """The bound that leaves at most `tail` of the digits beyond it, rounded outwards onto the grid."""
    grid = GRID[name]
    if side == "min":
        return round(math.floor(float(np.quantile(values, tail, method="lower")) / grid) * grid, 6)
    return round(math.ceil(float(np.quantile(values, 1 - tail, method="higher")) / grid) * grid, 6)


def _crosses(values: np.ndarray, side: str, bound: float) -> np.ndarray:
    return values < bound if side == "min" else values > bound


def _value(stats: dict, name: str) -> float:
    return digits.energy(stats["logits"]) if name == "energy" else float(stats[name])


def _flag(stats: dict | None, thresholds: dict) -> list[str]:
    """A refused (blank) picture counts as flagged: it is never labelled."""
    return ["no ink"] if stats is None else digits.not_a_digit(stats, stats["logits"], thresholds)


def _rgba(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray, np.uint8)
    return np.dstack([gray, gray, gray, np.full_like(gray, 255)])
