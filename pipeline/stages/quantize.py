"""Quantize an fp32 ONNX model to INT8 with ONNX Runtime, with an accuracy-aware fallback.

Inputs:  model_in (the simplified fp32 model: portable, no ORT-specific fused ops), model_dir (the PyTorch
         reference), data_dir
Outputs: out_dir/model.onnx with its lineage; metrics: sizes, quantized/excluded nodes and why, parity vs
         PyTorch, and whether the variant passes validate's gates for its kind (`within_budget`)
Static:  quant_pre_process, then quantize_static with a seeded calibration reader over training images.
         If the result fails any of validate's gates for INT8 (agreement, cosine, accuracy delta, …), units
         (an op, or every op of a type) are ranked by sensitivity (the logit error when that unit alone stays
         fp32); then, one step at a time, the `fallback.trials` most sensitive units left are each measured and
         the one that helps most stays fp32, only if it measurably helps (agreement never falls), until every
         gate passes or `fallback.max_excluded` is reached. An out-of-budget variant's advice is measured too:
         the search goes on past the budget to name the max_excluded that passes, or to say that none does.
Dynamic: quantize_dynamic (weights only). On CNNs its ConvInteger runs several times slower than fp32
         on the CPU EP; it is kept for completeness and the benchmark shows the cost.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import ParityGateFailure, PipelineError, UnloadableModel
from pipeline.core.io import atomic_dir
from pipeline.core.stage import Stage, StageResult
from pipeline.data.mnist import test_batch
from pipeline.model import lineage, onnx_utils, parity
from pipeline.model import reference as torch_reference
from pipeline.model.quantization import (
    DYNAMIC_NOTE,
    Quantization,
    QuantizeConfig,
    describe,
    gate_kind,
    quantized_nodes,
)


def run(cfg: QuantizeConfig, gates: dict, confidence: float, model_in: Path, model_dir: Path, data_dir: Path,
        out_dir: Path, *, variant: str, seed: int) -> StageResult:
    if cfg.mode == "static" and cfg.calibration is None:
        raise PipelineError(f"quantize.{variant}: static quantization needs a `calibration` section")
    kind = gate_kind(cfg)
    parity.require_decidable({kind: gates[kind]}, cfg.eval_samples, confidence,
                             setting=f"quantize.{variant}.eval_samples")
    checkpoint = lineage.require_current({"simplified": Path(model_in)}, Path(model_dir), stage="quantize")["model"]
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch_name:
        quantization = Quantization(cfg, Path(model_in), Path(data_dir), Path(scratch_name), seed)
        search = _Search(quantization, variant, gates[kind], confidence, Path(model_dir))
        best, record = search.quantize_within_budget()
        with atomic_dir(Path(out_dir)) as staging:
            final = staging / onnx_utils.MODEL_FILE
            model = onnx_utils.load(best)
            described = {**describe(cfg), "excluded_nodes": record["excluded_nodes"],
                         "within_budget": record["within_budget"]}
            onnx_utils.set_metadata(model, {"quantization": described,
                                            lineage.KEY: lineage.record(checkpoint, Path(model_in))})
            onnx_utils.save(model, final)
            summary = onnx_utils.graph_summary(model, final)
            int8_nodes = quantized_nodes(model)
    fp32_bytes = onnx_utils.model_bytes(Path(model_in))
    metrics = {
        **describe(cfg),
        "nodes": summary["nodes"],
        "ops": summary["ops"],
        "bytes": summary["bytes"],
        "fp32_bytes": fp32_bytes,
        "size_ratio": summary["bytes"] / fp32_bytes,
        "quantized_nodes": int8_nodes,
        **record,
    }
    if cfg.mode == "dynamic":
        metrics["note"] = DYNAMIC_NOTE
    notices = [] if record["within_budget"] else [
        f"out of budget: {'; '.join(record['failed_gates'])} (to get past it: {record['remedy']}); validate will "
        f"reject it unless validate.required lists it"]
    return StageResult(outputs={variant: Path(out_dir) / onnx_utils.MODEL_FILE}, metrics=metrics, notices=notices)


@dataclass
class _Attempt:
    """One quantization run with some units kept fp32: its model, its parity vs PyTorch (None: ONNX Runtime cannot
    load it), validate's verdicts on it and the gates it fails."""
    path: Path
    metrics: dict | None
    verdicts: dict
    failed: list[str]

    def key(self) -> tuple:
        """Better is larger: loadable, fewer failed gates, higher agreement, lower mean |Δlogit|."""
        if self.metrics is None:
            return (0,)
        return (1, -len(self.failed), self.metrics["agreement"], -self.metrics["mean_abs_logit"])

    def helps_over(self, other: _Attempt) -> bool:
        """Measurably better than `other`, with agreement not lower."""
        if self.metrics is None or self.key() <= other.key():
            return False
        return other.metrics is None or self.metrics["agreement"] >= other.metrics["agreement"]


