"""The ONNX Runtime model package: written with ORT's own API from the built bundles, opened with
ModelPackageContext, each variant whose provider this machine has checked against its bundle's golden outputs."""

import json
import shutil

import onnxruntime as ort
import pytest

from pipeline.core.errors import RuntimeCellFailure
from pipeline.core.io import sha256_file
from pipeline.deploy import authenticity
from tests.conftest import config, run_stage
from tests.helpers.keys import ec_key_pair


@pytest.fixture(scope="module")
def deploy(bundles, tmp_path_factory):
    """The cpu_x86 and arm64_mobile bundles, as package leaves them in artifacts/deploy/."""
    folder = tmp_path_factory.mktemp("deploy")
    for target in ("cpu_x86", "arm64_mobile"):
        shutil.copytree(bundles[target], folder / target)
    return folder


def _package(deploy, out, **options):
    return run_stage("model_package", config(), deploy_dir=deploy, out_dir=out, **options)


def test_one_variant_per_ort_bundle_same_bytes_checked_through_the_package_api(deploy, tmp_path):
    result = _package(deploy, tmp_path / "package")
    root = tmp_path / "package"
    context = ort.ModelPackageContext(str(root))
    assert context.get_component_names() == ["mnist-digits"]
    # The targets' order; the mobile .ort also on the CPU EP, its target's last provider.
    assert context.get_variant_names("mnist-digits") == ["cpu_x86", "arm64_mobile", "arm64_mobile-cpu"]
    for variant in result.metrics["variants"]:  # the bundle's own model file, byte for byte
        bundle = json.loads((deploy / variant["bundle"] / "manifest.json").read_text())
        packaged = root / "mnist-digits" / variant["name"] / bundle["model"]["file"]
        assert sha256_file(packaged) == bundle["files"][bundle["model"]["file"]] == variant["model_sha256"]
    verified = {c["variant"]: c for c in result.metrics["verified"]}
    assert verified["cpu_x86"]["verified"] and verified["arm64_mobile-cpu"]["verified"]
    assert not verified["arm64_mobile"]["verified"] and "NnapiExecutionProvider is not in" in verified[
        "arm64_mobile"]["reason"]
    # This onnxruntime has the CPU EP only: ORT picks the first CPU variant whatever the options say.
    (here,) = result.metrics["selection"].values()
    assert {s["variant"] for s in here} == {"cpu_x86"}
    assert len(here) == 1 + len(ort.OrtExecutionProviderDevicePolicy.__members__)


def _as_target(deploy, name: str, providers: list[str], options: list[dict]) -> None:
    """A copy of the cpu_x86 bundle that declares another target's providers (its model runs on any of them)."""
    shutil.copytree(deploy / "cpu_x86", deploy / name)
    manifest = json.loads((deploy / name / "manifest.json").read_text())
    manifest["target"] |= {"name": name, "providers": providers, "provider_options": options}
    (deploy / name / "manifest.json").write_text(json.dumps(manifest))


def test_a_variant_whose_provider_is_absent_is_not_verified_and_says_why(deploy, tmp_path):
    _as_target(deploy, "cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], [{"device_id": 0}, {}])
    try:
        result = _package(deploy, tmp_path / "package")
    finally:
        shutil.rmtree(deploy / "cuda")
    cuda = next(c for c in result.metrics["verified"] if c["variant"] == "cuda")
    assert cuda["verified"] is False and "CUDAExecutionProvider is not in this onnxruntime" in cuda["reason"]
    assert any("cuda: not verified" in n for n in result.notices)
    declared = json.loads((tmp_path / "package" / "manifest.json").read_text())["components"]["mnist-digits"]
    assert declared["variants"]["cuda"]["device"] == "gpu"
    assert declared["variants"]["cuda"]["executor_info"]["ort"]["provider_options"] == {"device_id": "0"}


def test_a_variant_that_drifts_from_its_golden_outputs_stops_the_stage(deploy, tmp_path):
    drifted = tmp_path / "deploy"
    shutil.copytree(deploy, drifted)
    manifest = json.loads((drifted / "cpu_x86" / "manifest.json").read_text())
    manifest["golden"]["tolerance"]["atol"] = 1e-12
    (drifted / "cpu_x86" / "manifest.json").write_text(json.dumps(manifest))
    (drifted / "cpu_x86" / "test_data_set_0" / "output_0.pb").write_bytes(
        (drifted / "arm64_mobile" / "test_data_set_1" / "output_0.pb").read_bytes())
    with pytest.raises(RuntimeCellFailure, match="model package variant cpu_x86"):
        _package(drifted, tmp_path / "package")
    assert not (tmp_path / "package").exists()


def test_the_package_is_signed_over_every_file_when_a_key_is_given(deploy, tmp_path):
    _, private, public = ec_key_pair(tmp_path, "producer")
    result = _package(deploy, tmp_path / "package", sign_key=private)
    assert result.metrics["signed"] and (tmp_path / "package" / "model.sig").is_file()
    authenticity.check_signature(tmp_path / "package", public)
    (tmp_path / "package" / "mnist-digits" / "cpu_x86" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(authenticity.BundleError, match="does not verify"):
        authenticity.check_signature(tmp_path / "package", public)


def test_the_openvino_variant_runs_through_the_package_api_on_openvinos_plugin_ep(deploy, tmp_path):
    """ORT 1.32 loads OpenVINO's EP as a plugin (onnxruntime-ep-openvino, its own environment): there the variant
    reproduces its bundle's golden outputs, and every device policy selects it."""
    _as_target(deploy, "openvino", ["OpenVINOExecutionProvider", "CPUExecutionProvider"], [{"device_type": "CPU"}, {}])
    try:
        result = _package(deploy, tmp_path / "package")
    finally:
        shutil.rmtree(deploy / "openvino")
    checked = next(c for c in result.metrics["verified"] if c["variant"] == "openvino")
    assert checked["verified"] and checked["providers"][0] == "OpenVINOExecutionProvider"
    assert "onnxruntime-ep-openvino" in checked["runtime"]
    plugin = result.metrics["selection"][checked["runtime"]]
    assert plugin[0] == {"options": "default session options", "variant": "cpu_x86",
                         "providers": ["CPUExecutionProvider"]}
    assert {s["variant"] for s in plugin[1:]} == {"openvino"}
