import json

import pytest
import torch

from pipeline.core.errors import PipelineError
from pipeline.core.io import sha256_file
from pipeline.model import checkpoint
from tests.conftest import config, run_stage


def test_checkpoint_rebuilds_from_its_spec_alone(tiny_model_dir):
    model, spec = checkpoint.load(tiny_model_dir)
    assert spec == {"_target_": "training.models.CompactCNN", "width": 8}
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert json.loads((tiny_model_dir / checkpoint.SPEC).read_text())["parameters"] < 10000


def test_train_metrics_report_accuracy(tiny_training):
    model_dir, result = tiny_training  # the session's training of the tiny config, two epochs
    assert result.metrics["test_accuracy"] > 0.96
    assert len(result.plots["train"]) == 2 and "training_seconds" in result.observations
    assert (model_dir / "model.pt").is_file()


def test_same_config_gives_byte_identical_weights(tmp_path, mnist_dir):
    cfg = config("train.epochs=1", "train.subset=2000", "train.eval_subset=500")
    for run in ("a", "b"):
        run_stage("train", cfg, data_dir=mnist_dir, out_dir=tmp_path / run, seed=0)
    assert sha256_file(tmp_path / "a" / "model.pt") == sha256_file(tmp_path / "b" / "model.pt")


def test_a_pickled_module_is_not_a_state_dict(tmp_path, tiny_model_dir):
    model, spec = checkpoint.load(tiny_model_dir)
    (tmp_path / "model.json").write_text(json.dumps({"model": spec}))
    torch.save(model, tmp_path / "model.pt")  # a whole pickled module, not weights
    with pytest.raises(PipelineError, match="is not a loadable state_dict checkpoint"):
        checkpoint.load(tmp_path)


def test_a_dict_of_non_tensors_is_not_a_state_dict(tmp_path, tiny_model_dir):
    (tmp_path / "model.json").write_text((tiny_model_dir / "model.json").read_text())
    torch.save({"epoch": 3}, tmp_path / "model.pt")
    with pytest.raises(PipelineError, match="is not a state_dict"):
        checkpoint.load(tmp_path)


def test_unknown_model_target_is_a_clear_error():
    with pytest.raises(PipelineError, match=r"model._target_=training\.models\.NoSuchNet: cannot import it"):
        checkpoint.build({"_target_": "training.models.NoSuchNet"})


def test_an_argument_left_from_another_model_says_what_to_change():
    with pytest.raises(PipelineError, match=r"model.width=16 is not an argument of tests.helpers.user_models.UserMLP "
                                            r"\(it takes: hidden\): start from an empty spec with `model=custom"):
        checkpoint.build({"_target_": "tests.helpers.user_models.UserMLP", "width": 16})
