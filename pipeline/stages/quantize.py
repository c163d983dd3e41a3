"""Quantize an fp32 ONNX model to INT8 with ONNX Runtime, with an accuracy-aware fallback.

Inputs:  model_in (the simplified fp32 model: portable, no ORT-specific fused ops), model_dir (the PyTorch
         reference), data_dir
Outputs: out_dir/model.onnx with its lineage; metrics: sizes, quantized/excluded nodes and why, parity vs
         PyTorch, and whether the variant passes validate's gates for its kind (`within_budget`)
Static:  quant_pre_process, then quantize_static with a seeded calibration reader over training images.
         If the result fails any of validate's gates for INT8 (agreement, cosine, accuracy delta, …), ops
         are ranked by sensitivity (the logit error when that op alone stays fp32) and the most sensitive
         stay fp32 one at a time until every gate passes, or `fallback.max_excluded` is reached; then the
         variant is marked out of budget with the gates that still fail.
Dynamic: quantize_dynamic (weights only). On CNNs its ConvInteger runs several times slower than fp32
         on the CPU EP; it is kept for completeness and the benchmark shows the cost.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipeline.core.errors import PipelineError
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
    checkpoint = lineage.require_current({"simplified": Path(model_in)}, Path(model_dir), stage="quantize")
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


class _Search:
    """One variant's gated search: quantization runs scored against PyTorch on `eval_samples` test images."""
    def __init__(self, quantization: Quantization, name: str, gates: dict, confidence: float, model_dir: Path):
        cfg = quantization.cfg
        self.quantization, self.cfg, self.name, self.gates = quantization, cfg, name, gates
        self.confidence, self.verdicts = confidence, {}
        self.eval_x, self.eval_y = test_batch(quantization.data_dir, cfg.eval_samples)
        self.reference = torch_reference.logits(model_dir, self.eval_x)

    def quantize_within_budget(self) -> tuple[Path, dict]:
        """Quantize; while validate's gates fail, keep the next most sensitive op in fp32."""
        excluded = self.quantization.base_exclusions()
        path, metrics, failed = self.quantize(list(excluded))
        record: dict = {"fallback": []}
        limit = self.cfg.fallback.max_excluded if self.cfg.fallback and self.cfg.mode == "static" else 0
        if failed and limit:
            units = self.quantization.candidates(list(excluded))
            ranking = self.sensitivity_ranking(list(excluded), units)
            record["sensitivity"] = ranking
            for name, _ in ranking[:limit]:
                group = f" (with {name}: {len(units[name])} nodes)" if units[name] != [name] else ""
                excluded.update(dict.fromkeys(units[name], f"kept fp32{group}: {'; '.join(failed)}"))
                path, metrics, failed = self.quantize(list(excluded))
                record["fallback"].append({"excluded": name, "failed_gates": failed,
                                           **{k: metrics[k] for k in ("accuracy", "agreement", "cosine_p1")}})
                if not failed:
                    break
        record.update({
            "parity": {k: metrics[k] for k in ("samples", *parity.SUMMARY)},
            "gate_kind": gate_kind(self.cfg),
            "failed_gates": failed,
            "excluded_nodes": [{"node": n, "reason": r} for n, r in excluded.items()],
            "within_budget": not failed,
            "remedy": parity.remedy(self.name, gate_kind(self.cfg), self.verdicts, excluded_limit=limit)
            if failed else None,
        })
        return path, record

    def sensitivity_ranking(self, excluded: list[str], units: dict[str, list[str]]) -> list[tuple[str, float]]:
        """Each candidate unit's mean |Δlogit| vs PyTorch when only it stays fp32: lower error = more sensitive
        (the quoted figure, parity.quote; ties by name, so the order does not hang on the last bit of a float)."""
        scores = []
        for name, nodes in units.items():
            _, metrics, _ = self.quantize([*excluded, *nodes])
            scores.append((name, metrics["mean_abs_logit"]))
        return sorted(scores, key=lambda item: (item[1], item[0]))

    def quantize(self, exclude: list[str]) -> tuple[Path, dict, list[str]]:
        """One quantization run: its path, its parity vs PyTorch, and the gates it fails."""
        out = self.quantization.run(exclude)
        metrics = parity.score(out, self.reference, self.eval_x, self.eval_y)
        # The rule validate applies (its final one): the search predicts validate's verdict on these images.
        self.verdicts = parity.judge(self.name, gate_kind(self.cfg), metrics, self.gates, confidence=self.confidence)
        return out, metrics, parity.failures(self.verdicts)


STAGE = Stage(
    name="quantize", run=run, help="Quantize the simplified model to INT8: every configured variant, or one.",
    owns={"quantize": dict[str, QuantizeConfig]},
    config={"cfg": "quantize.${key}", "gates": "validate.gates", "confidence": "validate.confidence", "seed": "seed"},
    inputs={"model_in": "${paths.variants}/simplified/model.onnx", "model_dir": "${paths.model}",
            "data_dir": "${paths.data}"},
    outputs={"out_dir": "${paths.variants}/${key}"}, foreach="quantize", item_arg="variant",
)
