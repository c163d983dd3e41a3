import shutil

import pytest

from pipeline.core.io import write_json
from tests.conftest import config, package_into, run_stage, with_groups


@pytest.fixture(scope="module")
def deploy_dir(tmp_path_factory, bundles, variants_dir, tiny_model_dir, mnist_dir):
    """The cpu_x86 and arm64_mobile bundles and an openvino one, whose runtime (the OpenVINO EP) has its own venv."""
    deploy = tmp_path_factory.mktemp("bench_deploy")
    for target in ("cpu_x86", "arm64_mobile"):
        shutil.copytree(bundles[target], deploy / target)
    cfg = config("target.openvino.selection.rounds=3", "target.openvino.selection.per_round=5")
    package_into(deploy, cfg, "openvino", variants_dir, bundles["parity_file"], tiny_model_dir, mnist_dir)
    return deploy


@pytest.fixture(scope="module")
def bench_result(tmp_path_factory, tiny_model_dir, variants_dir, deploy_dir, bundles, mnist_dir):
    cfg = config("bench.latency_runs=40", "bench.rounds=4", "bench.warmup=5", "bench.throughput_batch=64",
                 "bench.throughput_runs=4", "bench.crossover.calibration_samples=64", "quantize=[int8_static]",
                 "bench.crossover.models=[{_target_: training.models.CompactCNN, width: 4}]",
                 "bench.peers.torch_compile=false")  # its ~30 s compile is tested once, below
    parity_file = write_json(tmp_path_factory.mktemp("bench") / "validate.json", bundles["parity"])
    return run_stage("bench", with_groups(cfg, optimize=config().optimize), model_dir=tiny_model_dir,
                     variants_dir=variants_dir, parity_file=parity_file, deploy_dir=deploy_dir,
                     data_dir=mnist_dir).metrics


def test_the_pruned_model_is_compared_with_the_unpruned_one_on_each_runtime(bench_result):
    comparison = bench_result["pruned_vs_unpruned"]
    assert (comparison["pruned"], comparison["unpruned"]) == ("pruned", "simplified")
    assert set(comparison["runtimes"]) == {"ONNX Runtime CPU EP", "OpenVINO runtime (CPU plugin)"}
    for row in comparison["runtimes"].values():
        for ratio in (row["speedup_b1"], row["throughput_ratio"]):
            assert ratio["low"] <= ratio["ratio"] <= ratio["high"]
    models = comparison["models"]
    assert models["pruned"]["flops_per_image"] < models["simplified"]["flops_per_image"]
    assert models["pruned"]["parameters"] < models["simplified"]["parameters"]
    assert models["pruned"]["bytes"] < models["simplified"]["bytes"]


def test_every_variant_the_shipped_bundle_and_the_peers_are_measured_in_one_run(bench_result):
    rows = bench_result["variants"]
    assert set(rows) == {"torch_eager", "shipped_cpu_x86", "exported", "simplified", "optimized", "fp16",
                         "pruned_exported", "pruned", "int8_static", "openvino_optimized", "openvino_int8_static",
                         "openvino_simplified", "openvino_pruned", "shipped_openvino", "openvino_ep_optimized"}
    for row in rows.values():
        assert row["latency_ms"]["rounds"] == 4 and row["latency_ms"]["p50"] > 0 and row["throughput"] > 0
        low, high = row["throughput_vs_torch_ci"]
        assert low <= row["throughput_vs_torch"] <= high
    assert rows["optimized"]["throughput_vs_ort_fp32"] == 1.0 and rows["torch_eager"]["speedup_vs_torch"] == 1.0
    assert rows["torch_eager"]["peak_rss_mib"] > rows["optimized"]["peak_rss_mib"]  # torch is the heavier runtime
    assert rows["openvino_optimized"]["runtime"] == "OpenVINO runtime (CPU plugin)"
    assert bench_result["targets"]["cpu_x86"]["variant"] == rows["shipped_cpu_x86"]["variant"]
    assert "not timed: no runtime here has NnapiExecutionProvider" in bench_result["targets"]["arm64_mobile"][
        "measured"]
    assert set(bench_result["int8_vs_fp32"]) == {"onnxruntime", "openvino", "onnxruntime-openvino"}


