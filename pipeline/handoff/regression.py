"""The regression gate before a release: the new bundle against the previous release's, on this machine.

Speed: both models, each opened as its bundle says (its session options, the CPU EP), timed interleaved in one
run (pipeline/measure/timing.py: rounds rotating the order, per-round medians, a bootstrap interval of the
ratio). The new one is slower only when the whole 95 % interval lies beyond the margin (10 %): an interval that
straddles it shows nothing, either way, and the gate then passes.
Accuracy: both models on the same test images; a paired bound (the accuracy-delta gate of
pipeline/model/parity.py) must show, at 95 % confidence, that the new one is at most 0.1 pt less accurate.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import PipelineError
from pipeline.data import mnist
from pipeline.deploy.infer import normalized
from pipeline.deploy.session import open_session
from pipeline.measure.timing import interleaved_rounds, interleaved_throughput, ratio_interval
from pipeline.model.parity import lower_bound

MIN_ROUNDS = 8  # fewer per-round ratios make a bootstrap interval narrower than the noise it should cover


@dataclass(frozen=True)
class GateSettings:
    rounds: int = MIN_ROUNDS
    per_round: int = 40
    batch: int = 256
    slower_margin: float = 0.10       # slower by more than this, with the whole interval beyond it, fails
    accuracy_margin_pt: float = 0.1   # less accurate by more than this (paired bound) fails
    confidence: float = 0.95


def compare(new_bundle: Path, previous_bundle: Path, data_dir: Path, settings: GateSettings) -> dict:
    """Latency (batch 1), throughput (batch `settings.batch`) and accuracy of the new bundle over the previous."""
    if settings.rounds < MIN_ROUNDS or settings.per_round < 10:
        raise PipelineError(f"the regression gate needs --rounds {MIN_ROUNDS} or more and --per-round 10 or more "
                            f"(got {settings.rounds} and {settings.per_round}): fewer cannot bound the noise")
    # Two sessions of each model, created new, previous, previous, new: a session's place in the order of creation
    # alone moved its batch-1 time by ~6 % here (the same model against itself), so each model's figure per round
    # is the geometric mean of an early and a late session.
    new, old = _Model(new_bundle, data_dir), _Model(previous_bundle, data_dir)
    sessions = {"new": new, "previous": old, "previous, late": old.again(), "new, late": new.again()}
    latency = _paired(interleaved_rounds({k: m.one for k, m in sessions.items()}, rounds=settings.rounds,
                                         per_round=settings.per_round, warmup=5))
    batch_runs = {k: m.many(settings.batch) for k, m in sessions.items()}
    rates = _paired(interleaved_throughput(batch_runs, batch=settings.batch, rounds=settings.rounds,
                                           per_round=max(4, settings.per_round // 10)))
    slow_1 = ratio_interval(latency["new"], latency["previous"], confidence=settings.confidence)
    fast_n = ratio_interval(rates["new"], rates["previous"], confidence=settings.confidence)
    right_new, right_old = new.correct(), old.correct()
    paired = {"samples": len(right_new), "newly_right": int((right_new & ~right_old).sum()),
              "newly_wrong": int((~right_new & right_old).sum())}
    bound = lower_bound("accuracy_delta_pt", paired, settings.confidence)
    checks = {
        "batch-1 latency": {"ratio": slow_1, "failed": slow_1["low"] > 1 + settings.slower_margin,
                            "reads": "new/previous time",
                            "shows_change": _shows(slow_1, settings, higher_is_worse=True)},
        f"batch-{settings.batch} throughput": {
            "ratio": fast_n, "failed": fast_n["high"] < 1 / (1 + settings.slower_margin),
            "reads": "new/previous images per second", "shows_change": _shows(fast_n, settings, higher_is_worse=False)},
        "accuracy": {"accuracy_new": float(right_new.mean()), "accuracy_previous": float(right_old.mean()),
                     **paired, "delta_pt_lower_bound": round(bound, 4),
                     "failed": bound < -settings.accuracy_margin_pt},
    }
    return {"settings": settings.__dict__, "checks": checks, "failed": [k for k, v in checks.items() if v["failed"]]}


def _paired(rounds: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per round, each model's early and late session combined (geometric mean)."""
    return {name: [float(np.sqrt(a * b)) for a, b in zip(rounds[name], rounds[f"{name}, late"], strict=True)]
            for name in ("new", "previous")}


def _shows(interval: dict, settings: GateSettings, *, higher_is_worse: bool) -> str | None:
    """What the interval shows beyond the margin either way (a change in the contract's latency), or None."""
    high, low = 1 + settings.slower_margin, 1 / (1 + settings.slower_margin)
    if interval["low"] > high:
        return "slower" if higher_is_worse else "faster"
    if interval["high"] < low:
        return "faster" if higher_is_worse else "slower"
    return None


def failure_line(result: dict, settings: GateSettings) -> str:
    """One line per failed check: the metric, its value and interval, the threshold, and the way past it."""
    parts = []
    for name in result["failed"]:
        check = result["checks"][name]
        if name == "accuracy":
            parts.append(f"accuracy: {check['accuracy_new']:.4f} vs {check['accuracy_previous']:.4f}; the paired "
                         f"{settings.confidence:.0%} bound on the change is {check['delta_pt_lower_bound']:+.3f} pt, "
                         f"below -{settings.accuracy_margin_pt} pt")
        else:
            r = check["ratio"]
            parts.append(f"{name}: {check['reads']} {r['ratio']:.2f} [{r['low']:.2f}, {r['high']:.2f}], wholly "
                         f"beyond the {settings.slower_margin:.0%} margin")
    return "; ".join(parts) + " (a release past it: --accept-regression \"<reason>\")"


class _Model:
    """A bundle's model, opened as the bundle says, on the CPU EP."""

    def __init__(self, bundle: Path, data_dir: Path):
        self.bundle, self.data_dir = bundle, data_dir
        self.manifest = json.loads((bundle / "manifest.json").read_text())
        self.session = self._open()
        data = mnist.load(data_dir)
        self.x = normalized(data.test_images, self.manifest["preprocessing"])
        self.labels = data.test_labels.astype(np.int64)
        self.name = self.session.get_inputs()[0].name

    def again(self) -> _Model:
        """Another session of the same model, opened the same way, on the same prepared images."""
        twin = copy.copy(self)
        twin.session = self._open()
        return twin

    def _open(self):
        return open_session(self.bundle / self.manifest["model"]["file"], self.manifest["target"].get("session", {}),
                            [("CPUExecutionProvider", {})])

    def one(self):
        return self.session.run(None, {self.name: self.x[:1]})

    def many(self, batch: int):
        chunk = self.x[:batch]
        return lambda: self.session.run(None, {self.name: chunk})

    def correct(self) -> np.ndarray:
        logits = np.concatenate([self.session.run(None, {self.name: self.x[i:i + 1000]})[0]
                                 for i in range(0, len(self.x), 1000)])
        labels = self.manifest["class_labels"]
        predicted = np.array([int(labels[i]) if labels[i].isdigit() else -1 for i in logits.argmax(1)])
        return predicted == self.labels
