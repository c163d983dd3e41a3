import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from onnx import numpy_helper

from pipeline.deploy import authenticity, contents, verify
from pipeline.packaging.bundle import file_hashes
from tests.conftest import run_cli
from tests.helpers.keys import ec_key_pair


@pytest.fixture
def bundle_copy(bundles, tmp_path):
    return shutil.copytree(bundles["cpu_x86"], tmp_path / "cpu_x86")


def _rehash(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = file_hashes(bundle)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_tensor_reader_matches_onnx_for_raw_and_typed_fields(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    (tmp_path / "raw.pb").write_bytes(numpy_helper.from_array(x).SerializeToString())
    np.testing.assert_array_equal(contents.read_tensor(tmp_path / "raw.pb"), x)
    typed = numpy_helper.from_array(x)
    typed.ClearField("raw_data")
    typed.float_data.extend(x.ravel().tolist())
    (tmp_path / "typed.pb").write_bytes(typed.SerializeToString())
    np.testing.assert_array_equal(contents.read_tensor(tmp_path / "typed.pb"), x)


def test_a_tampered_model_fails_naming_the_file(bundle_copy):
    model = bundle_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(contents.BundleError, match=r"sha256 mismatch for model\.onnx"):
        verify.verify(bundle_copy)


def test_an_unlisted_file_fails(bundle_copy):
    (bundle_copy / "test_data_set_0" / "extra.py").write_text("print('hi')")
    with pytest.raises(contents.BundleError, match=r"unlisted file test_data_set_0/extra\.py"):
        verify.verify(bundle_copy)


def test_a_missing_file_fails(bundle_copy):
    (bundle_copy / "infer.py").unlink()
    with pytest.raises(contents.BundleError, match=r"missing file infer\.py"):
        verify.verify(bundle_copy)


def test_an_invalid_manifest_fails(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    del manifest["golden"]
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(contents.BundleError, match="`golden` missing"):
        verify.verify(bundle_copy)


@pytest.mark.parametrize(("key", "value"), [("mean", [0.9]), ("std", [0.1]), ("scale", 1.0)])
def test_an_edit_to_the_manifests_preprocessing_fails_verification(bundle_copy, key, value):
    """The manifest is not hashed, so its preprocessing is proven by the golden pictures instead."""
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["preprocessing"][key] = value
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(verify.GoldenMismatch, match="preprocessing, class_labels or the preparation code changed"):
        verify.verify(bundle_copy)
    result = subprocess.run([sys.executable, "verify.py", "."], cwd=bundle_copy, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("verification failed: golden_pictures/")


def test_drifted_golden_outputs_are_exit_1_not_2(bundle_copy):
    """Hashes re-signed, outputs changed: the bundle is intact but the model no longer reproduces them."""
    golden = bundle_copy / "test_data_set_0" / "output_0.pb"
    y = contents.read_tensor(golden) + 1.0
    golden.write_bytes(numpy_helper.from_array(y.astype(np.float32), "logits").SerializeToString())
    _rehash(bundle_copy)
    # 1 off, give or take the golden grid's rounding (manifest.golden.grid): 0.992 to 1.01
    with pytest.raises(verify.GoldenMismatch, match=r"test_data_set_0: max \|Δ\| (0\.99\d*|1|1\.0\d*) exceeds atol"):
        verify.verify(bundle_copy)
    result = run_cli("verify", str(bundle_copy))
    assert result.returncode == 1 and "verification failed: test_data_set_0" in result.stderr


@pytest.mark.parametrize("member, message", [
    ("../escape.txt", "'..' in path"),
    ("/tmp/absolute.txt", "absolute path"),
    ("link", "links are not allowed"),
])
def test_unsafe_archive_members_are_refused(tmp_path, member, message):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(contents.BundleError, match=message):
        verify.verify(archive)
    assert not (tmp_path.parent / "escape.txt").exists()
    result = run_cli("verify", str(archive))
    assert result.returncode == 2 and result.stderr.startswith("error: unsafe archive member")


@pytest.mark.parametrize("shape, dtype, message", [
    ((0, 1, 28, 28), np.float32, "batch of 0"),
    ((2, 28, 28), np.float32, "rank 3"),
    ((2, 1, 28, 28), np.float64, "dtype float64"),
    ((2, 1, 14, 14), np.float32, "dimension 2 is 14"),
])
def test_golden_inputs_of_the_wrong_form_are_refused(bundle_copy, shape, dtype, message):
    (bundle_copy / "test_data_set_0" / "input_0.pb").write_bytes(
        numpy_helper.from_array(np.zeros(shape, dtype)).SerializeToString())
    _rehash(bundle_copy)
    with pytest.raises(contents.BundleError, match=message):
        verify.verify(bundle_copy)


def test_nan_in_golden_inputs_is_reported(bundle_copy):
    x = contents.read_tensor(bundle_copy / "test_data_set_0" / "input_0.pb").copy()
    x[0, 0, 0, 0] = np.nan
    (bundle_copy / "test_data_set_0" / "input_0.pb").write_bytes(numpy_helper.from_array(x).SerializeToString())
    _rehash(bundle_copy)
    with pytest.raises(contents.BundleError, match="1 NaN/Inf values in the input"):
        verify.verify(bundle_copy)


def test_the_archive_verifies_on_debian_12s_python_with_only_onnxruntime_numpy_and_pillow(bundles, tmp_path):
    """The oldest Python the card names, Debian 12's own 3.11.2 (no tarfile `data` filter, which came in 3.11.4),
    with nothing but the consumer's wheels: the `onnxruntime` cell's environment."""
    from pipeline.runtimes import cells

    runtime = cells.RUNTIMES["onnxruntime"]
    command, env = runtime.command(cells.environment(runtime))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, **env}
    archive = bundles["cpu_x86"].with_suffix(".tar.gz")
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(extracted, filter="data")
    script = extracted / "cpu_x86" / "verify.py"
    probe = ("import sys, importlib.util as u; print(sys.version.split()[0], "
             "[m for m in ('torch', 'onnx', 'pipeline') if u.find_spec(m)])")
    found = subprocess.run([*command, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env).stdout
    assert found.strip() == "3.11.2 []"
    digest = archive.with_name(archive.name + ".sha256")
    ok = subprocess.run([*command, str(script), str(archive), "--sha256", str(digest)], capture_output=True,
                        text=True, cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "authentic" in ok.stdout and "verified cpu_x86" in ok.stdout and "on CPUExecutionProvider" in ok.stdout
    tampered = extracted / "cpu_x86"
    (tampered / "README.md").write_text("changed")
    bad = subprocess.run([*command, str(script), str(tampered)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "sha256 mismatch for README.md" in bad.stderr


def test_a_bundle_repacked_from_inside_its_folder_verifies(bundles, tmp_path):
    """`tar -czf x.tar.gz .` from inside the bundle: entries start with `./`."""
    import subprocess

    archive = tmp_path / "repacked.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "."], cwd=bundles["cpu_x86"], check=True)
    assert verify.verify(archive)["target"] == "cpu_x86"


def test_verify_script_help_is_usage_not_an_error(bundles):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(bundles["cpu_x86"] / "verify.py"), "--help"], capture_output=True,
                            text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: python verify.py")


def test_the_published_sha256_pins_the_archive(bundles, tmp_path):
    archive = bundles["cpu_x86"].with_suffix(".tar.gz")
    published = archive.with_name(archive.name + ".sha256")
    assert published.read_text().split() == [contents.sha256(archive), archive.name]
    assert verify.verify(archive, sha256_expected=str(published))["target"] == "cpu_x86"
    repacked = tmp_path / "cpu_x86.tar.gz"
    subprocess.run(["tar", "-czf", str(repacked), "."], cwd=bundles["cpu_x86"], check=True)
    with pytest.raises(contents.BundleError, match="it is not the archive the producer published"):
        verify.verify(repacked, sha256_expected=str(published))
    bad = run_cli("verify", str(archive), "--sha256", "beef")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --sha256 wants 64 hex digits")


def _keys(tmp_path):
    _, private, public = ec_key_pair(tmp_path, "producer")
    return private, public


def _model_signing_cli(bundle, public) -> subprocess.CompletedProcess:
    """OpenSSF's own checker, no code of ours: `model_signing verify key`."""
    cli = Path(sys.executable).with_name("model_signing")
    return subprocess.run([str(cli), "verify", "key", str(bundle), "--signature", str(bundle / "model.sig"),
                           "--public_key", str(public)], capture_output=True, text=True)


def test_a_signed_bundle_verifies_with_model_signing_and_pipeline_and_any_edit_fails_both(bundle_copy, tmp_path):
    from pipeline.packaging.signing import sign_bundle

    private, public = _keys(tmp_path)
    with pytest.raises(contents.BundleError, match="the bundle is not signed"):
        verify.verify(bundle_copy, public_key=public)
    sign_bundle(bundle_copy, private, {"checkpoint": {"sha256": "0" * 64}}, {"format": "onnx"})
    report = verify.verify(bundle_copy, public_key=public)
    assert report["established"] == "authentic" and "model.sig verifies" in report["because"]
    assert verify.verify(bundle_copy)["established"] == "signature present, not checked"
    statement = authenticity.check_provenance(bundle_copy, public)
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert {s["name"] for s in statement["subject"]} == {"model.onnx", "manifest.json"}
    assert _model_signing_cli(bundle_copy, public).returncode == 0
    cli = run_cli("verify", str(bundle_copy), "--public-key", str(public))
    assert cli.returncode == 0 and cli.stdout.startswith("authentic: "), cli.stdout + cli.stderr

    (tmp_path / "other").mkdir()
    with pytest.raises(contents.BundleError, match=r"does not verify under producer\.pub\.pem"):
        verify.verify(bundle_copy, public_key=_keys(tmp_path / "other")[1])
    edits = {"edited": lambda b: (b / "digits.py").write_text((b / "digits.py").read_text() + "# edited\n"),
             "added": lambda b: (b / "extra.txt").write_text("x"),
             "removed": lambda b: (b / "digit.png").unlink()}
    for what, edit in edits.items():
        copy = tmp_path / what / bundle_copy.name
        shutil.copytree(bundle_copy, copy)
        edit(copy)
        _rehash(copy)  # the manifest agrees with the edit: only the signature can tell
        assert _model_signing_cli(copy, public).returncode != 0, what
        failed = run_cli("verify", str(copy), "--public-key", str(public))
        assert failed.returncode == 2 and "model.sig does not verify" in failed.stderr, (what, failed.stderr)


def test_a_swapped_model_is_consistent_but_not_authentic(bundle_copy):
    """Anyone can rewrite manifest.json to match another model: without an anchor, verify says so."""
    result = subprocess.run([sys.executable, "verify.py", "."], cwd=bundle_copy, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("consistent: "), result.stdout
    assert "nothing here proves who made them" in result.stdout


def test_a_signing_key_that_is_not_ec_is_one_line(bundle_copy, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pipeline.core.errors import PipelineError
    from pipeline.packaging.signing import private_key

    (tmp_path / "key.pem").write_text("not a key")
    with pytest.raises(PipelineError, match=r"cannot read the signing key .*key\.pem"):
        private_key(tmp_path / "key.pem")
    (tmp_path / "ed.pem").write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(PipelineError, match="is not an EC private key"):
        private_key(tmp_path / "ed.pem")
    assert "--sign-key" in run_cli("package", "--help").stdout


def test_extracted_files_carry_the_pipeline_release_date(bundles, tmp_path):
    import datetime

    from pipeline.packaging.release import RELEASE_DATE

    with tarfile.open(bundles["cpu_x86"].with_suffix(".tar.gz")) as tar:
        tar.extractall(tmp_path, filter="data")
    day = datetime.datetime.fromtimestamp((tmp_path / "cpu_x86" / "model.onnx").stat().st_mtime, datetime.UTC)
    assert day.date().isoformat() == RELEASE_DATE


@pytest.mark.parametrize(("key", "value"), [
    ("preprocessing.mean", 0.9), ("preprocessing.std", []), ("target.providers", "CPUExecutionProvider"),
    ("target.session", ["ORT_ENABLE_ALL"]), ("golden.sets", [0]), ("class_labels", 10), ("golden.pictures", [3]),
    ("model.file", None),
])
def test_a_malformed_manifest_value_is_one_line_from_every_checker(bundle_copy, key, value):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    *parents, last = key.split(".")
    node = manifest
    for part in parents:
        node = node[part]
    node[last] = value
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    script = subprocess.run([sys.executable, "verify.py", "."], cwd=bundle_copy, capture_output=True, text=True)
    cli = run_cli("verify", str(bundle_copy))
    for result in (script, cli):
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert key in result.stderr, result.stderr


def test_no_checker_vouches_for_a_provider_that_did_not_run(bundles, tmp_path):
    """The arm64 bundle's target runs on NNAPI, which no onnxruntime here has: every checker says not verified
    (exit 3) and what the provider needs; --allow-fallback checks on the CPU and says it did."""
    from pipeline.runtimes import cells, cpp

    bundle = shutil.copytree(bundles["arm64_mobile"], tmp_path / "arm64_mobile")
    script = subprocess.run([sys.executable, "verify.py", "."], cwd=bundle, capture_output=True, text=True)
    cli = run_cli("verify", str(bundle))
    for result in (script, cli):
        assert result.returncode == 3, result.stderr
        assert "not verified: NnapiExecutionProvider is not in this onnxruntime" in result.stderr
        assert "it needs an Android app" in result.stderr
    fallback = subprocess.run([sys.executable, "verify.py", ".", "--allow-fallback"], cwd=bundle, capture_output=True,
                              text=True)
    assert fallback.returncode == 0 and "not verified on NnapiExecutionProvider (--allow-fallback)" in fallback.stdout
    root = cells.environment(cells.RUNTIMES["onnxruntime-cpp"])
    consumer, env = cpp.native_command(root, bundle)
    native = subprocess.run([*consumer, str(bundle)], capture_output=True, text=True, env={**os.environ, **env})
    assert native.returncode == 3 and "NnapiExecutionProvider is not in this ONNX Runtime" in native.stderr
    assert not (bundle / "__pycache__").exists()  # the checkers wrote no bytecode into the bundle


def test_a_planted_bytecode_file_is_never_run_and_fails_the_check(bundle_copy):
    """A .pyc in the bundle's __pycache__ would run in place of the verified session.py: it is not read, and
    the check fails on it as an unlisted file."""
    planted = bundle_copy / "__pycache__"
    planted.mkdir()
    (planted / f"session.cpython-{sys.version_info.major}{sys.version_info.minor}.pyc").write_bytes(b"not bytecode")
    result = subprocess.run([sys.executable, "verify.py", "."], cwd=bundle_copy, capture_output=True, text=True)
    assert result.returncode == 2 and "unlisted file __pycache__/session" in result.stderr, result.stderr


def test_a_python_without_numpy_or_onnxruntime_gets_one_line_and_exit_3(bundles):
    """Debian 12's python3.11 with nothing installed (the `onnxruntime` cell's interpreter, without its wheels)."""
    from pipeline.runtimes import cells

    runtime = cells.RUNTIMES["onnxruntime"]
    command, env = runtime.command(cells.environment(runtime))
    bare = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, "PYTHONHOME": env["PYTHONHOME"]}
    bundle = bundles["cpu_x86"]
    for script, argv in (("verify.py", [str(bundle)]), ("infer.py", [str(bundle / "digit.png")])):
        done = subprocess.run([*command, str(bundle / script), *argv], capture_output=True, text=True, env=bare)
        assert done.returncode == 3 and done.stderr.count("\n") == 1, done.stderr
        assert "numpy is not installed in this Python" in done.stderr
