"""The `.ort` conversion (pipeline/packaging/mobile.py): what docs/configuration.md promises of it. Its bytes are
not reproducible (onnxruntime writes tables in heap-address order); what it holds is."""

import os
import subprocess
import sys

import numpy as np

from pipeline.deploy.contents import read_tensor
from pipeline.model import onnx_utils
from tests.conftest import REPO

CONVERT = """
import sys
from pathlib import Path
from pipeline.packaging import mobile
out = Path(sys.argv[2])
out.mkdir()
mobile.to_ort_format(Path(sys.argv[1]), out)
"""


def _convert(source, out, cpus: str) -> None:
    """One conversion in its own process, on `cpus` (taskset): another process, another core count."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["taskset", "-c", cpus, sys.executable, "-c", CONVERT, str(source), str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_what_an_ort_conversion_holds_is_the_same_in_every_process(bundles, variants_dir, tmp_path):
    source = tmp_path / "fixed.onnx"
    onnx_utils.save(onnx_utils.fix_batch(onnx_utils.load(variants_dir / "int8_static_arm64" / "model.onnx"), 1),
                    source)
    last = str(os.cpu_count() - 1)
    _convert(source, tmp_path / "a", "0")
    _convert(source, tmp_path / "b", f"0-{last}")
    config_a, config_b = ((tmp_path / run / "required_operators.config").read_text() for run in ("a", "b"))
    assert config_a == config_b
    x = read_tensor(bundles["arm64_mobile"] / "test_data_set_0" / "input_0.pb")[:1]
    sessions = [onnx_utils.session(tmp_path / run / "model.ort") for run in ("a", "b")]
    outputs = [s.run(None, {s.get_inputs()[0].name: x})[0] for s in sessions]
    np.testing.assert_array_equal(*outputs)
    # The bytes: the same or not, by the heap's luck (no assertion can hold either way).
