"""conf/ is the source of truth; params.yaml (what DVC hashes and the stages read) must equal it."""

from pathlib import Path

import pytest
import yaml

from pipeline.core.config import compose, to_plain, to_yaml, validate

REPO = Path(__file__).resolve().parents[2]
GROUP_OPTIONS = sorted(
    (path.parent.name, path.stem) for path in (REPO / "conf").glob("*/*.yaml") if path.parent.name != "experiment"
)
MULTI_SELECT = {"quantize", "target"}


def test_committed_params_yaml_is_the_composition_of_conf():
    committed = (REPO / "params.yaml").read_text()
    assert committed == to_yaml(compose([])), "params.yaml is stale: run `pipeline params` and commit it"


def test_params_yaml_is_what_dvc_hydra_composition_writes(tmp_path):
    """`dvc exp run` composes conf/ through dvc.utils.hydra; it must produce the same file we commit."""
    from dvc.utils.hydra import compose_and_dump

    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(REPO / "conf"), None, "config", str(REPO), [])
    assert out.read_text() == (REPO / "params.yaml").read_text()


@pytest.mark.parametrize("group, option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_group_option_composes(group, option):
    override = f"{group}=[{option}]" if group in MULTI_SELECT else f"{group}={option}"
    if option == "custom":  # the bring-your-own-model spec: empty until `_target_` is set
        override = f"{override} model._target_=tests.helpers.user_models.UserMLP"
    composed = to_plain(compose(override.split()))
    cfg = validate(composed)  # every option passes its group's schema
    file = yaml.safe_load((REPO / "conf" / group / f"{option}.yaml").read_text())
    if group in MULTI_SELECT:
        assert list(getattr(cfg, group)) == [option] and composed[group][option] == file
    elif option != "custom":
        assert composed[group] == file


@pytest.mark.parametrize("group", sorted(MULTI_SELECT))
def test_multi_select_options_declare_their_own_package(group):
    for path in (REPO / "conf" / group).glob("*.yaml"):
        assert path.read_text().splitlines()[0] == f"# @package {group}.{path.stem}", path


def test_ci_experiment_composes_and_shrinks_the_pipeline():
    cfg = compose(["experiment=ci"])
    assert cfg.model.width == 8 and cfg.train.epochs == 2
    assert yaml.safe_load(to_yaml(cfg))["train"]["subset"] == 20000
