from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import ParityGateFailure
from pipeline.data.calibration import MnistCalibrationReader, calibration_images
from pipeline.data.mnist import test_batch as real_test_images
from pipeline.model import lineage, onnx_utils
from pipeline.model.quantization import Quantization, portable_range
from pipeline.stages import quantize
from tests.conftest import config, run_stage

REPO = Path(__file__).resolve().parents[2]
VARIANTS = sorted(p.stem for p in (REPO / "conf" / "quantize").glob("*.yaml"))


def _run(name: str, variants_dir, model_dir, mnist_dir, out: Path, *overrides: str):
    """The variant exactly as conf/quantize/<name>.yaml composes (evaluated on all 10k test images)."""
    cfg = config(f"quantize=[{name}]", *overrides)
    return run_stage("quantize", cfg, name, model_in=variants_dir / "simplified" / "model.onnx", model_dir=model_dir,
                     data_dir=mnist_dir, out_dir=out, seed=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_runs_on_cpu_agrees_with_fp32_and_is_smaller(tmp_path, variants_dir, tiny_model_dir,
                                                                   mnist_dir, name):
    fp32 = variants_dir / "simplified" / "model.onnx"
    result = _run(name, variants_dir, tiny_model_dir, mnist_dir, tmp_path / name)
    kind = quantize.gate_kind(config(f"quantize=[{name}]").quantize[name])
    floor = config().validate.gates[kind]["min_agreement"]
    x, _ = real_test_images(mnist_dir, 2000)
    a = onnx_utils.run_batched(onnx_utils.session(result.outputs[name]), x)
    b = onnx_utils.run_batched(onnx_utils.session(fp32), x)
    assert (a.argmax(1) == b.argmax(1)).mean() >= floor
    assert result.metrics["bytes"] < result.metrics["fp32_bytes"]
    # Every conv is INT8 unless the fallback kept it fp32 to pass validate's gates, and then it says why.
    kept = result.metrics["excluded_nodes"][1:]
    assert len(result.metrics["quantized_nodes"]) + len(kept) >= 3
    assert all(e["reason"].startswith("kept fp32: ") for e in kept)
    assert result.metrics["within_budget"] and result.metrics["failed_gates"] == []
    assert result.metrics["excluded_nodes"][0]["reason"].startswith("classifier head kept fp32")


def test_dynamic_variant_says_it_is_slow_on_cnns(tmp_path, variants_dir, tiny_model_dir, mnist_dir):
    result = _run("int8_dynamic", variants_dir, tiny_model_dir, mnist_dir, tmp_path / "q")
    assert "slower than fp32" in result.metrics["note"]
    assert not any("linear" in n for n in result.metrics["quantized_nodes"])  # head stayed fp32


def test_calibration_reader_yields_the_configured_count(mnist_dir):
    images = calibration_images(mnist_dir, 300, seed=0)
    reader = MnistCalibrationReader(images, 64, "input")
    batches = list(iter(reader.get_next, None))
    assert sum(len(b["input"]) for b in batches) == 300 and len(batches) == len(reader) == 5
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["input"], batches[0]["input"])
    np.testing.assert_array_equal(calibration_images(mnist_dir, 300, seed=0), images)  # seeded
    assert not np.array_equal(calibration_images(mnist_dir, 300, seed=1), images)


def test_forced_fallback_keeps_only_what_measurably_helps_and_says_what_passes(tmp_path, variants_dir,
                                                                              tiny_model_dir, mnist_dir):
    fp32 = variants_dir / "simplified" / "model.onnx"
    plain = _run("int8_static", variants_dir, tiny_model_dir, mnist_dir, tmp_path / "plain")
    assert plain.metrics["within_budget"] and plain.metrics["failed_gates"] == []
    # Gates no INT8 model can meet: each step keeps in fp32 the unit that measurably helps most.
    forced = _run("int8_static", variants_dir, tiny_model_dir, mnist_dir, tmp_path / "forced",
                  "validate.gates.int8.min_cosine_p1=0.9999999", "quantize.int8_static.fallback.max_excluded=2")
    steps = forced.metrics["fallback"]
    assert steps and [s["within_budget"] for s in steps][:2] == [True] * min(2, len(steps))
    agreements = [plain.metrics["parity"]["agreement"], *(s["agreement"] for s in steps)]
    assert agreements == sorted(agreements)  # never lower as more is kept
    kept = [e["node"] for e in forced.metrics["excluded_nodes"][1:]]
    assert all(e["reason"].startswith("kept fp32") and "measurably helped" in e["reason"]
               for e in forced.metrics["excluded_nodes"][1:])
    assert not forced.metrics["within_budget"]
    assert forced.metrics["failed_gates"][0].startswith("int8_static (int8): cosine_p1 = ")
    advice = forced.metrics["remedy"]
    if " passes (measured" in advice:  # the advice was measured: following it passes
        budget = advice.split("fallback.max_excluded=", 1)[1].split()[0]
        followed = _run("int8_static", variants_dir, tiny_model_dir, mnist_dir, tmp_path / "followed",
                        "validate.gates.int8.min_cosine_p1=0.9999999",
                        f"quantize.int8_static.fallback.max_excluded={budget}")
        assert followed.metrics["within_budget"]
    else:
        assert "INT8 does not pass this model's gates with this preset" in advice, advice
    assert set(forced.metrics["quantized_nodes"]) == set(plain.metrics["quantized_nodes"]) - set(kept)
    x, _ = real_test_images(mnist_dir, 1000)
    reference = onnx_utils.run_batched(onnx_utils.session(fp32), x)

    def error(path):
        return np.abs(onnx_utils.run_batched(onnx_utils.session(path), x) - reference).mean()

    assert error(forced.outputs["int8_static"]) < error(plain.outputs["int8_static"])
    assert lineage.read(forced.outputs["int8_static"])["checkpoint_sha256"] == lineage.checkpoint_digest(
        tiny_model_dir)


