"""The prune stage as the runner calls it: the same bytes twice, the gate's verdict with what gets past it."""

import json

from pipeline.core.errors import AccuracyGateFailure
from pipeline.core.io import sha256_file
from pipeline.model import checkpoint, lineage
from tests.conftest import config, run_stage

SMALL = ("train.subset=2000", "prune.gate.max_drop_pt=0")


def test_prune_is_deterministic_and_a_failed_gate_says_what_gets_past_it_and_ships_nothing(tmp_path, tiny_model_dir,
                                                                                          mnist_dir):
    cfg = config(*SMALL)
    results = [run_stage("prune", cfg, model_dir=tiny_model_dir, data_dir=mnist_dir, out_dir=tmp_path / run, seed=0)
               for run in ("a", "b")]
    assert sha256_file(tmp_path / "a" / "model.pt") == sha256_file(tmp_path / "b" / "model.pt")
    metrics = results[0].metrics
    assert metrics["macs"]["pruned"] <= 0.8 * metrics["macs"]["unpruned"]
    assert metrics["left_whole"]["classifier"] == "the output layer"
    gate = metrics["accuracy_gate"]
    assert gate["samples"] == 10000 and gate["passed"] is False and gate["drop_upper_pt"] > 0
    (failure,) = results[0].gate_failures
    assert results[0].gate_failure_type is AccuracyGateFailure
    assert failure.startswith("pruned: accuracy drop vs the unpruned model: upper bound ")
    assert failure.endswith("> 0.0 pt (to get past it: raise prune.flops_budget=0.8 or prune.finetune.epochs=1, or "
                            "allow more with prune.gate.max_drop_pt=0.0)")
    model, spec = checkpoint.load(tmp_path / "a")  # rebuilt from the spec and the recorded shape, weights_only
    written = json.loads((tmp_path / "a" / "model.json").read_text())
    assert spec == {"_target_": "training.models.CompactCNN", "width": 8} and written[checkpoint.STRUCTURE]
    assert written["parameters"] == sum(p.numel() for p in model.parameters())
    # The checkpoint that failed is written to look at, but no variant is built from it: the CLI's next step
    # cannot ship what DVC, stopping at the failed stage, would not.
    verdict = written[lineage.ACCURACY_GATE]
    assert verdict["passed"] is False and verdict["max_drop_pt"] == 0
    exported = run_stage("export", cfg, model_dir=tiny_model_dir, pruned_dir=tmp_path / "a", data_dir=mnist_dir,
                         out_dir=tmp_path / "exported", pruned_out=tmp_path / "pruned_exported")
    assert "pruned_exported" not in exported.outputs and not (tmp_path / "pruned_exported").exists()
    (notice,) = exported.notices
    assert notice.startswith(f"pruned_exported: not exported, {tmp_path / 'a'} failed prune's accuracy gate "
                             f"(drop upper bound {verdict['drop_upper_pt']} > 0.0 pt)")
