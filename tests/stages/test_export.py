import numpy as np
import onnx
import pytest
import torch

from pipeline.core.errors import PipelineError
from pipeline.model import checkpoint, lineage, onnx_utils, torch_export
from tests.conftest import config, run_stage, with_groups

CFG = config("export.parity_samples=64")
GATES = CFG.validate.gates["fp32"]


def _run(export_cfg, model_dir, mnist_dir, out_dir):
    """export as the runner calls it, with `export_cfg` as its group."""
    return run_stage("export", with_groups(CFG, export=export_cfg), model_dir=model_dir, data_dir=mnist_dir,
                     out_dir=out_dir)


def _checkpoint(tmp_path, spec: dict):
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    checkpoint.save(checkpoint.build(spec), spec, model_dir)
    return model_dir


@pytest.mark.parametrize("spec", [
    {"_target_": "training.models.CompactCNN", "width": 16},
    {"_target_": "training.models.LargeCNN"},
    {"_target_": "tests.helpers.user_models.UserMLP", "hidden": 32},
], ids=["compact", "large", "user-module"])
def test_export_matches_pytorch_with_a_dynamic_batch(tmp_path, mnist_dir, spec):
    model_dir = _checkpoint(tmp_path, spec)
    result = _run(CFG.export, model_dir, mnist_dir, tmp_path / "exported")
    path = result.outputs["exported"]
    assert result.metrics["parity"]["agreement"] == 1.0
    assert result.metrics["parity"]["max_abs_logit"] <= GATES["max_abs_logit"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # self-contained, no .data
    model, _ = checkpoint.load(model_dir)
    sess = onnx_utils.session(path)
    assert [i.name for i in sess.get_inputs()] == ["input"] and [o.name for o in sess.get_outputs()] == ["logits"]
    for batch in (1, 257):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 28, 28)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(sess.run(None, {"input": x})[0], expected, atol=1e-4)


def test_metadata_records_lineage_and_preprocessing(variants_dir, tiny_model_dir):
    meta = onnx_utils.metadata(onnx.load(variants_dir / "exported" / "model.onnx"))
    assert "source_commit" not in meta  # a commit would make the same inputs give different bytes
    assert lineage.read(variants_dir / "exported" / "model.onnx") == {
        "checkpoint_sha256": lineage.checkpoint_digest(tiny_model_dir)}
    assert '"mean": [0.1307]' in meta["preprocessing"] and '"std": [0.3081]' in meta["preprocessing"]
    assert meta["class_labels"] == '["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]'


def test_large_weights_go_to_external_data(tmp_path, mnist_dir):
    model_dir = _checkpoint(tmp_path, {"_target_": "training.models.LargeCNN"})
    cfg = config("export.external_data_threshold_mb=1", "export.parity_samples=32").export
    path = _run(cfg, model_dir, mnist_dir, tmp_path / "exported").outputs["exported"]
    assert (path.parent / "model.onnx.data").stat().st_size > 4_000_000
    assert path.stat().st_size < 100_000
    assert onnx_utils.session(path).run(None, {"input": np.zeros((2, 1, 28, 28), np.float32)})[0].shape == (2, 10)


@pytest.mark.parametrize("module, cause", [
    ("DataDependentBranch", "Could not guard on data-dependent expression"),
    ("UnsupportedOp", "No ONNX function found for <OpOverload(op='aten.linalg_eig'"),
])
def test_a_module_that_cannot_be_exported_is_one_clear_error(tmp_path, mnist_dir, module, cause):
    model_dir = _checkpoint(tmp_path, {"_target_": f"tests.helpers.user_models.{module}"})
    with pytest.raises(PipelineError, match=f"torch.onnx.export failed for {module}: ") as raised:
        _run(CFG.export, model_dir, mnist_dir, tmp_path / "exported")
    assert cause in str(raised.value) and "\x1b" not in str(raised.value)
    assert not (tmp_path / "exported").exists()


def test_a_corrupt_checkpoint_is_one_clear_error(tmp_path, mnist_dir, tiny_model_dir):
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "model.json").write_text((tiny_model_dir / "model.json").read_text())
    (broken / "model.pt").write_bytes((tiny_model_dir / "model.pt").read_bytes()[:500])
    with pytest.raises(PipelineError, match="is not a loadable state_dict checkpoint"):
        _run(CFG.export, broken, mnist_dir, tmp_path / "exported")
    assert not (tmp_path / "exported").exists()


@pytest.mark.parametrize("opset", [18, 21])
def test_the_requested_opset_is_the_one_built(tmp_path, mnist_dir, tiny_model_dir, opset):
    cfg = config(f"export.opset={opset}", "export.parity_samples=32").export
    path = _run(cfg, tiny_model_dir, mnist_dir, tmp_path / "exported").outputs["exported"]
    assert max(o.version for o in onnx.load(path).opset_import if o.domain in ("", "ai.onnx")) == opset


def test_library_chatter_goes_to_a_log_not_the_terminal(tmp_path, tiny_model_dir, mnist_dir):
    from tests.conftest import TINY, run_cli

    args = ["export", "--stage-only", *TINY, f"paths.model={tiny_model_dir}", f"paths.data={mnist_dir}",
            f"paths.variants={tmp_path / 'v'}", f"paths.metrics={tmp_path / 'm'}"]
    quiet = run_cli(*args, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "torchvision" not in quiet.stdout + quiet.stderr and "[torch.onnx]" not in quiet.stdout
    assert "[torch.onnx]" in (tmp_path / ".cache" / "logs" / "export.log").read_text()
    verbose = run_cli("--verbose", *args, cwd=tmp_path)
    assert verbose.returncode == 0 and "[torch.onnx]" in verbose.stdout


def test_the_exported_bytes_do_not_depend_on_where_the_checkout_lives(variants_dir):
    """The exporter records Python stack traces with absolute paths; a fresh clone elsewhere must still
    reproduce the committed dvc.lock, so none may remain."""
    model = onnx.load(variants_dir / "exported" / "model.onnx")
    keys = {p.key for node in model.graph.node for p in node.metadata_props}
    assert torch_export.STACK_TRACE not in keys and "pkg.torch.onnx.name_scopes" in keys
    assert b"site-packages" not in (variants_dir / "exported" / "model.onnx").read_bytes()
