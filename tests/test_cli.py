import subprocess
import sys

import pytest

from tests.conftest import REPO, run_cli


def test_help_imports_no_heavy_library_not_even_numpy_or_pydantic():
    probe = (
        "import sys\n"
        "from pipeline.cli import app\n"
        "try:\n    app(['--help'], prog_name='pipeline')\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'onnxruntime', 'onnx', 'hydra', 'numpy', 'pydantic', 'scipy', "
        "'matplotlib', 'playwright', 'openvino') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO).stdout
    assert "HEAVY=\n" in out or out.rstrip().endswith("HEAVY=")
    assert "validate" in out and "export" in out


@pytest.mark.parametrize("override, message", [
    ("train.no_such_key=1", "bad config override: Could not override 'train.no_such_key'."),
    ("model=no_such_model", "bad config override: In 'config': Could not find 'model/no_such_model'"),
    ("train.epochs=[", "bad config override:"),
])
def test_bad_overrides_are_one_line_exit_2(override, message):
    result = run_cli("train", override)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {message}")
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


def test_overrides_cannot_be_combined_with_params():
    result = run_cli("train", "--params", "params.yaml", "train.epochs=1")
    assert result.returncode == 2 and "cannot be combined with --params" in result.stderr


def test_missing_params_file_is_exit_2(tmp_path):
    result = run_cli("train", "--params", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "params file not found" in result.stderr


def test_params_check_detects_drift(tmp_path):
    target = tmp_path / "params.yaml"
    assert run_cli("params", "--output", str(target)).returncode == 0
    assert run_cli("params", "--check", "--output", str(target)).returncode == 0
    drifted = run_cli("params", "--check", "--output", str(target), "train.epochs=99")
    assert drifted.returncode == 1 and "differs from conf/" in drifted.stderr


@pytest.mark.parametrize("args, message", [
    (["train", "train.epochs=abc"], "bad config: train.epochs='abc': Input should be a valid integer"),
    (["train", "train.epochs=0"], "bad config: train.epochs=0: Input should be greater than 0"),
    (["train", "train.batch_size=0"], "bad config: train.batch_size=0: Input should be greater than 0"),
    (["train", "train.distributed.nproc_per_node=0"], "train.distributed.nproc_per_node=0: Input should be greater"),
    (["train", "~model"], "bad config: model is missing"),
    (["train", "--params", "README.md"], "cannot read README.md as YAML"),
    (["export", "--opset", "99"], "bad config: export.opset=99: Input should be less than or equal to 23"),
    (["train", "model=tiyn"], "Available options in 'model': compact custom large tiny"),
    (["quantize", "quantize.int8_static.calibration.method=Foo"],
     "calibration.method='Foo': Input should be 'MinMax', 'Entropy' or 'Percentile'"),
    (["package", "--target", "nope"], "unknown target entry 'nope' (configured: cpu_x86, arm64_mobile"),
    (["train", "model.width=0", "paths.data=/nonexistent"], "cannot build model training.models.CompactCNN(width=0)"),
    (["train", "model._target_=torch.nn.Linear"], "cannot build model torch.nn.Linear(): "),
])
def test_every_bad_config_value_is_one_line_exit_2_before_any_work(args, message):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


def test_version_and_short_help():
    assert run_cli("--version").stdout.startswith("pipeline ")
    assert "Usage: pipeline" in run_cli("-h").stdout


def test_dvc_yaml_matches_the_stage_declarations():
    result = run_cli("dvc", "--check")
    assert result.returncode == 0, result.stderr


def test_a_params_override_is_recorded_kept_and_explained(tmp_path):
    target = tmp_path / "params.yaml"
    assert run_cli("params", "--output", str(target), "train.epochs=1").returncode == 0
    assert target.read_text().startswith("# pipeline params overrides: train.epochs=1\n")
    again = run_cli("params", "--output", str(target))  # what `make repro` runs after a conf/ edit
    assert again.returncode == 0 and "with the overrides train.epochs=1" in again.stdout
    check = run_cli("params", "--check", "--output", str(target))
    assert check.returncode == 0 and "train.epochs = 1 (conf/ has 4): an override `pipeline params` keeps" in (
        check.stdout)
    assert run_cli("params", "--output", str(target), "--reset").returncode == 0
    assert run_cli("params", "--check", "--output", str(target)).returncode == 0
    assert not target.read_text().startswith("#")


def test_params_check_outside_the_repo_is_one_line(tmp_path):
    result = run_cli("params", "--check", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "params.yaml not found" in result.stderr


def test_params_check_explains_an_override_dvc_exp_run_wrote(tmp_path):
    from pipeline.core.config import compose, to_yaml

    target = tmp_path / "params.yaml"
    target.write_text(to_yaml(compose(["train.epochs=2"])))  # what `dvc exp run -S train.epochs=2` writes
    check = run_cli("params", "--check", "--output", str(target))
    assert check.returncode == 1
    assert "train.epochs = 2 (conf/ has 4): not from conf/: `dvc exp run -S`" in check.stderr
    assert "keep it with `pipeline params train.epochs=2`" in check.stderr


def test_make_recomposes_params_only_when_conf_changed(tmp_path):
    import os
    import shutil
    import subprocess

    for name in ("Makefile", "pyproject.toml", "constraints.txt", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".installed").touch()
    dry_run = ["make", "-n", "params.yaml"]
    os.utime(tmp_path / "params.yaml")  # newer than conf/: as after `dvc exp run -S` or `pipeline params k=v`
    assert "pipeline params" not in subprocess.run(dry_run, cwd=tmp_path, capture_output=True, text=True).stdout
    later = (tmp_path / "params.yaml").stat().st_mtime + 10
    os.utime(tmp_path / "conf" / "train" / "default.yaml", (later, later))  # a conf/ edit
    assert "pipeline params" in subprocess.run(dry_run, cwd=tmp_path, capture_output=True, text=True).stdout
