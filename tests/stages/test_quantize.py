from pathlib import Path

import numpy as np
import pytest

from pipeline.core import lineage
from pipeline.data.calibration import MnistCalibrationReader, calibration_images
from pipeline.data.mnist import test_batch as real_test_images
from pipeline.model import onnx_utils
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


def test_forced_fallback_excludes_sensitive_nodes_and_reduces_the_error(tmp_path, variants_dir, tiny_model_dir,
                                                                       mnist_dir):
    fp32 = variants_dir / "simplified" / "model.onnx"
    plain = _run("int8_static", variants_dir, tiny_model_dir, mnist_dir, tmp_path / "plain")
    assert plain.metrics["within_budget"] and plain.metrics["failed_gates"] == []
    # Gates no INT8 model can meet: every allowed exclusion is spent, most sensitive first.
    forced = _run("int8_static", variants_dir, tiny_model_dir, mnist_dir, tmp_path / "forced",
                  "validate.gates.int8.min_cosine_p1=0.9999999", "quantize.int8_static.fallback.max_excluded=2")
    ranking = [name for name, _ in forced.metrics["sensitivity"]]
    excluded = [e["node"] for e in forced.metrics["excluded_nodes"][1:]]
    assert excluded == ranking[:2]
    assert all("cosine_p1" in e["reason"] for e in forced.metrics["excluded_nodes"][1:])
    assert not forced.metrics["within_budget"]
    assert forced.metrics["failed_gates"][0].startswith("int8_static (int8): cosine_p1 = ")
    assert len(forced.metrics["quantized_nodes"]) == len(plain.metrics["quantized_nodes"]) + len(
        plain.metrics["excluded_nodes"]) - 1 - 2
    x, _ = real_test_images(mnist_dir, 1000)
    reference = onnx_utils.run_batched(onnx_utils.session(fp32), x)

    def error(path):
        return np.abs(onnx_utils.run_batched(onnx_utils.session(path), x) - reference).mean()

    assert error(forced.outputs["int8_static"]) < error(plain.outputs["int8_static"])
    assert lineage.read(forced.outputs["int8_static"])["checkpoint_sha256"] == lineage.checkpoint_digest(
        tiny_model_dir)
