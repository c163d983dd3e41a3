import pytest

from pipeline.io import write_json
from pipeline.stages import bench
from tests.conftest import config


@pytest.fixture(scope="module")
def bench_result(tmp_path_factory, tiny_model_dir, variants_dir, bundles, mnist_dir):
    cfg = config("bench.latency_runs=40", "bench.rounds=4", "bench.warmup=5", "bench.throughput_batch=64",
                 "bench.throughput_runs=3", "bench.crossover.calibration_samples=64", "quantize=[int8_static]",
                 "bench.crossover.models=[{_target_: training.models.CompactCNN, width: 4}]")
    parity_file = write_json(tmp_path_factory.mktemp("bench") / "validate.json", bundles["parity"])
    return bench.run(cfg.bench, cfg.quantize, True, 0, tiny_model_dir, variants_dir, parity_file, mnist_dir).metrics


def test_every_variant_and_torch_eager_is_measured_in_one_run(bench_result):
    rows = bench_result["variants"]
    assert set(rows) == {"torch_eager", "exported", "simplified", "optimized", "fp16", "int8_static"}
    for row in rows.values():
        assert row["latency_ms"]["runs"] == 40 and 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        assert row["throughput"] > 0 and row["bytes"] > 0 and row["peak_rss_mib"] > 10
    assert rows["optimized"]["throughput_vs_ort_fp32"] == 1.0 and rows["torch_eager"]["speedup_vs_torch"] == 1.0
    assert rows["torch_eager"]["peak_rss_mib"] > rows["optimized"]["peak_rss_mib"]  # torch is the heavier runtime


def test_flops_and_peak_put_achieved_speed_in_context(bench_result):
    assert bench_result["flops_per_image"] > 100_000
    peak = bench_result["machine_peak"]
    assert peak["gflops"] > 0 and "cores" in peak["assumed"]
    assert 0 < bench_result["variants"]["optimized"]["effective_gflops"] < peak["gflops"]


def test_int8_targets_are_reported_with_numbers_met_or_not(bench_result):
    verdict = bench_result["int8_targets"]
    assert verdict["measured"] and verdict["artifact"] == "int8_static"
    for key in ("throughput_ratio", "accuracy_drop_pt", "size_ratio"):
        assert isinstance(verdict[key]["value"], float) and isinstance(verdict[key]["met"], bool)
    assert verdict["all_met"] == all(verdict[k]["met"] for k in ("throughput_ratio", "accuracy_drop_pt", "size_ratio"))


def test_crossover_times_int8_against_fp32_per_model(bench_result):
    (row,) = bench_result["crossover"]
    assert row["model"] == "CompactCNN(width=4)" and row["parameters"] > 0
    assert row["throughput_ratio"] > 0 and row["size_ratio"] < 1.5
