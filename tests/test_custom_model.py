"""The README's bring-your-own-model path, as written there: a residual / depthwise / GELU net named by
`model._target_` alone goes through train → export → optimize → INT8 → validate, and INT8 either passes
validate's gates or is marked out of budget by quantize."""

import json

import pytest

from tests.conftest import run_cli

MODEL = ["model._target_=tests.helpers.user_models.ResidualGeluNet", "model.channels=16"]
SMALL = ["train.epochs=1", "train.subset=10000", "train.eval_subset=1000", "quantize=[int8_static]",
         "quantize.int8_static.eval_samples=1000", "quantize.int8_static.calibration.samples=128",
         "validate.samples=1000"]


@pytest.mark.slow
def test_a_residual_depthwise_gelu_model_goes_through_the_pipeline(tmp_path, mnist_dir):
    paths = [f"paths.data={mnist_dir}", f"paths.model={tmp_path / 'model'}", f"paths.variants={tmp_path / 'v'}",
             f"paths.metrics={tmp_path / 'metrics'}"]
    trained = run_cli("train", *MODEL, *SMALL, *paths)
    assert trained.returncode == 0, trained.stderr[-2000:]
    spec = json.loads((tmp_path / "model" / "model.json").read_text())["model"]
    assert spec == {"_target_": "tests.helpers.user_models.ResidualGeluNet", "channels": 16}  # no leaked width

    exported = run_cli("export", "--quantize", "int8", *MODEL, *SMALL, *paths)
    assert exported.returncode == 0, exported.stderr[-2000:]
    ops = json.loads((tmp_path / "metrics" / "export.json").read_text())["ops"]
    assert "Erf" in ops and ops["Conv"] == 3  # GELU and the depthwise/pointwise pair survived export

    quantized = json.loads((tmp_path / "metrics" / "quantize_int8_static.json").read_text())
    validated = run_cli("validate", *MODEL, *SMALL, *paths)
    report = json.loads((tmp_path / "metrics" / "validate.json").read_text())["variants"]
    assert report["optimized"]["passed"]
    # One gate contract: quantize's verdict is validate's verdict.
    assert quantized["within_budget"] == report["int8_static"]["passed"]
    if quantized["within_budget"]:
        assert validated.returncode == 0, validated.stderr
    else:
        assert validated.returncode == 1 and "int8_static (int8)" in validated.stderr
        assert quantized["failed_gates"]


def test_the_default_models_arguments_do_not_leak_into_a_custom_class(tmp_path):
    """Through DVC (`dvc exp run -S model._target_=...`) the composition keeps `width`: one line says what to do."""
    result = run_cli("train", "model=compact", "model._target_=tests.helpers.user_models.ResidualGeluNet",
                     f"paths.metrics={tmp_path}", f"paths.model={tmp_path / 'm'}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: model.width=16 is not an argument of tests.helpers.user_models.ResidualGeluNet (it takes: channels): "
        "start from an empty spec with `model=custom model._target_=tests.helpers.user_models.ResidualGeluNet`, "
        "or drop the key with `~model.width`")
