"""Every command a bundle's README.md shows runs as written, from a clean folder holding only the bundle: the
Python (a fresh venv, the pinned runtime from PyPI), Node.js (onnxruntime-node from npm), C++ (CMake against an
ONNX Runtime release folder: the C++ cell's, given as $ORT) and, for the web page, its static server. The GPU
bundles' commands are the same template; their runtime (onnxruntime-gpu, CUDA) cannot run here."""

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.deploy import contents, verify
from pipeline.runtimes import cells
from tests.conftest import config, package_into

FENCE = re.compile(r"```bash\n(.*?)```", re.S)
CPU = "CPUExecutionProvider"


@pytest.fixture(scope="module")
def ort_release():
    return cells.environment(cells.RUNTIMES["onnxruntime-cpp"]) / "release"


@pytest.fixture(scope="module")
def more_bundles(bundles, variants_dir, tiny_model_dir, mnist_dir, tmp_path_factory):
    """The openvino and web bundles of the tiny model, as package writes them (their runtimes checked)."""
    deploy = tmp_path_factory.mktemp("readme_bundles")
    cfg = config("target.openvino.selection.rounds=3", "target.web.selection.rounds=3")
    for target in ("openvino", "web"):
        package_into(deploy, cfg, target, variants_dir, bundles["parity_file"], tiny_model_dir, mnist_dir)
    return {**bundles, "openvino": deploy / "openvino", "web": deploy / "web"}


def _run(block: str, cwd, env) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{block}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def _serves_the_page(block: str, cwd, env) -> None:
    """The web bundle's server command, as written, answers with its page; then it is stopped."""
    server = subprocess.Popen(["bash", "-c", block], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen("http://127.0.0.1:8000/index.html", timeout=1) as page:
                    assert b"<canvas" in page.read()
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"nothing served by: {block}")
    finally:
        os.killpg(server.pid, 15)
        server.wait()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cpu_x86", "arm64_mobile", "openvino", "web"])
def test_every_readme_command_runs_as_written(target, more_bundles, ort_release, tmp_path):
    shutil.copytree(more_bundles[target], tmp_path / target)
    readme = (tmp_path / target / "README.md").read_text()
    blocks = FENCE.findall(readme)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    if target != "cpu_x86":  # cpu_x86's card makes its own from the registries (cpp/release.sh), as written
        env["ORT"] = str(ort_release)
    if target == "web":
        _serves_the_page(blocks.pop(0), tmp_path, env)
    outputs = [_run(block, tmp_path, env) for block in blocks]
    assert len(outputs) == (3 if target == "cpu_x86" else 2), readme  # Python, (Node,) C++
    python, cpp = outputs[0], outputs[-1]
    assert f"verified {target}" in python and "\t7\t" in python, python
    assert f"verified {target} with ONNX Runtime" in cpp and re.search(r"\t7\t0\.\d+$", cpp, re.M), cpp
    primary = contents.load_manifest(tmp_path / target)["target"]["providers"][0]
    on = primary if primary in cells.PROVIDER_PACKAGES else CPU  # a provider no wheel has: checked on the CPU
    assert f"on {on}" in python.splitlines()[-2], python
    if target == "cpu_x86":
        assert f"verified {target}" in outputs[1], outputs[1]
    # Nothing the commands did landed in the bundle (an unlisted file fails), no bytecode cache either.
    verify.verify(tmp_path / target, allow_fallback=True)
    assert not (tmp_path / target / "__pycache__").exists()


def test_the_oldest_tools_the_cards_name_are_the_ones_ci_runs_the_consumers_with():
    """A card's "Python 3.11", "Node.js 20", "g++ 12", "CMake 3.25" are the versions the tests run the consumers
    with here (the Python one is the `onnxruntime` cell's Debian 12 interpreter), not hopes."""
    from pipeline.runtimes import envs

    def major_minor(argv: list[str]) -> tuple[int, ...]:
        text = subprocess.run(argv, capture_output=True, text=True).stdout
        return tuple(int(part) for part in re.search(r"(\d+)\.(\d+)", text).groups())

    compiler, compiler_major, cmake, cmake_version = envs.CXX_TOOLS
    assert major_minor(["node", "--version"])[0] == envs.NODE_MAJOR
    assert major_minor([compiler, "-dumpfullversion"])[0] == compiler_major
    assert major_minor([cmake, "--version"]) == cmake_version
    runtime = cells.RUNTIMES["onnxruntime"]
    command, env = runtime.command(cells.environment(runtime))
    python = subprocess.run([*command, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                            text=True, env={**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
                                            **env}).stdout.strip()
    assert python == "3.11.2"


@pytest.mark.slow
def test_the_cuda_cards_commands_run_here_up_to_the_gpu(bundles, variants_dir, tiny_model_dir, mnist_dir, tmp_path):
    """The cuda card's Python commands as written, on a machine without an NVIDIA GPU: its pinned package resolves
    from PyPI with the CUDA and cuDNN wheels its extras name (pip --dry-run: metadata only), and its checker and
    its classifier say (exit 3) that CUDA is not here and what it needs. The tensorrt card is the same template."""
    import json

    package_into(tmp_path / "deploy", config(), "cuda", variants_dir, bundles["parity_file"], tiny_model_dir,
                 mnist_dir)
    shutil.copytree(tmp_path / "deploy" / "cuda", tmp_path / "cuda")
    python_block = FENCE.findall((tmp_path / "cuda" / "README.md").read_text())[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # `python`: one with onnxruntime's CPU build
    install = next(line for line in python_block.splitlines() if line.startswith("pip install "))
    assert install.startswith(f"pip install {cells.provider_requirement('CUDAExecutionProvider')} ")
    dry_run = install.replace("pip install", "python -m pip install --dry-run --ignore-installed -q --report -", 1)
    report = json.loads(_run(dry_run, tmp_path, env))
    resolved = {item["metadata"]["name"] for item in report["install"]}
    assert {"onnxruntime-gpu", "nvidia-cudnn-cu13", "nvidia-cuda-runtime"} <= resolved, resolved
    for line in python_block.splitlines():
        if line.startswith("python cuda/"):
            done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert done.returncode == 3, (line, done.stderr)
            assert "CUDAExecutionProvider is not in this onnxruntime" in done.stderr
            assert "it needs pip install 'onnxruntime-gpu[cuda,cudnn]==" in done.stderr
