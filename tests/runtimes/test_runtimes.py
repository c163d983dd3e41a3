"""The runtime matrix: each bundle's own verify.py on the runtime it ships for (real environments, cached)."""

import base64
import json
import shutil
import subprocess
import sys

import pytest

from pipeline.core.errors import RuntimeCellFailure
from pipeline.deploy import authenticity
from pipeline.runtimes import cells
from tests.conftest import config, package_into, run_cli
from tests.helpers.keys import ec_key_pair


def _manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def _needs(*names: str) -> None:
    """The cells a test's assertions are about, set up here (or skipped, naming what this machine lacks)."""
    for name in names:
        cells.ready(cells.RUNTIMES[name])


def test_the_x86_bundle_is_verified_natively_from_python_node_and_cpp_and_says_java_is_not(bundles):
    _needs("onnxruntime", "onnxruntime-node", "onnxruntime-cpp")
    python, node, cpp, java = _manifest(bundles["cpu_x86"])["verified_on"]
    assert python["verified"] and python["runtime"] == "onnxruntime" and python["machine"] == "x86_64"
    assert python["provider"] == "CPUExecutionProvider" and python["top1_agreement"] == 1.0
    assert python["golden_pictures"] == 6
    assert node["verified"] and node["runtime"] == "onnxruntime-node"
    assert node["package"].startswith("onnxruntime-node@")
    grid = _manifest(bundles["cpu_x86"])["golden"]["grid"]  # golden outputs are rounded to it
    assert node["max_abs_delta"] <= grid and node["top1_agreement"] == 1.0
    assert "CPUExecutionProvider on x86_64 with onnxruntime==" in (bundles["cpu_x86"] / "README.md").read_text()
    assert cpp["verified"] and cpp["runtime"] == "onnxruntime-cpp" and cpp["machine"] == "x86_64"
    assert cpp["golden_samples"] == python["golden_samples"] and cpp["max_abs_delta"] == python["max_abs_delta"] <= grid
    assert not java["verified"] and "Maven Central" in java["reason"]


def test_the_arm64_bundle_runs_on_aarch64_under_emulation_and_says_what_was_not_proven(bundles):
    _needs("onnxruntime-aarch64", "onnxruntime-cpp-aarch64")
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
    with pytest.raises(RuntimeCellFailure, match=r"openvino: the bundle's verify.py failed on onnxruntime-openvino "
                                          r"\(OpenVINOExecutionProvider\): .*exceeds atol"):
        package_into(tmp_path, cfg, "openvino", variants_dir, bundles["parity_file"], tiny_model_dir, mnist_dir)
    assert not out.exists() and not (tmp_path / "openvino.tar.gz").exists()
    assert not list(tmp_path.glob(".openvino*"))


def _verifier_key(folder, name: str) -> tuple:
    """A verifier's EC key pair: the private PEM it signs with, its public half (PEM bytes) and its key id."""
    key, private, public = ec_key_pair(folder, name)
    return key, private, public.read_bytes(), authenticity.key_id(key.public_key())


def _record(bundle, record_file, key_file):
    return subprocess.run([sys.executable, str(bundle / "verify.py"), str(bundle), "--record", str(record_file),
                           "--record-key", str(key_file)], capture_output=True, text=True)


