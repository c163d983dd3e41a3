"""The runtime matrix: each bundle's own verify.py on the runtime it ships for (real environments, cached)."""

import json
import shutil
import subprocess
import sys

import pytest

from pipeline.core.errors import GateFailure
from pipeline.runtimes import cells
from tests.conftest import config, package_into, run_cli


def _manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def test_the_x86_bundle_is_verified_natively_from_python_node_and_cpp_and_says_java_is_not(bundles):
    python, node, cpp, java = _manifest(bundles["cpu_x86"])["verified_on"]
    assert python["verified"] and python["runtime"] == "onnxruntime" and python["machine"] == "x86_64"
    assert python["provider"] == "CPUExecutionProvider" and python["top1_agreement"] == 1.0
    assert python["golden_pictures"] == 6
    assert node["verified"] and node["runtime"] == "onnxruntime-node"
    assert node["package"].startswith("onnxruntime-node@")
    assert node["max_abs_delta"] <= 1e-5 and node["top1_agreement"] == 1.0
    assert "CPUExecutionProvider on x86_64 with onnxruntime==" in (bundles["cpu_x86"] / "README.md").read_text()
    assert cpp["verified"] and cpp["runtime"] == "onnxruntime-cpp" and cpp["machine"] == "x86_64"
    assert cpp["golden_samples"] == python["golden_samples"] and cpp["max_abs_delta"] == 0.0
    assert not java["verified"] and "Maven Central" in java["reason"]


def test_the_arm64_bundle_runs_on_aarch64_under_emulation_and_says_what_was_not_proven(bundles):
    manifest = _manifest(bundles["arm64_mobile"])
    cells_run = {r["runtime"]: r for r in manifest["verified_on"] if "runtime" in r}
    for cpu in cells_run.values():  # verify.py on the aarch64 wheel, and the cross-built C++ consumer
        assert cpu["verified"] and cpu["machine"] == "aarch64" and cpu["emulated"] is True
        assert cpu["max_abs_delta"] <= 0.5 and cpu["top1_agreement"] == 1.0
    assert set(cells_run) == {"onnxruntime-aarch64", "onnxruntime-cpp-aarch64"}
    records = {r["provider"]: r for r in manifest["verified_on"]}
    for provider in ("NnapiExecutionProvider", "XnnpackExecutionProvider"):
        assert records[provider]["verified"] is False and "no runtime with" in records[provider]["reason"]
    # The usability check says CoreML would not perform well: not offered, and the manifest says why.
    assert "CoreMLExecutionProvider" not in manifest["target"]["providers"] + list(records)
    assert "mobile_usability.txt" in manifest["target"]["not_usable"]["CoreMLExecutionProvider"]


def test_a_bundle_failing_on_its_runtime_stops_the_stage_and_is_never_named(bundles, tiny_model_dir, mnist_dir,
                                                                           variants_dir, tmp_path):
    """OpenVINO's INT8 kernels differ from the CPU EP's by ~1e-6: an atol below that must fail on the EP."""
    cfg = config("target.openvino.golden_atol=1e-12")
    out = tmp_path / "openvino"
    with pytest.raises(GateFailure, match=r"openvino: the bundle's verify.py failed on onnxruntime-openvino "
                                          r"\(OpenVINOExecutionProvider\): .*exceeds atol"):
        package_into(tmp_path, cfg, "openvino", variants_dir, bundles["parity_file"], tiny_model_dir, mnist_dir)
    assert not out.exists() and not (tmp_path / "openvino.tar.gz").exists()
    assert not list(tmp_path.glob(".openvino*"))


def test_runs_recorded_on_other_hardware_count_only_for_the_same_model_bytes(bundles, tmp_path):
    from pipeline.core.io import sha256_file

    digest = sha256_file(bundles["cpu_x86"] / "model.onnx")
    run = {"target": "cpu_x86", "runtime": "onnxruntime-gpu", "package": "onnxruntime-gpu==1.31.1",
           "provider": "CUDAExecutionProvider", "architecture": "x86_64", "device": "GPU", "emulated": False,
           "verified": True, "golden_samples": 16, "max_abs_delta": 0.001, "top1_agreement": 1.0}
    runs = tmp_path / "device_runs.json"
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    runs.write_text(json.dumps({"runs": [{**run, "model_sha256": digest}]}))
    records = cells.verified_on(bundles["cpu_x86"], "cpu_x86", providers, [], runs)
    assert [r["verified"] for r in records] == [True, False] and records[0]["device"] == "GPU"
    runs.write_text(json.dumps({"runs": [{**run, "model_sha256": "0" * 64}]}))
    records = cells.verified_on(bundles["cpu_x86"], "cpu_x86", providers, [], runs)
    assert records[0]["verified"] is False and f"sha256 {digest[:12]}" in records[0]["reason"]


def test_a_runtime_this_machine_cannot_set_up_is_a_stated_reason(bundles, tmp_path, monkeypatch, capsys):
    (tmp_path / "debian_version").write_text("11.9\n")
    monkeypatch.setattr(cells.envs, "DEBIAN_VERSION", tmp_path / "debian_version")
    monkeypatch.setattr(cells, "CACHE", tmp_path / "cache")
    record = cells.check(bundles["arm64_mobile"], "onnxruntime-aarch64", "arm64_mobile")
    assert record["verified"] is False and "this machine is Debian 11" in record["reason"]
    assert "warning: arm64_mobile not verified on onnxruntime-aarch64" in capsys.readouterr().err


