"""The regression gate before a release: the new bundle against the previous release's, on this machine.

Speed: both models, each opened as its bundle says (its session options, the CPU EP), timed interleaved in one
run (pipeline/measure/timing.py: rounds rotating the order, per-round medians, a bootstrap interval of the
ratio). The new one is slower only when the whole 95 % interval lies beyond the margin (10 %): an interval that
straddles it shows nothing, either way, and the gate then passes.
Accuracy: both models on the same test images; a paired bound (the accuracy-delta gate of
pipeline/model/parity.py) must show, at 95 % confidence, that the new one is at most 0.1 pt less accurate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data import mnist
from pipeline.deploy.infer import normalized
from pipeline.deploy.session import open_session
from pipeline.measure.timing import interleaved_rounds, interleaved_throughput, ratio_interval
from pipeline.model.parity import lower_bound


@dataclass(frozen=True)
class GateSettings:
    rounds: int = 8
    per_round: int = 40
    batch: int = 256
    slower_margin: float = 0.10       # slower by more than this, with the whole interval beyond it, fails
    accuracy_margin_pt: float = 0.1   # less accurate by more than this (paired bound) fails
    confidence: float = 0.95


def compare(new_bundle: Path, previous_bundle: Path, data_dir: Path, settings: GateSettings) -> dict:
    """Latency (batch 1), throughput (batch `settings.batch`) and accuracy of the new bundle over the previous."""
    new, old = _Model(new_bundle, data_dir), _Model(previous_bundle, data_dir)
    latency = interleaved_rounds({"new": new.one, "previous": old.one}, rounds=settings.rounds,
                                 per_round=settings.per_round, warmup=5)
    rates = interleaved_throughput({"new": new.many(settings.batch), "previous": old.many(settings.batch)},
                                   batch=settings.batch, rounds=settings.rounds,
                                   per_round=max(2, settings.per_round // 10))
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
        self.manifest = json.loads((bundle / "manifest.json").read_text())
        session_cfg = self.manifest["target"].get("session", {})
        self.session = open_session(bundle / self.manifest["model"]["file"], session_cfg,
                                    [("CPUExecutionProvider", {})])
        data = mnist.load(data_dir)
        self.x = normalized(data.test_images, self.manifest["preprocessing"])
        self.labels = data.test_labels.astype(np.int64)
        self.name = self.session.get_inputs()[0].name

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
