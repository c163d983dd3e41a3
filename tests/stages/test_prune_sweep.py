"""The pruning sweep as the runner calls it: each budget's pruned model against the same net from scratch."""

from tests.conftest import config, run_stage


def test_each_budget_has_both_accuracies_and_speed_with_intervals(tiny_model_dir, variants_dir, mnist_dir):
    cfg = config("prune_sweep.budgets=[0.8]", "prune_sweep.subset=2000", "prune_sweep.rounds=3",
                 "prune_sweep.latency_runs=20", "prune_sweep.throughput_runs=2", "prune_sweep.throughput_batch=64")
    result = run_stage("prune_sweep", cfg, model_dir=tiny_model_dir, data_dir=mnist_dir,
                       unpruned=variants_dir / "simplified" / "model.onnx", seed=0)
    (point,) = result.metrics["points"]
    assert point["budget"] == 0.8 and point["macs_ratio"] <= 0.8 and point["channels"]
    assert 0.5 < point["pruned_accuracy"] <= 1 and 0.1 < point["scratch_accuracy"] <= 1
    assert point["better"] in ("pruning", "scratch", "neither shown")
    for ratio in (point["speedup_b1"], point["throughput_ratio"]):
        assert ratio["rounds"] == 3 and ratio["low"] <= ratio["ratio"] <= ratio["high"]
    assert result.metrics["scratch_epochs"] == cfg.train.epochs + 1
    plot = result.plots["prune_sweep"]
    assert [row["budget"] for row in plot] == [0.8, 1.0]  # the unpruned model closes the front
