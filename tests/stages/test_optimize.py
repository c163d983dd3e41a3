import numpy as np
import onnx
import pytest

from pipeline import onnx_utils
from pipeline.errors import PipelineError
from pipeline.mnist import test_batch as real_test_images
from pipeline.stages import optimize


@pytest.mark.parametrize("level", optimize.LEVELS)
def test_each_level_keeps_outputs_equal(tmp_path, variants_dir, level):
    cfg = optimize.OptimizeConfig(level=level, fp16=optimize.Fp16Config(enabled=False))
    result = optimize.run(cfg, variants_dir / "exported" / "model.onnx", tmp_path)
    steps = result.metrics["steps"]
    assert steps["simplified"]["max_abs_delta_vs_input"] <= optimize.REWRITE_TOLERANCE
    assert steps["optimized"]["max_abs_delta_vs_input"] <= optimize.REWRITE_TOLERANCE
    assert steps["optimized"]["portable"] is (level != "all")
    assert steps["exported"]["nodes"] >= steps["optimized"]["nodes"]
    meta = onnx_utils.metadata(onnx.load(result.outputs["optimized"]))
    assert meta["ort_optimization_level"] == level and meta["portable"] == str(level != "all").lower()
    if level == "all":
        assert any(op.startswith("com.microsoft.nchwc::") for op in steps["optimized"]["ops"])


def test_fp16_runs_on_cpu_close_to_fp32_with_float32_io(variants_dir, mnist_dir):
    x, _ = real_test_images(mnist_dir, 500)
    fp16 = onnx_utils.session(variants_dir / "fp16" / "model.onnx")
    fp32 = onnx_utils.session(variants_dir / "simplified" / "model.onnx")
    assert fp16.get_inputs()[0].type == "tensor(float)" and fp16.get_outputs()[0].type == "tensor(float)"
    a, b = onnx_utils.run_batched(fp16, x), onnx_utils.run_batched(fp32, x)
    assert np.abs(a - b).max() < optimize.FP16_TOLERANCE
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.998
    weights = onnx.load(variants_dir / "fp16" / "model.onnx").graph.initializer
    assert {w.data_type for w in weights if len(w.dims) > 1} == {onnx.TensorProto.FLOAT16}


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\x08\x07garbage-not-protobuf\xff\xff", "not a valid ONNX file"),
    (b"\x08\x07", "holds no ONNX graph"),
], ids=["empty", "garbage", "protobuf-without-graph"])
def test_a_corrupt_model_is_one_clear_error_and_writes_nothing(tmp_path, content, message):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(PipelineError, match=message):
        optimize.run(optimize.OptimizeConfig(), bad, tmp_path / "variants")
    assert not (tmp_path / "variants").exists()


def test_a_truncated_model_is_one_clear_error(tmp_path, variants_dir):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes((variants_dir / "exported" / "model.onnx").read_bytes()[:3000])
    with pytest.raises(PipelineError, match=r"not a valid ONNX file|fails the ONNX checker|holds no ONNX graph"):
        optimize.run(optimize.OptimizeConfig(), bad, tmp_path / "variants")