def test_a_bundle_whose_runtime_has_its_own_environment_is_timed_there_in_the_same_run(bench_result):
    """The openvino bundle runs on the OpenVINO EP in its venv: a worker process takes its turns between the
    in-process runners, and its ratios come from the same interleaved rounds."""
    rows = bench_result["variants"]
    shipped, fp32 = rows["shipped_openvino"], rows["openvino_ep_optimized"]
    assert shipped["environment"] == fp32["environment"] == "onnxruntime-openvino"
    assert shipped["runtime"] == "ONNX Runtime OpenVINOExecutionProvider" and shipped["variant"] == "int8_static"
    assert fp32["variant"] == "optimized" and fp32["session"] == shipped["session"]
    for row in (shipped, fp32):
        assert row["latency_ms"]["rounds"] == 4 and row["throughput"] > 0
        low, high = row["throughput_vs_torch_ci"]
        assert low <= row["throughput_vs_torch"] <= high
    on_ep = bench_result["int8_vs_fp32"]["onnxruntime-openvino"]
    assert on_ep["int8"] == "int8_static" and on_ep["low"] <= on_ep["ratio"] <= on_ep["high"]
    table = bench_result["targets"]["openvino"]
    assert table["throughput"] == shipped["throughput"] and "throughput_vs_openvino_ci" in table
    assert "measured" not in table and "measured" not in bench_result["targets"]["cpu_x86"]


def test_every_runner_is_held_to_the_measured_peak_of_the_precision_it_computes_in(bench_result):
    """The fp32 peak is the best of ORT's MatMul and torch.mm, the INT8 one ORT's u8×s8 MatMulInteger; each round
    has its peak, taken in the same throughput rounds as the runners, and a share pairs the two by round. So a
    round under another process's load lowers the runner and the peak of that round alike: no runner's share is
    above 1 with confidence, and the tiny model's is far below."""
    assert bench_result["flops_per_image"] > 10_000
    peaks = bench_result["peaks"]
    assert {"fp32", "int8"} <= set(peaks)
    assert peaks["fp32"]["backend"] in ("onnxruntime MatMul (MLAS SGEMM)", "torch.mm") and peaks["fp32"]["unit"] == \
        "GFLOP/s"
    assert {probe["backend"] for probe in peaks["fp32"]["probes"].values()} == {"onnxruntime MatMul (MLAS SGEMM)",
                                                                             "torch.mm"}
    assert peaks["int8"]["backend"].startswith("onnxruntime MatMulInteger u8×s8") and peaks["int8"]["unit"] == "GOP/s"
    for peak in peaks.values():
        assert len(peak["per_round"]) == 4 and 1 < peak["rate"] <= peak["best"] == max(peak["per_round"])
    rows = bench_result["variants"]
    assert rows["optimized"]["precision"] == rows["torch_eager"]["precision"] == "fp32"
    assert rows["int8_static"]["precision"] == rows["openvino_int8_static"]["precision"] == "int8"
    assert rows["shipped_openvino"]["precision"] == "int8"  # its variant's kind (the OpenVINO EP in its worker)
    for name, row in rows.items():
        low, high = row["share_of_peak_ci"]
        assert 0 < low <= row["share_of_peak"] <= high and low <= 1, (name, row["share_of_peak_ci"])
    assert rows["optimized"]["share_of_peak"] < 1


@pytest.mark.usefixtures("bundles")  # it quantizes int8_static into variants_dir
def test_the_openvino_runtime_is_held_to_the_peak_of_what_it_computes_in(variants_dir):
    """With its defaults OpenVINO computes an fp32 model in bf16 on a CPU with AVX512_BF16 or AMX (twice fp32's
    rate there): the precision comes from its compiled model, not from the file's."""
    from pipeline.benchmark import runners
    from pipeline.core.machine import machine

    _, fp32 = runners.openvino(variants_dir / "optimized" / "model.onnx", threads=1)
    _, int8 = runners.openvino(variants_dir / "int8_static" / "model.onnx", threads=1)
    has_bf16 = {"avx512_bf16", "amx_bf16"} & set(machine()["isa"])
    assert fp32 == ("bf16" if has_bf16 else "fp32") and int8 == "int8"


