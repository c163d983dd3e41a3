import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from pipeline.core.errors import PipelineError
from pipeline.data.mnist import test_batch as real_test_images
from pipeline.model import onnx_utils
from pipeline.model.localize import localize
from pipeline.model.parity import IMPLICIT_GATES, compare, judge
from tests.conftest import TINY, config, run_cli, run_stage

FP32 = ("exported", "simplified", "optimized")


def _run(variants_dir, tiny_model_dir, mnist_dir, *overrides):
    cfg = config("quantize=[]", *overrides)
    return run_stage("validate", cfg, model_dir=tiny_model_dir, data_dir=mnist_dir, variants_dir=variants_dir)


def test_fp32_and_fp16_variants_pass_their_gates(variants_dir, tiny_model_dir, mnist_dir):
    report = _run(variants_dir, tiny_model_dir, mnist_dir).metrics
    assert report["passed"] and report["failures"] == []
    for name in FP32:
        assert report["variants"][name]["agreement"] == 1.0
        assert report["variants"][name]["max_abs_logit"] <= 1e-4
    assert report["variants"]["fp16"]["cosine_min"] > 0.999
    assert "divergence" not in report["variants"]["fp16"]  # only failing variants are localized


def test_a_forced_gate_fails_and_names_variant_metric_value_threshold_and_the_way_past(variants_dir, tiny_model_dir,
                                                                                        mnist_dir):
    # No fp32 rewrite can miss a cosine above 1: the one threshold that forces a failure.
    result = _run(variants_dir, tiny_model_dir, mnist_dir, "+validate.gates.fp32.min_cosine=1.000001")
    assert not result.metrics["passed"] and result.gate_failures == result.metrics["failures"]
    # simplified is required (validate.required): it fails the run; optimized is not: it is rejected.
    (message,) = [m for m in result.metrics["failures"] if m.startswith("simplified")]
    assert message.startswith("simplified (fp32): cosine_min = ")
    assert "needs >= 1 (to get past it: optimize.simplify=false skips onnxsim; or loosen " \
           "validate.gates.fp32.min_cosine=" in message
    assert not any(m.startswith("optimized") for m in result.metrics["failures"])
    assert "optimize.level=basic" in result.metrics["rejected"]["optimized"]
    assert result.metrics["variants"]["optimized"]["divergence"]["compared_tensors"] > 0


def test_cli_exit_codes_and_the_report_is_written_even_when_failing(tmp_path, variants_dir, tiny_model_dir, mnist_dir):
    paths = [f"paths.model={tiny_model_dir}", f"paths.data={mnist_dir}", f"paths.variants={variants_dir}",
             f"paths.metrics={tmp_path}", "quantize=[]"]
    passing = run_cli("validate", *TINY, *paths)
    assert passing.returncode == 0, passing.stderr
    # fp16 is no required variant: a gate it misses rejects it, in the terminal, and the run goes on.
    rejecting = run_cli("validate", *TINY, *paths, "validate.gates.fp16.max_abs_logit=1e-5")
    assert rejecting.returncode == 0, rejecting.stderr
    assert "validate: rejected (not shipped by any target; not in validate.required): fp16 (fp16): max_abs_logit = " \
           in rejecting.stderr and "optimize.fp16.enabled=false" in rejecting.stderr
    report = json.loads((tmp_path / "validate.json").read_text())
    assert report["passed"] is True and report["variants"]["fp16"]["passed"] is False and "fp16" in report["rejected"]
    # Listed in validate.required, the same failure fails the run (exit 1), after the report is written.
    failing = run_cli("validate", *TINY, *paths, "validate.gates.fp16.max_abs_logit=1e-5",
                      "validate.required=[exported,simplified,fp16]")
    assert failing.returncode == 1
    assert "parity gate failed: fp16 (fp16): max_abs_logit = " in failing.stderr
    report = json.loads((tmp_path / "validate.json").read_text())
    assert report["passed"] is False and report["variants"]["exported"]["passed"] is True
    # A sample on which no result could show a counted gate is refused before any work, naming what can.
    small = run_cli("validate", *TINY, *paths, "validate.samples=1000")
    assert small.returncode == 2 and small.stderr.strip().startswith(
        "error: validate.samples=1000 cannot decide validate.gates.fp32.min_agreement=0.999 at 95%")


