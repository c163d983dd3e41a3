import json

import pytest

from pipeline.deploy import verify
from pipeline.errors import GateFailure
from pipeline.stages import package
from tests.conftest import config


def _candidate(name, p50, passed=True, validated=True):
    return {"name": name, "passed_gates": passed, "validated": validated, "failed_gates": [] if passed else ["x"],
            "latency_ms_cpu": {"p50": p50}, "bytes": 100}


def test_selection_takes_the_fastest_gate_passing_candidate_outside_the_tie_margin():
    cfg = config("target.cpu_x86.latency_tie_margin=0.1").target["cpu_x86"]
    candidates = [_candidate("a", 1.0), _candidate("b", 0.5), _candidate("c", 0.1, passed=False)]
    chosen, reason = package.select(cfg, candidates, {"CPUExecutionProvider"})
    assert chosen["name"] == "b" and "2 of 3 candidates that pass" in reason


def test_selection_prefers_the_targets_order_within_the_tie_margin():
    cfg = config().target["cpu_x86"]
    chosen, _ = package.select(cfg, [_candidate("a", 1.1), _candidate("b", 1.0)], {"CPUExecutionProvider"})
    assert chosen["name"] == "a"


def test_selection_does_not_pretend_to_time_an_absent_provider():
    cfg = config().target["cuda"]
    chosen, reason = package.select(cfg, [_candidate("fp16", 9.0), _candidate("fp32", 1.0)], {"CPUExecutionProvider"})
    assert chosen["name"] == "fp16" and "CUDAExecutionProvider is not available here" in reason


def test_no_passing_candidate_is_a_gate_failure():
    cfg = config().target["cpu_x86"]
    with pytest.raises(GateFailure, match="no candidate passes its parity gates"):
        package.select(cfg, [_candidate("a", 1.0, passed=False), _candidate("b", 1.0, False, validated=False)], set())


def test_cpu_bundle_has_every_required_part_and_verifies(bundles):
    bundle = bundles["cpu_x86"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["schema"] == "onnx-deploy-manifest" and manifest["schema_version"] == 1
    assert manifest["verified_on"] == ["CPUExecutionProvider"]
    assert manifest["io"]["inputs"] == [{"name": "input", "shape": ["batch", 1, 28, 28], "dtype": "float"}]
    assert manifest["preprocessing"]["mean"] == [0.1307] and manifest["preprocessing"]["std"] == [0.3081]
    assert manifest["class_labels"] == [str(d) for d in range(10)]
    provenance = manifest["provenance"]
    assert len(provenance["checkpoint_sha256"]) == 64 and len(provenance["dataset_sha256"]) == 64
    assert "benchmark" not in manifest and "source_commit" not in json.dumps(manifest)  # same inputs, same bytes
    assert [c["name"] for c in manifest["selection"]["candidates"]] == [
        "int8_static", "optimized", "int8_static_reduce_range"]
    assert manifest["parity"]["agreement"] >= 0.995
    assert {"model.onnx", "README.md", "infer.py", "verify.py", "test_data_set_0/input_0.pb"} <= set(manifest["files"])
    assert "verified on: CPUExecutionProvider only" in (bundle / "README.md").read_text()
    report = verify.verify(bundle)
    assert report["golden_samples"] == 16 and report["files_checked"] == len(manifest["files"])
    assert verify.verify(bundle.with_suffix(".tar.gz"))["max_abs_delta"] == 0.0


def test_candidates_that_were_not_built_are_recorded_not_shipped(bundles):
    manifest = json.loads((bundles["cpu_x86"] / "manifest.json").read_text())
    reduce_range = next(c for c in manifest["selection"]["candidates"] if c["name"] == "int8_static_reduce_range")
    assert reduce_range["built"] is False and reduce_range["passed_gates"] is False
    assert "int8_static_reduce_range not built" in manifest["selection"]["reason"]


def test_mobile_bundle_is_ort_format_with_fixed_batch_and_a_usability_verdict(bundles):
    bundle = bundles["arm64_mobile"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["file"] == "model.ort" and (bundle / "model.ort").stat().st_size > 0
    assert manifest["io"]["inputs"][0]["shape"] == [1, 1, 28, 28]
    assert manifest["mobile"]["usability"]["verdicts"].keys() >= {"NNAPI"}
    assert "Checking NNAPI" in (bundle / "mobile_usability.txt").read_text()
    assert "ai.onnx" in (bundle / "required_operators.config").read_text()
    assert verify.verify(bundle)["golden_sets"] == 8


def test_tarball_is_byte_reproducible(bundles, tmp_path):
    from pipeline.bundle import write_tarball

    first = write_tarball(bundles["cpu_x86"], tmp_path / "a.tar.gz").read_bytes()
    assert first == write_tarball(bundles["cpu_x86"], tmp_path / "b.tar.gz").read_bytes()