def test_operations_are_counted_on_real_inputs_not_on_padding():
    """A 3×3 convolution padded by 1 on a 4×4 input: of 16 outputs × 9 taps, the border outputs see padding
    (4 corners see 4 real taps, 8 edges 6, 4 inner 9): 100 real taps, not 144."""
    from pipeline.measure.flops import in_bounds_taps

    assert in_bounds_taps([4, 4], [4, 4], [3, 3], {"pads": [1, 1, 1, 1]}) == 100
    assert in_bounds_taps([4, 4], [4, 4], [3, 3], {"auto_pad": b"SAME_UPPER"}) == 100
    assert in_bounds_taps([4, 4], [2, 2], [3, 3], {}) == 4 * 9  # no padding: every tap is real
    assert in_bounds_taps([5, 5], [3, 3], [3, 3], {"pads": [1, 1, 1, 1], "strides": [2, 2]}) == (2 + 3 + 2) ** 2


@pytest.mark.slow
def test_torch_compile_peer_matches_eager_and_reports_its_warmup(tiny_model_dir):
    import numpy as np

    from pipeline.benchmark import runners
    from pipeline.model import checkpoint

    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    model, _ = checkpoint.load(tiny_model_dir)
    compiled, warmup = runners.torch_compiled(model, [(4, 1, 28, 28)])
    assert warmup > 0
    np.testing.assert_allclose(compiled(x).numpy(), runners.torch_eager(model)(x).numpy(), atol=1e-4)


def test_int8_targets_are_reported_with_numbers_met_or_not(bench_result):
    verdict = bench_result["int8_targets"]
    assert verdict["measured"] and verdict["artifact"] == "int8_static"
    for key in ("throughput_ratio", "accuracy_drop_pt", "size_ratio"):
        assert isinstance(verdict[key]["value"], float) and isinstance(verdict[key]["met"], bool)
    assert verdict["all_met"] == all(verdict[k]["met"] for k in ("throughput_ratio", "accuracy_drop_pt", "size_ratio"))


def test_crossover_times_int8_against_fp32_per_model(bench_result):
    (row,) = bench_result["crossover"]
    assert row["model"] == "CompactCNN(width=4)" and row["parameters"] > 0
    assert row["throughput_ratio_ci"][0] <= row["throughput_ratio"] <= row["throughput_ratio_ci"][1]
    assert row["size_ratio"] < 1.5


def test_bench_without_validate_runs_and_says_accuracy_is_unknown(tmp_path, tiny_model_dir, variants_dir, bundles,
                                                                   mnist_dir):
    cfg = config("bench.latency_runs=12", "bench.rounds=3", "bench.warmup=2", "bench.throughput_batch=16",
                 "bench.throughput_runs=3", "bench.crossover.models=[]", "quantize=[int8_static]",
                 "bench.peers.torch_compile=false", "bench.peers.openvino=false")
    metrics = run_stage("bench", cfg, model_dir=tiny_model_dir, variants_dir=variants_dir,
                        parity_file=tmp_path / "validate.json", deploy_dir=bundles["cpu_x86"].parent,
                        data_dir=mnist_dir).metrics
    assert metrics["variants"]["optimized"]["accuracy"] is None and metrics["variants"]["optimized"]["throughput"] > 0


def test_the_machine_is_recorded_with_its_isa_flags_and_the_date():
    """What the results and the report name beside a figure: CPU model, the ISA flags that decide its arithmetic
    rates, logical CPUs, architecture, date."""
    import datetime

    from pipeline.core.machine import ISA_FLAGS, machine

    found = machine()
    assert found["cpu"] and found["logical_cpus"] >= 1 and set(found["isa"]) <= set(ISA_FLAGS)
    assert found["architecture"] and datetime.datetime.fromisoformat(found["measured_at"]).tzinfo is not None
