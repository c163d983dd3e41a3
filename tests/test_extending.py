"""docs/architecture.md's two recipes, followed in a scratch copy of the repository: a new target is its conf file
(and its name in conf/config.yaml's target list: Hydra's defaults, which `dvc exp run` composes too), a new runtime
cell is one `Runtime(...)` declaration plus its name under the target's `runtimes:`. Nothing else is edited;
the new target builds its bundle, proven on the new cell, under CI's runtime switch."""

import json
import re
import shutil

import yaml

from tests.conftest import DEVICE_RUNS, TINY, copy_repository, run_cli

NEW_CELL = """    Runtime(name="onnxruntime-here", package=f"{ORT} in the pipeline's own environment",
            provider="CPUExecutionProvider", architecture="x86_64"),
"""
DECLARATIONS = "RUNTIMES = {r.name: r for r in (\n"


def _add_target_and_cell(repo) -> None:
    targets = repo / "conf" / "target"
    conf = (targets / "cpu_x86.yaml").read_text().replace("# @package target.cpu_x86", "# @package target.edge_x86")
    (targets / "edge_x86.yaml").write_text(re.sub(r"^runtimes: .*$", "runtimes: [onnxruntime-here]", conf,
                                                  flags=re.M))
    config = repo / "conf" / "config.yaml"
    assert "  - target: [cpu_x86," in config.read_text()
    config.write_text(config.read_text().replace("  - target: [cpu_x86,", "  - target: [cpu_x86, edge_x86,"))
    cells = repo / "pipeline" / "runtimes" / "cells.py"
    assert DECLARATIONS in cells.read_text()
    cells.write_text(cells.read_text().replace(DECLARATIONS, DECLARATIONS + NEW_CELL))


def test_a_target_and_a_runtime_cell_added_as_the_architecture_page_says(tmp_path, bundles, tiny_model_dir,
                                                                          variants_dir, mnist_dir):
    repo = copy_repository(tmp_path)
    stages_before = list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    _add_target_and_cell(repo)

    metrics = tmp_path / "metrics"
    shutil.copytree(DEVICE_RUNS, metrics / "device_runs")
    shutil.copy(bundles["parity_file"], metrics / "validate.json")
    tree = [f"paths.data={mnist_dir}", f"paths.model={tiny_model_dir}", f"paths.variants={variants_dir}",
            f"paths.pruned={tiny_model_dir.parent / 'pruned'}", f"paths.metrics={metrics}",
            f"paths.deploy={tmp_path / 'deploy'}"]
    quick = ["target.edge_x86.selection.rounds=3", "target.edge_x86.selection.per_round=5",
             "packaging.require_runtimes=true"]  # CI's switch: every listed cell must run
    built = run_cli("package", "--target", "edge_x86", *TINY, *tree, *quick, cwd=repo)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    manifest = json.loads((tmp_path / "deploy" / "edge_x86" / "manifest.json").read_text())
    (record,) = [r for r in manifest["verified_on"] if r.get("runtime") == "onnxruntime-here"]
    assert record["verified"] and record["provider"] == "CPUExecutionProvider", record

    # The stages and their foreach are what they were: package@edge_x86 comes from the target list.
    assert run_cli("params", *TINY, cwd=repo).returncode == 0
    assert run_cli("dvc", "--write", cwd=repo).returncode == 0
    declared = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert list(declared) == stages_before and declared["package"]["foreach"] == "${target}"
    assert "edge_x86" in yaml.safe_load((repo / "params.yaml").read_text())["target"]