def _perturbed_copy(variants_dir, tmp_path, initializer: str, transform) -> tuple:
    model = onnx.load(variants_dir / "simplified" / "model.onnx")
    tensor = next(t for t in model.graph.initializer if t.name == initializer)
    tensor.CopyFrom(numpy_helper.from_array(transform(numpy_helper.to_array(tensor)), initializer))
    consumer = next(n.name for n in model.graph.node if initializer in n.input)
    out = tmp_path / "faulty" / "model.onnx"
    out.parent.mkdir()
    onnx.save(model, out)
    return out, consumer


def test_localization_names_the_node_whose_weights_were_perturbed(tmp_path, variants_dir, mnist_dir):
    model = onnx.load(variants_dir / "simplified" / "model.onnx")
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    faulty, consumer = _perturbed_copy(variants_dir, tmp_path, convs[1].input[1], lambda w: w * -1.0)
    x, _ = real_test_images(mnist_dir, 32)
    from pipeline.model.localize import modules

    report = localize(variants_dir / "simplified" / "model.onnx", faulty, x, rel_threshold=0.1, top_k=5,
                      scratch=tmp_path, module_names=modules(variants_dir / "exported" / "model.onnx"))
    assert report["first_divergent"]["node"] == consumer == convs[1].name
    assert report["first_divergent"]["module"].startswith("features.")  # the PyTorch module, from the exporter
    assert convs[0].name not in [r["node"] for r in report["top"]]  # upstream of the fault: untouched
    assert len(report["top"]) == 5


def test_nan_outputs_fail_every_gate_rather_than_pass(tmp_path, variants_dir, mnist_dir):
    model = onnx.load(variants_dir / "simplified" / "model.onnx")
    weight = next(n for n in model.graph.node if n.op_type == "Gemm").input[1]
    faulty, _ = _perturbed_copy(variants_dir, tmp_path, weight, lambda w: np.full_like(w, np.nan))
    x, labels = real_test_images(mnist_dir, 200)
    reference = onnx_utils.run_batched(onnx_utils.session(variants_dir / "simplified" / "model.onnx"), x)
    metrics = compare(reference, onnx_utils.run_batched(onnx_utils.session(faulty), x), labels)
    verdicts = judge("faulty", "fp32", metrics, {**IMPLICIT_GATES, "max_abs_logit": 1e9, "min_cosine": -1.0},
                     confidence=0.95)
    assert metrics["finite_fraction"] == 0.0 and metrics["agreement"] == 0.0
    assert not any(v["passed"] for v in verdicts.values())


def test_parity_metrics_on_known_values():
    reference = np.array([[2.0, 0.0], [0.0, 1.0]])
    candidate = np.array([[2.0, 0.5], [0.0, 1.0]])
    metrics = compare(reference, candidate, np.array([0, 1]))
    assert metrics["agreement"] == 1.0 and metrics["accuracy"] == 1.0 and metrics["accuracy_delta_pt"] == 0.0
    assert metrics["max_abs_logit"] == 0.5 and metrics["mean_abs_logit"] == 0.125
    assert np.isclose(metrics["max_rel_error"], 0.25)
    assert np.isclose(metrics["cosine_min"], 4 / (2 * np.sqrt(4.25)))
    assert metrics["cosine_mean"] > metrics["cosine_min"]


def test_variants_from_another_checkpoint_are_refused_by_name(tmp_path, variants_dir, mnist_dir, tiny_model_dir):
    """The stale-artifact scenario: a retrained model, variants left from the previous one."""
    import shutil

    other = shutil.copytree(tiny_model_dir, tmp_path / "retrained")
    spec = other / "model.json"
    spec.write_text(spec.read_text().replace('"world_size"', '"retrained": 1, "world_size"'))
    with pytest.raises(PipelineError, match=r"validate needs exported \(built from checkpoint \w+, current is \w+\); "
                                            r"simplified \(.*\): rebuild with `pipeline export model=tiny "):
        _run(variants_dir, other, mnist_dir)
