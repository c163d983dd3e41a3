"""Structured pruning on our CNN and on the test suite's user models: channels removed physically (the ONNX
export is smaller), the budget met, the checkpoint rebuilt from data alone, the layers left whole named."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from pipeline.model import checkpoint, structure
from pipeline.model.torch_export import export_module
from tests.conftest import config
from training import pruning

USER_MODELS = ["ResidualGeluNet", "InvertedResidualNet", "SqueezeExciteSiluNet", "BasicBlockResNet", "TinyViT"]
EXAMPLE = torch.zeros(1, 1, 28, 28)


def _prune_cfg(*overrides: str):
    return config("prune.flops_budget=0.7", "prune.round_to=null", *overrides).prune


def _built(target: str, **args):
    torch.manual_seed(0)
    spec = {"_target_": target, **args}
    return checkpoint.build(spec).eval(), spec


@pytest.mark.parametrize("name", USER_MODELS)
def test_user_models_prune_to_the_budget_and_rebuild_from_the_checkpoint(name, tmp_path):
    model, spec = _built(f"tests.helpers.user_models.{name}")
    result = pruning.prune(model, _prune_cfg(), EXAMPLE)
    assert result.macs[1] <= 0.7 * result.macs[0] and result.params[1] < result.params[0]
    assert result.channels and all(after < before for before, after in result.channels.values())
    assert "the output layer" in result.left_whole.values()
    checkpoint.save(model, spec, tmp_path)
    rebuilt, _ = checkpoint.load(tmp_path)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = model.eval()(x)
        assert torch.equal(rebuilt(x), expected)
    # and it exports: ONNX Runtime runs the smaller graph and agrees with PyTorch
    session = ort.InferenceSession(export_module(rebuilt, opset=18, dynamic_batch=True).SerializeToString())
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert np.allclose(logits, expected.numpy(), atol=1e-4)


def test_a_layer_the_dependency_graph_cannot_prune_is_left_whole_and_named():
    model, _ = _built("tests.helpers.user_models.TinyViT")
    result = pruning.prune(model, _prune_cfg(), EXAMPLE)
    assert result.left_whole["blocks.layers.0.self_attn.out_proj"] == "the dependency graph cannot prune it"


def test_the_pruned_onnx_graph_is_smaller_not_a_dense_graph_with_zeros():
    model, _ = _built("training.models.CompactCNN", width=16)
    dense = export_module(model, opset=18, dynamic_batch=True)
    result = pruning.prune(model, _prune_cfg("prune.flops_budget=0.6", "prune.round_to=16"), EXAMPLE)
    pruned = export_module(model, opset=18, dynamic_batch=True)
    assert result.channels and all(after % 16 == 0 for _, after in result.channels.values())
    convolutions = [c for name, c in structure.channels(model).items() if name.startswith("features")]
    assert sorted(init.dims[0] for init in pruned.graph.initializer if len(init.dims) == 4) == sorted(convolutions)

    def elements(proto):
        return sum(int(np.prod(init.dims)) for init in proto.graph.initializer)

    assert elements(pruned) < 0.7 * elements(dense)


def test_ignored_layers_keep_their_channels_and_unknown_names_are_refused():
    model, _ = _built("training.models.CompactCNN", width=16)
    result = pruning.prune(model, _prune_cfg("prune.ignore=[features.8]", "prune.flops_budget=0.8"), EXAMPLE)
    assert result.left_whole["features.8"] == "prune.ignore" and "features.8" not in result.channels
    with pytest.raises(pruning.PruningError, match=r"prune.ignore names features.99, not a module of CompactCNN "
                                                   r"\(its layers: features.0, features.4, features.8, classifier\)"):
        pruning.prune(_built("training.models.CompactCNN", width=16)[0], _prune_cfg("prune.ignore=[features.99]"),
                      EXAMPLE)


def test_a_budget_out_of_reach_says_how_much_remains_and_what_to_raise():
    model, _ = _built("training.models.CompactCNN", width=16)
    with pytest.raises(pruning.PruningError, match=r"prune.flops_budget=0.1 is out of reach: 0\.\d\d of the "
                                                   r"multiply-accumulates remain .* raise prune.flops_budget or "
                                                   r"prune.max_layer_ratio, or lower prune.round_to \(a layer "
                                                   r"cannot lose a whole block of its channels\)$"):
        pruning.prune(model, _prune_cfg("prune.flops_budget=0.1", "prune.round_to=16"), EXAMPLE)


def test_an_unpruned_model_records_no_structure_and_a_foreign_one_is_refused(tmp_path):
    model, spec = _built("training.models.CompactCNN", width=16)
    assert structure.record(model, checkpoint.build(spec)) == {}
    with pytest.raises(Exception, match="no longer has"):
        structure.apply(model, {"features.99": {"attrs": {}, "shapes": {}}})
    assert np.isfinite(model(EXAMPLE).detach().numpy()).all()