class _Search:
    """One variant's gated search: quantization runs scored against PyTorch on `eval_samples` test images."""
    def __init__(self, quantization: Quantization, name: str, gates: dict, confidence: float, model_dir: Path):
        cfg = quantization.cfg
        self.quantization, self.cfg, self.name, self.gates = quantization, cfg, name, gates
        self.confidence = confidence
        self.eval_x, self.eval_y = test_batch(quantization.data_dir, cfg.eval_samples)
        self.reference = torch_reference.logits(model_dir, self.eval_x)

    def quantize_within_budget(self) -> tuple[Path, dict]:
        """Quantize; while validate's gates fail, keep in fp32 the unit that measurably helps most (of the
        `trials` most sensitive left), up to fallback.max_excluded. Past the budget the search goes on, only to
        say which budget passes, or that none does."""
        excluded = self.quantization.base_exclusions()
        current = self.attempt(list(excluded))
        record: dict = {"fallback": []}
        limit = self.cfg.fallback.max_excluded if self.cfg.fallback and self.cfg.mode == "static" else 0
        shipped, shipped_excluded, advice = current, dict(excluded), None
        if current.failed and limit:
            units = self.quantization.candidates(list(excluded))
            ranking = self.sensitivity_ranking(list(excluded), units)
            record["sensitivity"] = ranking
            remaining, kept = [name for name, _ in ranking], []
            while current.failed and remaining:
                step = self.best_step(excluded, units, remaining[: self.cfg.fallback.trials], current)
                if step is None:
                    break
                name, current = step
                remaining.remove(name)
                kept.append(name)
                group = f" (with {name}: {len(units[name])} nodes)" if units[name] != [name] else ""
                excluded.update(dict.fromkeys(units[name], f"kept fp32{group}: it measurably helped"))
                record["fallback"].append({"excluded": name, "within_budget": len(kept) <= limit,
                                           "failed_gates": current.failed, **_summary(current)})
                if len(kept) <= limit:
                    shipped, shipped_excluded = current, dict(excluded)
            advice = self.advice(kept, current) if shipped.failed else None
        if shipped.metrics is None:
            raise ParityGateFailure(f"quantize.{self.name}: ONNX Runtime cannot load any INT8 model the fallback "
                                    f"built ({shipped.failed[0]}): leave {self.name} out of `quantize=[...]`")
        record.update({
            "parity": {k: shipped.metrics[k] for k in ("samples", *parity.SUMMARY)},
            "gate_kind": gate_kind(self.cfg),
            "failed_gates": shipped.failed,
            "excluded_nodes": [{"node": n, "reason": r} for n, r in shipped_excluded.items()],
            "within_budget": not shipped.failed,
            "remedy": parity.remedy(self.name, gate_kind(self.cfg), shipped.verdicts, own=advice)
            if shipped.failed else None,
        })
        return shipped.path, record

    def best_step(self, excluded: dict, units: dict[str, list[str]], tried: list[str],
                  current: _Attempt) -> tuple[str, _Attempt] | None:
        """Of `tried`, the unit whose keeping in fp32 helps most over `current`; None when none helps."""
        best = None
        for name in tried:
            attempt = self.attempt([*excluded, *units[name]])
            if attempt.helps_over(current) and (best is None or attempt.key() > best[1].key()):
                best = (name, attempt)
        return best

    def advice(self, kept: list[str], last: _Attempt) -> str:
        """What the search past the budget measured: the budget that passes, or that none does."""
        if not last.failed:
            return (f"quantize.{self.name}.fallback.max_excluded={len(kept)} passes (measured: it keeps "
                    f"{', '.join(kept)} in fp32)")
        kept_text = f"keeping {', '.join(kept)} in fp32" if kept else "from the start"
        return (f"INT8 does not pass this model's gates with this preset: {kept_text}, none of the "
                f"{self.cfg.fallback.trials} most sensitive units left measurably helps (a larger "
                f"quantize.{self.name}.fallback.trials measures more of them at each step); or leave {self.name} "
                "out of `quantize=[...]`")

    def sensitivity_ranking(self, excluded: list[str], units: dict[str, list[str]]) -> list[tuple[str, float]]:
        """Each candidate unit's mean |Δlogit| vs PyTorch when only it stays fp32: lower error = more sensitive
        (the quoted figure, parity.quote; ties by name, so the order does not hang on the last bit of a float).
        A unit whose model ONNX Runtime cannot load ranks last."""
        scores = []
        for name, nodes in units.items():
            attempt = self.attempt([*excluded, *nodes])
            scores.append((name, attempt.metrics["mean_abs_logit"] if attempt.metrics else float("inf")))
        return sorted(scores, key=lambda item: (item[1], item[0]))

    def attempt(self, exclude: list[str]) -> _Attempt:
        """One quantization run: its path, its parity vs PyTorch, and the gates it fails. A model the quantizer
        built that ONNX Runtime cannot load is a failed attempt (this stage's doing, not the input's)."""
        out = self.quantization.run(exclude)
        try:
            metrics = parity.score(out, self.reference, self.eval_x, self.eval_y)
        except UnloadableModel as exc:
            return _Attempt(out, None, {}, [f"ONNX Runtime cannot load it: {str(exc).split(': ', 1)[-1][:200]}"])
        # The rule validate applies (its final one): the search predicts validate's verdict on these images.
        verdicts = parity.judge(self.name, gate_kind(self.cfg), metrics, self.gates, confidence=self.confidence)
        return _Attempt(out, metrics, verdicts, parity.failures(verdicts))


def _summary(attempt: _Attempt) -> dict:
    return {k: attempt.metrics[k] for k in ("accuracy", "agreement", "cosine_p1")} if attempt.metrics else {}


STAGE = Stage(
    name="quantize", run=run, help="Quantize the simplified model to INT8: every configured variant, or one.",
    owns={"quantize": dict[str, QuantizeConfig]},
    config={"cfg": "quantize.${key}", "gates": "validate.gates", "confidence": "validate.confidence", "seed": "seed"},
    inputs={"model_in": "${paths.variants}/simplified/model.onnx", "model_dir": "${paths.model}",
            "data_dir": "${paths.data}"},
    outputs={"out_dir": "${paths.variants}/${key}"}, foreach="quantize", item_arg="variant",
)