def test_a_model_the_quantizer_builds_that_onnx_runtime_cannot_load_is_never_blamed_on_the_input(
        tmp_path, variants_dir, tiny_model_dir, mnist_dir, monkeypatch):
    """Such a candidate is a failed attempt the fallback moves past; when every one is, the stage fails its gate
    (exit 1), never "bad input" (exit 2)."""
    real = Quantization.run

    def unloadable_until_a_unit_is_kept(self, exclude):
        out = real(self, exclude)
        if len(exclude) <= 1:  # the classifier head alone: what ORT's quantizer built first
            out.write_bytes(b"not an ONNX model")
        return out

    monkeypatch.setattr(Quantization, "run", unloadable_until_a_unit_is_kept)
    recovered = _run("int8_static", variants_dir, tiny_model_dir, mnist_dir, tmp_path / "recovered")
    assert recovered.metrics["within_budget"] and recovered.metrics["fallback"]
    monkeypatch.setattr(Quantization, "run", lambda self, exclude: (tmp_path / "broken.onnx").write_bytes(b"x")
                        and tmp_path / "broken.onnx")
    with pytest.raises(ParityGateFailure, match="ONNX Runtime cannot load any INT8 model the fallback built"):
        _run("int8_static", variants_dir, tiny_model_dir, mnist_dir, tmp_path / "broken")


def test_portable_range_rounds_outward_onto_a_grid_kernel_noise_cannot_cross():
    lo, hi = np.float32(-0.7316), np.float32(5.4093)  # magnitude in (4, 8]: a grid of 2**-4
    rounded = portable_range(lo, hi)
    assert rounded == (np.float32(-0.75), np.float32(5.4375)) and all(r.dtype == np.float32 for r in rounded)
    assert rounded[0] <= lo and rounded[1] >= hi
    assert portable_range(*rounded) == rounded
    for noise in (1 + 1e-6, 1 - 1e-6):  # another CPU's kernels, a few ulps off
        assert portable_range(np.float32(lo * noise), np.float32(hi * noise)) == rounded
    # a bound rounded up onto a power of two keeps its grid; zero stays; arrays (ORT's MinMax) keep their shape
    assert portable_range(np.float32(-1.99), np.float32(0.5)) == (-2.0, 0.5) == portable_range(-2.0, 0.5)
    assert portable_range(np.float32(0), np.float32(0)) == (0, 0)
    lows, highs = portable_range(np.array([0.0, -3e-3], np.float32), np.array([2.29192, 0.0517], np.float32))
    assert lows.dtype == highs.dtype == np.float32 and lows.shape == (2,)
    np.testing.assert_array_equal(lows, [0.0, -7 * 2**-11])  # each its own grid: 2**-5 and 2**-11
    np.testing.assert_array_equal(highs, [74 * 2**-5, 106 * 2**-11])


