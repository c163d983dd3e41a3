"""The bring-your-own-model path (docs/configuration.md), with its commands as written there, in a tree where the
default model was already built: three architectures unlike ours go through train → prune → export --quantize int8 →
validate → package, on a small config. Nothing left from the previous model blocks them, and no advice would
rebuild over their model."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.model import lineage
from tests.conftest import REPO, run_cli
from tests.documented import documented

# The page's commands, for its ResidualGeluNet; each other model swaps in its own two overrides.
TRAIN = documented("pipeline train model._target_=tests.helpers.user_models.ResidualGeluNet model.channels=16")
PRUNE = documented("pipeline prune model._target_=tests.helpers.user_models.ResidualGeluNet model.channels=16 "
                   "prune.round_to=null")
EXPORT = documented("pipeline export --quantize int8 model._target_=tests.helpers.user_models.ResidualGeluNet "
                    "model.channels=16")
VALIDATE = documented("pipeline validate model._target_=tests.helpers.user_models.ResidualGeluNet model.channels=16")

# SiLU goes through `export --quantize int8` in tests/stages/test_quantize.py (a squeeze-and-excitation SiLU CNN),
# and PlainSiluNet stays among the user models there is to try.
USER_MODELS = {
    # residual block of depthwise-separable convolutions, GELU (Erf), global pooling
    "residual-gelu": ["model._target_=tests.helpers.user_models.ResidualGeluNet", "model.channels=16"],
    # MobileNetV2 inverted residuals: BatchNorm, ReLU6, Hardswish, adaptive pooling, dropout
    "inverted-residual": ["model._target_=tests.helpers.user_models.InvertedResidualNet", "model.base=8"],
    # ResNet basic blocks with a 1x1 strided shortcut, adaptive max pooling
    "basic-block-resnet": ["model._target_=tests.helpers.user_models.BasicBlockResNet", "model.channels=8",
                           "train.max_lr=0.05"],
}
CONSOLE_SCRIPT = Path(sys.executable).parent / "pipeline"
# This CPU's fastest training kernels: the pinned ones cost train time, and tests/training/test_kernels.py holds them.
SMALL = ["train.epochs=1", "train.subset=8000", "train.eval_subset=1000", "train.portable_kernels=false",
         "quantize.int8_static.calibration.samples=128", "target.cpu_x86.runtimes=[onnxruntime]",
         "target.cpu_x86.selection.rounds=3", "target.cpu_x86.selection.per_round=10"]


@pytest.fixture()
def built_tree(tmp_path, tiny_model_dir, variants_dir, mnist_dir) -> list[str]:
    """A copy of a built tree: the default (tiny) model, its pruned checkpoint, its variants, and one INT8 variant
    left from it."""
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    shutil.copytree(tiny_model_dir.parent / "pruned", tmp_path / "pruned")
    variants = shutil.copytree(variants_dir, tmp_path / "variants", ignore=shutil.ignore_patterns("int8*"))
    shutil.copytree(variants / "simplified", variants / "int8_dynamic")  # built from the previous model
    return [f"paths.data={mnist_dir}", f"paths.model={tmp_path / 'model'}", f"paths.pruned={tmp_path / 'pruned'}",
            f"paths.variants={variants}",
            f"paths.metrics={tmp_path / 'metrics'}", f"paths.deploy={tmp_path / 'deploy'}"]


@pytest.mark.slow
@pytest.mark.longest(minutes=2)
@pytest.mark.parametrize("model", USER_MODELS.values(), ids=USER_MODELS.keys())
def test_a_user_model_goes_through_the_documented_commands_in_a_built_tree(tmp_path, built_tree, model):
    def pipeline(*command, page_model: bool = True):
        # The console script, as the page runs it (it does not put the working directory on sys.path as
        # `python -m` does); the page's model swapped for this one.
        args = [arg for arg in command[1:] if not arg.startswith("model.")] if page_model else command[1:]
        result = subprocess.run([str(CONSOLE_SCRIPT), *args, *model, *SMALL, *built_tree], cwd=REPO,
                                capture_output=True, text=True, timeout=900)
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        assert "dvc repro" not in result.stdout + result.stderr  # it would retrain params.yaml's model over theirs
        return result

    trained = pipeline(*TRAIN)
    assert trained.returncode == 0, trained.stderr[-2000:]
    spec = json.loads((tmp_path / "model" / "model.json").read_text())["model"]
    argument, value = model[1].removeprefix("model.").split("=")  # the model's own argument
    assert spec == {"_target_": model[0].split("=")[1], argument: int(value)}  # no argument of the default model

    # Pruned in the user's own shape; whichever way its accuracy gate goes, export follows the verdict.
    pruned = pipeline(*PRUNE)
    gate = json.loads((tmp_path / "metrics" / "prune.json").read_text())["accuracy_gate"]
    assert pruned.returncode == (0 if gate["passed"] else 1), pruned.stderr[-2000:]
    assert json.loads((tmp_path / "pruned" / "model.json").read_text())["model"] == spec

    exported = pipeline(*EXPORT)
    quantized = json.loads((tmp_path / "metrics" / "quantize_int8_static.json").read_text())
    assert ("pruned" in json.loads((tmp_path / "metrics" / "export.json").read_text())) == gate["passed"]
    # The INT8 variant asked for, built (its fallback may have kept every op in fp32 and still miss its gates).
    assert (tmp_path / "variants" / "int8_static" / "model.onnx").is_file() and "quantized_nodes" in quantized
    if quantized["within_budget"]:
        assert exported.returncode == 0, exported.stderr[-2000:]
    else:  # the variant asked for misses its gates: exit 1, naming it alone, and what gets past it
        assert exported.returncode == 1, exported.stderr[-2000:]
        (failure,) = [line for line in exported.stderr.splitlines() if line.startswith("parity gate failed: ")]
        assert failure.startswith("parity gate failed: --quantize int8 asked for int8_static, which fails: ")
        assert "quantize_int8_static: out of budget: " in exported.stderr
        # The fallback's measured advice: the budget that passes, or that nothing left helps (and what to widen).
        assert ("quantize.int8_static.fallback.max_excluded=" in exported.stderr
                or "INT8 does not pass this model's gates" in exported.stderr), exported.stderr[-2000:]

    validated = pipeline(*VALIDATE)
    assert validated.returncode == 0, validated.stderr[-2000:]  # int8_static is no required variant
    report = json.loads((tmp_path / "metrics" / "validate.json").read_text())
    # One gate contract: quantize's verdict is validate's, and a failing variant is rejected in the terminal.
    assert report["variants"]["int8_static"]["passed"] == quantized["within_budget"]
    assert ("validate: rejected " in validated.stderr) == (not quantized["within_budget"])
    # What the previous model left is not judged, and the advice rebuilds it with the user's own overrides.
    assert "int8_dynamic" not in report["variants"]
    assert "validate: not judged: int8_dynamic (built from checkpoint " in validated.stderr
    assert "rebuild with `pipeline quantize --variant int8_dynamic " + " ".join(model) in validated.stderr

    packaged = pipeline("pipeline", "package", "--target", "cpu_x86", page_model=False)
    assert packaged.returncode == 0, packaged.stderr[-2000:]
    manifest = json.loads((tmp_path / "deploy" / "cpu_x86" / "manifest.json").read_text())
    assert manifest["model"]["variant"] in (("simplified", "optimized") + ("int8_static",) * quantized["within_budget"]
                                            + ("pruned",) * gate["passed"])
    assert lineage.read(tmp_path / "variants" / "int8_static" / "model.onnx")["checkpoint_sha256"] == \
        lineage.checkpoint_digest(tmp_path / "model")


def test_the_default_models_arguments_do_not_leak_into_a_custom_class(tmp_path):
    """Through DVC (`dvc exp run -S model._target_=...`) the composition keeps `width`: one line says what to do."""
    result = run_cli("train", "model=compact", "model._target_=tests.helpers.user_models.ResidualGeluNet",
                     f"paths.metrics={tmp_path}", f"paths.model={tmp_path / 'm'}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: model.width=16 is not an argument of tests.helpers.user_models.ResidualGeluNet (it takes: channels): "
        "start from an empty spec with `model=custom model._target_=tests.helpers.user_models.ResidualGeluNet`, "
        "or drop the key with `~model.width`")
