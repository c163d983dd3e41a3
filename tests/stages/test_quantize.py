import dataclasses
from pathlib import Path

import numpy as np
import pytest

from pipeline import onnx_utils
from pipeline.calibration import MnistCalibrationReader, calibration_images
from pipeline.config import build, compose
from pipeline.mnist import test_batch as real_test_images
from pipeline.stages import quantize

REPO = Path(__file__).resolve().parents[2]
VARIANTS = sorted(p.stem for p in (REPO / "conf" / "quantize").glob("*.yaml"))


def _variant_cfg(name: str, **fallback_changes) -> quantize.QuantizeConfig:
    """The variant exactly as conf/quantize/<name>.yaml composes alone, evaluated on 1000 images."""
    cfg = build(quantize.QuantizeConfig, compose([f"quantize=[{name}]"]).quantize[name])
    if cfg.fallback:
        fallback = dataclasses.replace(cfg.fallback, eval_samples=1000, **fallback_changes)
        cfg = dataclasses.replace(cfg, fallback=fallback)
    return cfg


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_runs_on_cpu_agrees_with_fp32_and_is_smaller(tmp_path, variants_dir, mnist_dir, name):
    fp32 = variants_dir / "simplified" / "model.onnx"
    result = quantize.run(_variant_cfg(name), fp32, mnist_dir, tmp_path / name, seed=0)
    kind = "int8_dynamic" if result.metrics["mode"] == "dynamic" else "int8"
    floor = compose([]).validate.gates[kind].min_agreement
    x, _ = real_test_images(mnist_dir, 2000)
    a = onnx_utils.run_batched(onnx_utils.session(result.outputs[name]), x)
    b = onnx_utils.run_batched(onnx_utils.session(fp32), x)
    assert (a.argmax(1) == b.argmax(1)).mean() >= floor
    assert result.metrics["bytes"] < result.metrics["fp32_bytes"]
    assert len(result.metrics["quantized_nodes"]) >= 3  # the three convolutions
    assert result.metrics["excluded_nodes"][0]["reason"].startswith("classifier head kept fp32")


def test_dynamic_variant_says_it_is_slow_on_cnns(tmp_path, variants_dir, mnist_dir):
    result = quantize.run(_variant_cfg("int8_dynamic"), variants_dir / "simplified" / "model.onnx", mnist_dir,
                          tmp_path / "q", seed=0)
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


def test_forced_fallback_excludes_sensitive_nodes_and_reduces_the_error(tmp_path, variants_dir, mnist_dir):
    fp32 = variants_dir / "simplified" / "model.onnx"
    plain = quantize.run(_variant_cfg("int8_static"), fp32, mnist_dir, tmp_path / "plain", seed=0)
    # A budget no INT8 model can meet: every allowed exclusion is spent, most sensitive first.
    forced = quantize.run(_variant_cfg("int8_static", max_accuracy_drop_pt=-100.0, max_excluded=2), fp32,
                          mnist_dir, tmp_path / "forced", seed=0)
    ranking = [name for name, _ in forced.metrics["sensitivity"]]
    excluded = [e["node"] for e in forced.metrics["excluded_nodes"][1:]]
    assert excluded == ranking[:2]
    assert all("budget" in e["reason"] for e in forced.metrics["excluded_nodes"][1:])
    assert not forced.metrics["within_budget"]
    assert len(forced.metrics["quantized_nodes"]) == len(plain.metrics["quantized_nodes"]) - 2
    x, _ = real_test_images(mnist_dir, 1000)
    reference = onnx_utils.run_batched(onnx_utils.session(fp32), x)

    def error(path):
        return np.abs(onnx_utils.run_batched(onnx_utils.session(path), x) - reference).mean()

    assert error(forced.outputs["forced"]) < error(plain.outputs["plain"])