def test_a_record_counts_only_signed_by_a_trusted_verifier_about_the_same_bundle(bundles, tmp_path):
    """verify.py --record --record-key, run where the provider is (here: the CPU EP, standing in for a GPU), writes
    a signed in-toto statement; package copies its facts into verified_on only while a trusted key signed it and
    its subjects are this very bundle and checker."""
    bundle, runs = bundles["cpu_x86"], tmp_path / "device_runs"
    (runs / "verifiers").mkdir(parents=True)
    key, key_file, public, kid = _verifier_key(tmp_path, "lab")
    record_file = runs / "cpu_x86.CPUExecutionProvider.json"
    made = _record(bundle, record_file, key_file)
    assert made.returncode == 0, made.stderr
    envelope = json.loads(record_file.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert envelope["signatures"][0]["keyid"] == kid and "date" not in statement["predicate"]
    assert statement["predicate"]["provider"] == "CPUExecutionProvider" and statement["predicate"]["device"]
    assert {s["name"] for s in statement["subject"]} == set(_manifest(bundle)["files"])
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def judged(trusted):
        return {r["provider"]: r for r in cells.verified_on(bundle, _manifest(bundle), "cpu_x86", providers, [], runs,
                                                                  trusted)}

    assert "signed by " + kid[:16] + ", which packaging.trusted_verifiers does not list" in judged({})[
        "CPUExecutionProvider"]["reason"]
    assert "whose public key is not in device_runs/verifiers/" in judged({"lab": kid})["CPUExecutionProvider"]["reason"]
    (runs / "verifiers" / "lab.pub.pem").write_bytes(public)
    records = judged({"lab": kid})
    assert records["CPUExecutionProvider"]["verified"] and records["CPUExecutionProvider"]["verifier"] == "lab"
    assert "bundle_sha256" not in records["CPUExecutionProvider"]
    assert not records["CUDAExecutionProvider"]["verified"]
    assert "--record cpu_x86.CUDAExecutionProvider.json --record-key" in records["CUDAExecutionProvider"]["reason"]
    # Typed by hand, with every digest right: proves nothing, and says why.
    typed = {**statement["predicate"], "provider": "CUDAExecutionProvider", "device": "NVIDIA H200 (typed by hand)"}
    (runs / "cpu_x86.CUDAExecutionProvider.json").write_text(json.dumps(typed))
    cuda = judged({"lab": kid})["CUDAExecutionProvider"]
    assert not cuda["verified"] and "cpu_x86.CUDAExecutionProvider.json: not a signed attestation" in cuda["reason"]
    # The trusted verifier's envelope with its statement edited: the signature no longer verifies.
    forged = {**statement, "predicate": typed}
    (runs / "cpu_x86.CUDAExecutionProvider.json").write_text(json.dumps(
        {**envelope, "payload": base64.b64encode(json.dumps(forged).encode()).decode()}))
    assert "does not verify under trusted verifier lab's key" in judged({"lab": kid})["CUDAExecutionProvider"]["reason"]
    # Signed by the trusted key, but about another build: not this bundle's record.
    other = {**statement, "subject": [{"name": "model.onnx", "digest": {"sha256": "0" * 64}}]}
    record_file.write_text(json.dumps(authenticity.dsse_envelope(key, other)))
    cpu = judged({"lab": kid})["CPUExecutionProvider"]
    assert not cpu["verified"] and "cpu_x86.CPUExecutionProvider.json: records another build of it" in cpu["reason"]


def test_a_record_needs_the_provider_itself(bundles, tmp_path):
    bundle = bundles["cpu_x86"]
    _, key_file, _, _ = _verifier_key(tmp_path, "lab")
    base = [sys.executable, str(bundle / "verify.py"), str(bundle), "--record", str(tmp_path / "r.json"),
            "--record-key", str(key_file)]
    unsigned = subprocess.run(base[:-2], capture_output=True, text=True)
    assert unsigned.returncode == 2 and "--record and --record-key go together" in unsigned.stderr
    missing = subprocess.run([*base, "--provider", "CUDAExecutionProvider"], capture_output=True, text=True)
    assert missing.returncode == 3 and not (tmp_path / "r.json").exists()
    fallback = subprocess.run([*base, "--allow-fallback"], capture_output=True, text=True)
    assert fallback.returncode == 2 and "cannot be combined with --allow-fallback" in fallback.stderr


def test_a_runtime_this_machine_cannot_set_up_is_a_stated_reason(bundles, tmp_path, monkeypatch, capsys):
    (tmp_path / "debian_version").write_text("11.9\n")
    monkeypatch.setattr(cells.envs, "DEBIAN_VERSION", tmp_path / "debian_version")
    monkeypatch.setattr(cells, "CACHE", tmp_path / "cache")
    record = cells.check(bundles["arm64_mobile"], _manifest(bundles["arm64_mobile"]), "onnxruntime-aarch64",
                         "arm64_mobile")
    assert record["verified"] is False and "this machine is Debian 11" in record["reason"]
    assert "warning: arm64_mobile not verified on onnxruntime-aarch64" in capsys.readouterr().err


def test_the_ci_gate_cannot_pass_on_a_cell_that_did_not_run(bundles, tiny_model_dir, mnist_dir, variants_dir,
                                                             tmp_path, monkeypatch):
    """With packaging.require_runtimes (experiment=ci), a cell this machine should run but could not set up fails the
    stage, naming it; Java, which no registry here has, stays a stated reason."""
    (tmp_path / "debian_version").write_text("11.9\n")
    monkeypatch.setattr(cells.envs, "DEBIAN_VERSION", tmp_path / "debian_version")
    monkeypatch.setattr(cells, "CACHE", tmp_path / "cache")
    cfg = config("target.arm64_mobile.runtimes=[onnxruntime-aarch64]", "packaging.require_runtimes=true")
    out = tmp_path / "arm64_mobile"
    with pytest.raises(RuntimeCellFailure, match=r"arm64_mobile: runtime cell\(s\) that this machine should run "
                                                 r"did not: onnxruntime-aarch64 \(qemu-user 10 comes from"):
        package_into(tmp_path, cfg, "arm64_mobile", variants_dir, bundles["parity_file"], tiny_model_dir, mnist_dir)
    assert not out.exists() and not (tmp_path / "arm64_mobile.tar.gz").exists()
    java = [{"runtime": "onnxruntime-java", "provider": "CPUExecutionProvider", "verified": False, "reason": "x"}]
    cells.require_ran(java, "cpu_x86")  # cannot exist here: no failure
    assert config("experiment=ci").packaging.require_runtimes  # one switch, every target


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


def test_the_web_page_verifies_itself_and_reads_digits_drawn_on_it_in_chromium(web_bundle):
    [record] = _manifest(web_bundle)["verified_on"]
    assert record["verified"] and record["provider"] == "wasm" and record["browser"].startswith("Chromium ")
    assert record["golden_pictures"] == 6 and record["max_abs_delta"] <= config().target["web"].golden_atol
    assert record["drawn"]["read_correctly"] == record["drawn"]["digits"] == 6
    assert record["drawn"]["flagged_not_a_digit"] <= 1  # digits drawn with the mouse are digits
    assert {"index.html", "app.mjs", "digits.mjs", "ort.wasm.min.mjs", "ort-wasm-simd-threaded.wasm"} <= {
        p.name for p in web_bundle.iterdir()}
    assert "python3 -m http.server -b 127.0.0.1 8000 -d web" in (web_bundle / "README.md").read_text()
    assert "at batch 1 on wasm (onnxruntime-web)" in _manifest(web_bundle)["selection"]["reason"]


def _shown_on_pad(page, gray) -> tuple[str, str]:
    """Paint a 280x280 grayscale picture on the page's pad (as a pasted drawing), lift the pen, and read the
    label and the not-a-digit flag the page then shows."""
    before = page.evaluate("window.digitApp.predictions")
    page.evaluate("""(values) => {
      const pad = document.getElementById("pad"), context = pad.getContext("2d");
      const image = context.createImageData(pad.width, pad.height);
      values.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
      context.putImageData(image, 0, 0);
      pad.dispatchEvent(new PointerEvent("pointerup"));
    }""", [int(v) for v in gray.ravel()])
    page.wait_for_function(f"window.digitApp.predictions > {before}")
    return page.inner_text("#label"), page.inner_text("#flag")


def test_the_web_page_flags_a_dot_and_a_word_but_not_a_digit(web_bundle, mnist_dir):
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from pipeline.data import mnist
    from pipeline.runtimes import browser

    assert _manifest(web_bundle)["ood"]["thresholds"]
    word = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(word).text((30, 110), "hello", font=ImageFont.load_default(size=60), fill=0)
    digit = Image.fromarray(255 - mnist.load(mnist_dir).test_images[0]).resize((280, 280), Image.Resampling.BILINEAR)
    with browser.serve(web_bundle) as url, browser.open_page(url + "index.html") as page:
        box = page.locator("#pad").bounding_box()
        page.mouse.click(box["x"] + 140, box["y"] + 140)  # one tap of the pen: a dot
        page.wait_for_function("window.digitApp.predictions >= 1")
        dot = page.inner_text("#flag")
        hello = _shown_on_pad(page, np.asarray(word))
        seven = _shown_on_pad(page, np.asarray(digit))
    assert dot.startswith("Not a digit? ")
    assert hello[1].startswith("Not a digit? ") and "too wide" in hello[1]
    assert seven == (str(mnist.load(mnist_dir).test_labels[0]), "")


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