def test_the_ci_gate_cannot_pass_on_a_cell_that_did_not_run(bundles, tiny_model_dir, mnist_dir, variants_dir,
                                                             tmp_path, monkeypatch):
    """With require_runtimes (experiment=ci), a cell this machine should run but could not set up fails the
    stage, naming it; Java, which no registry here has, stays a stated reason."""
    (tmp_path / "debian_version").write_text("11.9\n")
    monkeypatch.setattr(cells.envs, "DEBIAN_VERSION", tmp_path / "debian_version")
    monkeypatch.setattr(cells, "CACHE", tmp_path / "cache")
    cfg = config("target.arm64_mobile.runtimes=[onnxruntime-aarch64]", "target.arm64_mobile.require_runtimes=true")
    out = tmp_path / "arm64_mobile"
    with pytest.raises(GateFailure, match=r"arm64_mobile: runtime cell\(s\) that this machine should run did not: "
                                          r"onnxruntime-aarch64 \(qemu-user 10 comes from"):
        package_into(tmp_path, cfg, "arm64_mobile", variants_dir, bundles["parity_file"], tiny_model_dir, mnist_dir)
    assert not out.exists() and not (tmp_path / "arm64_mobile.tar.gz").exists()
    java = [{"runtime": "onnxruntime-java", "provider": "CPUExecutionProvider", "verified": False, "reason": "x"}]
    cells.require_ran(java, "cpu_x86")  # cannot exist here: no failure
    assert config("experiment=ci").target["cpu_x86"].require_runtimes


def test_pipeline_verify_runs_one_cell_of_the_matrix_on_demand(bundles):
    archive = bundles["cpu_x86"].with_suffix(".tar.gz")
    result = run_cli("verify", str(archive), "--runtime", "onnxruntime-aarch64")
    assert result.returncode == 0, result.stderr
    assert "verified: CPUExecutionProvider on aarch64 (emulated) with onnxruntime==" in result.stdout
    elsewhere = run_cli("verify", str(archive), "--runtime", "onnxruntime-openvino")
    assert elsewhere.returncode == 2
    assert "cpu_x86 does not run on OpenVINOExecutionProvider (onnxruntime-openvino); its providers: CPU" in (
        elsewhere.stderr)
    unknown = run_cli("verify", str(archive), "--runtime", "tflite")
    assert unknown.returncode == 2 and "unknown runtime 'tflite' (known: onnxruntime," in unknown.stderr


def test_verify_refuses_a_fallback_when_a_provider_is_required(bundles, tmp_path):
    bundle = shutil.copytree(bundles["cpu_x86"], tmp_path / "b")
    script = [sys.executable, "verify.py", ".", "--provider", "CUDAExecutionProvider"]
    result = subprocess.run(script, cwd=bundle, capture_output=True, text=True)
    assert result.returncode == 3
    assert "not verified: CUDAExecutionProvider is not in this onnxruntime (it has" in result.stderr


def test_verify_runs_twice_in_the_bundle_folder_and_writes_nothing_there(bundles, tmp_path):
    """Python would cache session.py's bytecode beside it: the checkers write none into a bundle."""
    import os

    bundle = shutil.copytree(bundles["cpu_x86"], tmp_path / "b")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for script in ("verify.py", "verify.py", "infer.py"):
        argv = [sys.executable, script, "digit.png" if script == "infer.py" else "."]
        result = subprocess.run(argv, cwd=bundle, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert not (bundle / "__pycache__").exists()


@pytest.fixture(scope="module")
def web_bundle(bundles, tiny_model_dir, mnist_dir, variants_dir, tmp_path_factory):
    deploy = tmp_path_factory.mktemp("web")
    package_into(deploy, config(), "web", variants_dir, bundles["parity_file"], tiny_model_dir, mnist_dir)
    return deploy / "web"


def test_the_web_page_verifies_itself_and_reads_digits_drawn_on_it_in_chromium(web_bundle):
    [record] = _manifest(web_bundle)["verified_on"]
    assert record["verified"] and record["provider"] == "wasm" and record["browser"].startswith("Chromium ")
    assert record["golden_pictures"] == 6 and record["max_abs_delta"] <= config().target["web"].golden_atol
    assert record["drawn"]["read_correctly"] == record["drawn"]["digits"] == 6
    assert {"index.html", "app.mjs", "digits.mjs", "ort.wasm.min.mjs", "ort-wasm-simd-threaded.wasm"} <= {
        p.name for p in web_bundle.iterdir()}
    assert "python3 -m http.server -b 127.0.0.1 8000 -d web" in (web_bundle / "README.md").read_text()
    assert "at batch 1 on wasm (onnxruntime-web)" in _manifest(web_bundle)["selection"]["reason"]


def test_an_edited_page_script_fails_in_the_browser_naming_the_file(web_bundle, tmp_path):
    from pipeline.runtimes import browser

    bundle = shutil.copytree(web_bundle, tmp_path / "web")
    (bundle / "digits.mjs").write_text((bundle / "digits.mjs").read_text().replace("BOX = 20", "BOX = 18"))
    with pytest.raises(Exception, match=r"sha256 mismatch for digits\.mjs"):
        browser.check_page(bundle, [])


def test_a_timing_worker_that_cannot_open_its_model_stops_with_one_line(tmp_path):
    import numpy as np

    from pipeline.core.errors import PipelineError
    from pipeline.runtimes.remote import RemoteRunner

    x = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(PipelineError, match=r"^the timing worker on onnxruntime-openvino stopped: .*NO_SUCHFILE"):
        RemoteRunner("onnxruntime-openvino", tmp_path / "missing.onnx", {}, [("OpenVINOExecutionProvider", {})], x, x)