def test_static_runs_quantize_with_portable_ranges_of_the_tensors_ort_calibrates(tmp_path, variants_dir,
                                                                                 mnist_dir):
    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization.calibrate import load_tensors_data

    cfg = config("quantize=[int8_static]").quantize["int8_static"]
    quantization = Quantization(cfg, variants_dir / "simplified" / "model.onnx", mnist_dir, tmp_path, seed=0)
    first = quantization.run([])
    ours = load_tensors_data(tmp_path / "calibration-ranges.json")
    # ORT's own calibration of the same images: the same tensors, each range inside ours and within a step
    reader = MnistCalibrationReader(calibration_images(mnist_dir, cfg.calibration.samples, 0),
                                    cfg.calibration.batch_size, quantization.graph.input[0].name)
    quantize_static(str(quantization.prepared), str(tmp_path / "ort.onnx"), reader,
                    calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(tmp_path / "ort.json"))
    ort = load_tensors_data(tmp_path / "ort.json")
    assert ours.calibration_method == ort.calibration_method and set(ours.keys()) == set(ort.keys())
    for name, tensor in ours.items():
        low, high = tensor.range_value
        np.testing.assert_array_equal(portable_range(low, high), (low, high))  # on the grid
        margin = np.maximum(np.abs(low), np.abs(high)) / 64
        assert np.all(low <= ort[name].lowest) and np.all(ort[name].lowest - low < margin), name
        assert np.all(high >= ort[name].highest) and np.all(high - ort[name].highest < margin), name
    # later runs (the fallback's) load the same ranges
    assert quantization.run([]).read_bytes() == first.read_bytes()


def test_on_a_vision_transformer_the_fallback_never_loses_agreement_and_its_advice_is_measured(tmp_path, mnist_dir):
    """A user's small ViT (patch embedding, attention, LayerNorm, GELU): INT8 hurts it where CNNs do not mind.
    Each step of the fallback raises (or keeps) agreement; the advice is a budget that was measured to pass, or
    the statement that none of what is left helps; ORT's quantizer chatter stays in the log."""
    import json
    import shutil

    from tests.conftest import run_cli

    model = ["model=custom", "model._target_=tests.helpers.user_models.TinyViT", "model.dim=32"]
    paths = [f"paths.data={mnist_dir}", f"paths.model={tmp_path / 'model'}", f"paths.metrics={tmp_path / 'm'}",
             f"paths.variants={tmp_path / 'v'}"]
    trained = run_cli("train", *model, *paths, "train.epochs=1", "train.subset=12000", "train.eval_subset=1000",
                      "train.portable_kernels=false")
    assert trained.returncode == 0, trained.stderr[-2000:]
    exported = run_cli("export", *model, *paths)
    assert exported.returncode == 0, exported.stderr[-2000:]
    small = ["quantize=[int8_static]", "quantize.int8_static.eval_samples=2000",
             "quantize.int8_static.calibration.samples=128", "quantize.int8_static.fallback.max_excluded=1"]
    quantized = run_cli("quantize", "--variant", "int8_static", *model, *paths, *small)
    assert quantized.returncode == 0 and "out-of-range" not in quantized.stderr, quantized.stderr[-2000:]
    record = json.loads((tmp_path / "m" / "quantize_int8_static.json").read_text())
    agreements = [step["agreement"] for step in record["fallback"]]
    assert agreements == sorted(agreements)
    if record["within_budget"]:
        return
    advice = record["remedy"]
    assert ("max_excluded=" in advice and " passes (measured" in advice) or "INT8 does not pass" in advice, advice
    if " passes (measured" in advice:  # following it ends in a passing variant
        budget = advice.split("fallback.max_excluded=", 1)[1].split()[0]
        shutil.rmtree(tmp_path / "v" / "int8_static")
        again = run_cli("quantize", "--variant", "int8_static", *model, *paths, *small,
                        f"quantize.int8_static.fallback.max_excluded={budget}")
        assert again.returncode == 0, again.stderr[-2000:]
        assert json.loads((tmp_path / "m" / "quantize_int8_static.json").read_text())["within_budget"]


def test_a_squeeze_excite_silu_cnn_goes_through_export_quantize_int8_without_blaming_its_input(tmp_path, mnist_dir):
    """SiLU activations and squeeze-and-excitation gating (pool, bottleneck, sigmoid, scale): whatever INT8 makes
    of them, `export --quantize int8` never ends in exit 2, which would blame the user's model for a graph the
    quantizer built."""
    from tests.conftest import run_cli

    model = ["model=custom", "model._target_=tests.helpers.user_models.SqueezeExciteSiluNet", "model.width=16"]
    paths = [f"paths.data={mnist_dir}", f"paths.model={tmp_path / 'model'}", f"paths.metrics={tmp_path / 'm'}",
             f"paths.variants={tmp_path / 'v'}"]
    trained = run_cli("train", *model, *paths, "train.epochs=1", "train.subset=6000", "train.eval_subset=500",
                      "train.portable_kernels=false", "train.max_lr=0.05")
    assert trained.returncode == 0, trained.stderr[-2000:]
    exported = run_cli("export", "--quantize", "int8", *model, *paths, "quantize.int8_static.eval_samples=2000",
                       "quantize.int8_static.calibration.samples=128")
    assert exported.returncode in (0, 1) and "Traceback" not in exported.stderr, exported.stderr[-2000:]
    assert (tmp_path / "v" / "int8_static" / "model.onnx").is_file()
