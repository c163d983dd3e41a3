import numpy as np
import onnx
import pytest

from pipeline.core.errors import GateFailure, PipelineError
from pipeline.data.mnist import test_batch as real_test_images
from pipeline.model import lineage, onnx_utils
from tests.conftest import config, run_stage, with_groups

GATES = config().validate.gates


def _run(cfg, model_in, data_dir, out, gates=GATES):
    """optimize as the runner calls it, with `cfg` as its optimize group and `gates` as validate's gates."""
    full = config()
    full = with_groups(full, optimize=cfg, validate=full.validate.model_copy(update={"gates": gates}))
    return run_stage("optimize", full, model_in=model_in, data_dir=data_dir, simplified_dir=out / "simplified",
                     optimized_dir=out / "optimized", fp16_dir=out / "fp16")


@pytest.mark.parametrize("level", ["basic", "extended", "all"])
def test_each_level_keeps_outputs_equal(tmp_path, variants_dir, mnist_dir, level):
    cfg = config(f"optimize={level}", "optimize.fp16.enabled=false").optimize
    result = _run(cfg, variants_dir / "exported" / "model.onnx", mnist_dir, tmp_path)
    steps = result.metrics["steps"]
    assert steps["simplified"]["max_abs_delta_vs_input"] <= GATES["fp32"]["max_abs_logit"]
    assert steps["optimized"]["max_abs_delta_vs_input"] <= GATES["fp32"]["max_abs_logit"]
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
    assert np.abs(a - b).max() < GATES["fp16"]["max_abs_logit"]
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.998
    weights = onnx.load(variants_dir / "fp16" / "model.onnx").graph.initializer
    assert {w.data_type for w in weights if len(w.dims) > 1} == {onnx.TensorProto.FLOAT16}


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\x08\x07garbage-not-protobuf\xff\xff", "not a valid ONNX file"),
    (b"\x08\x07", "holds no ONNX graph"),
], ids=["empty", "garbage", "protobuf-without-graph"])
def test_a_corrupt_model_is_one_clear_error_and_writes_nothing(tmp_path, mnist_dir, content, message):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(PipelineError, match=message):
        _run(config().optimize, bad, mnist_dir, tmp_path / "variants")
    assert not (tmp_path / "variants").exists()


def test_a_truncated_model_is_one_clear_error(tmp_path, variants_dir, mnist_dir):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes((variants_dir / "exported" / "model.onnx").read_bytes()[:3000])
    with pytest.raises(PipelineError, match=r"not a valid ONNX file|fails the ONNX checker|holds no ONNX graph"):
        _run(config().optimize, bad, mnist_dir, tmp_path / "variants")


def test_each_variant_records_its_parent_and_checkpoint(variants_dir, tiny_model_dir):
    from pipeline.core.io import sha256_file

    checkpoint = lineage.checkpoint_digest(tiny_model_dir)
    for name, parent in (("simplified", "exported"), ("optimized", "simplified"), ("fp16", "simplified")):
        assert lineage.read(variants_dir / name / "model.onnx") == {
            "checkpoint_sha256": checkpoint, "parent_sha256": sha256_file(variants_dir / parent / "model.onnx")}
    assert lineage.stale({n: variants_dir / n / "model.onnx" for n in ("simplified", "fp16")}, checkpoint) == {}


def test_a_required_rewrite_that_drifts_fails_with_exit_1_semantics_and_is_not_written(tmp_path, variants_dir,
                                                                                       mnist_dir):
    """optimize holds each rewrite to validate's gates: a drift of a required variant (validate.required) is a
    GateFailure (exit 1), not bad input, names the way past it, and leaves no file behind."""
    strict = {**GATES, "fp32": {"max_abs_logit": -1.0}}  # onnxsim is exact here: only an impossible bound fails it
    with pytest.raises(GateFailure, match=r"simplified \(fp32\): max_abs_logit = .*, needs <= -1 \(to get past it: "
                                          r"optimize.simplify=false skips onnxsim"):
        _run(config().optimize, variants_dir / "exported" / "model.onnx", mnist_dir, tmp_path, gates=strict)
    assert not (tmp_path / "simplified").exists() and not list(tmp_path.glob(".tmp-*"))


def test_an_optional_rewrite_that_drifts_is_written_and_reported_for_validate(tmp_path, variants_dir, mnist_dir):
    """fp16 is no required variant: its drift is a notice (validate rejects it on all its images), not a stop."""
    strict = {**GATES, "fp16": {"max_abs_logit": 1e-9}}
    result = _run(config().optimize, variants_dir / "exported" / "model.onnx", mnist_dir, tmp_path, gates=strict)
    assert result.outputs["fp16"].is_file()
    assert result.metrics["steps"]["fp16"]["failed_gates_vs_input"][0].startswith("fp16 (fp16): max_abs_logit = ")
    (notice,) = result.notices
    assert notice.startswith("fp16 vs its input fails: ") and "optimize.fp16.enabled=false" in notice
