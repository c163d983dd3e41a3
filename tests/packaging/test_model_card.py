"""Every command a bundle's README.md shows runs as written, from a clean folder holding only the bundle: the
Python (a fresh venv, the pinned runtime from PyPI), Node.js (onnxruntime-node from npm) and C++ (CMake against
an ONNX Runtime release folder: the C++ cell's, given as $ORT) consumers."""

import os
import re
import shutil
import subprocess

import pytest

from pipeline.deploy import verify
from pipeline.runtimes import cells

FENCE = re.compile(r"```bash\n(.*?)```", re.S)


def _blocks(readme: str) -> list[str]:
    return FENCE.findall(readme)


@pytest.fixture(scope="module")
def ort_release():
    return cells.environment(cells.RUNTIMES["onnxruntime-cpp"]) / "release"


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cpu_x86", "arm64_mobile"])
def test_every_readme_command_runs_as_written(target, bundles, ort_release, tmp_path):
    shutil.copytree(bundles[target], tmp_path / target)
    readme = (tmp_path / target / "README.md").read_text()
    blocks = _blocks(readme)
    assert len(blocks) == (3 if target == "cpu_x86" else 2), readme  # Python, (Node,) C++
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["ORT"] = str(ort_release)
    outputs = []
    for block in blocks:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{block}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        outputs.append(done.stdout)
    python, cpp = outputs[0], outputs[-1]
    assert f"verified {target}" in python and "\t7\t" in python, python
    assert f"verified {target} with ONNX Runtime" in cpp and re.search(r"^7 0\.\d+$", cpp, re.M), cpp
    if target == "cpu_x86":
        assert f"verified {target}" in outputs[1], outputs[1]
    # Nothing the commands did landed in the bundle (an unlisted file fails), no bytecode cache either.
    verify.verify(tmp_path / target, allow_fallback=True)
    assert not (tmp_path / target / "__pycache__").exists()
