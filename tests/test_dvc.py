"""End to end under real DVC, in scratch copies of the repository, on the CI-sized config: the whole pipeline
once, then the parity gate (`make gate`) as the second clean run, whose bytes must equal the first's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.core.stage import all_stages
from tests.conftest import CACHE, REPO, REQUIRE_TOOLS, copy_repository, run_cli
from tests.documented import documented

# The gate's composition (experiment=ci), so that the gate is this pipeline's second clean run. Where CI does not
# require every tool, a runtime cell this machine cannot run leaves its provider unverified instead of failing.
GATE_OVERRIDES = [] if os.environ.get(REQUIRE_TOOLS) else ["packaging.require_runtimes=false"]
# The crossover sweep has its own test (tests/stages/test_bench.py); here it would time two more models.
CI_PIPELINE = ["experiment=ci", f"paths.cache={CACHE}", *GATE_OVERRIDES, "bench.crossover.models=[]"]


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=repo, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.longest(minutes=14)  # on one core, as make test runs it
def test_dvc_repro_runs_the_pipeline_and_reruns_only_what_a_param_change_touches(tmp_path):
    repo = copy_repository(tmp_path)
    assert run_cli("params", *CI_PIPELINE, cwd=repo).returncode == 0

    first = _dvc(repo, *documented("dvc repro")[1:])
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    parity = json.loads((repo / "metrics" / "validate.json").read_text())
    assert parity["passed"] and set(parity["variants"]) >= {"exported", "optimized", "int8_static", "pruned"}
    assert (repo / "artifacts" / "model" / "model.pt").is_file()
    assert (repo / "dvc.lock").is_file()

    _the_gate_is_a_second_clean_run_with_identical_dvc_lock_hashes(repo, tmp_path)

    noop = run_cli("timings", "--noop-repro", cwd=repo)  # as `make repro` ends
    assert noop.returncode == 0 and "a no-op dvc repro takes" in noop.stdout, noop.stdout + noop.stderr
    _the_documented_views_of_a_run(repo)
    _every_written_file_is_a_declared_output(repo)
    _editing_a_module_marks_the_stages_that_import_it(repo)

    assert run_cli("params", *CI_PIPELINE, "train.epochs=1", cwd=repo).returncode == 0
    status = json.loads(_dvc(repo, "status", "--json").stdout)
    assert "train" in status and "prepare" not in status
    rerun = _dvc(repo, "repro", "train")  # what follows train reruns as the first run did: not again here
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Running stage 'train'" in rerun.stdout and "Running stage 'prepare'" not in rerun.stdout
    assert json.loads((repo / "metrics" / "train.json").read_text())["epochs"] == 1
    _hand_off_through_a_dvc_remote(repo, tmp_path)


def _the_documented_views_of_a_run(repo: Path) -> None:
    """docs/benchmark.md's commands for looking at a run, as written, in the built copy."""
    shown = _dvc(repo, *documented("dvc metrics show")[1:])
    assert shown.returncode == 0 and "accuracy" in shown.stdout, shown.stderr[-2000:]
    plots = _dvc(repo, *documented("dvc plots show")[1:])
    assert plots.returncode == 0 and (repo / "dvc_plots" / "index.html").is_file(), plots.stderr[-2000:]
    timings = run_cli(*documented("pipeline timings")[1:], cwd=repo)
    assert timings.returncode == 0 and "train" in timings.stdout + timings.stderr, timings.stderr[-2000:]


def _outs(stage_entry: dict) -> set[str]:
    return {o["path"] for o in stage_entry.get("outs", [])}


def _every_written_file_is_a_declared_output(repo: Path) -> None:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    declared = [repo / path for entry in lock.values() for path in _outs(entry)]
    inputs = {repo / dep["path"] for entry in lock.values() for dep in entry.get("deps", [])}  # device_runs.json
    written = [p for root in ("artifacts", "metrics") for p in (repo / root).rglob("*") if p.is_file()]
    undeclared = [p for p in written if p.name != "README.md" and p not in inputs
                  and not any(p == d or d in p.parents for d in declared)]
    assert undeclared == [], f"files no dvc.yaml stage declares: {undeclared}"


def _editing_a_module_marks_the_stages_that_import_it(repo: Path) -> None:
    """pipeline/data/preprocessing.py was in no stage's deps once: appending a line changed nothing. A stage's
    own module reruns that stage alone, and the release version only what stamps it into its bytes."""
    expected = {"pipeline/data/preprocessing.py": {"train", "export", "optimize", "quantize", "validate", "package"},
                "pipeline/stages/bench.py": {"bench"}, "pipeline/packaging/release.py": {"package", "model_package"}}
    for name, stages in expected.items():
        module = repo / name
        original = module.read_text()
        module.write_text(original + "# touched\n")
        status = json.loads(_dvc(repo, "status", "--json").stdout)
        module.write_text(original)
        changed = {entry.split("@")[0] for entry in status}
        assert stages <= changed if name.endswith("preprocessing.py") else changed == stages, (name, changed)


def _not_compared(repo: Path) -> set[str]:
    """The observations (timings, and the stages that render them), and ORT-format bundles and the model
    package that holds their .ort: ORT 1.32 serializes .ort files in heap-address order, so the same model
    converts to different bytes in every process (the .onnx it is converted from is byte-identical)."""
    observational = {s.name for s in all_stages() if not s.deterministic}
    params = yaml.safe_load((repo / "params.yaml").read_text())
    ort_targets = {f"package@{name}" for name, target in params["target"].items() if target["format"] == "ort"}
    return observational | ort_targets | ({"model_package"} if ort_targets else set())


def _artifact_hashes(repo: Path) -> dict[str, str]:
    """Every output's md5 in dvc.lock, except those of `_not_compared`."""
    skipped = _not_compared(repo)
    hashes = {}
    for name, entry in yaml.safe_load((repo / "dvc.lock").read_text())["stages"].items():
        if name.split("@")[0] in skipped or name in skipped:
            continue
        for out in entry.get("outs", []):
            if "/timings/" not in out["path"]:
                hashes[f"{name}:{out['path']}"] = out["md5"]
    return hashes


def _the_gate_is_a_second_clean_run_with_identical_dvc_lock_hashes(repo: Path, tmp_path: Path) -> None:
    """`make gate` as CI ran it (.ci/gate: the parity gates and every target's runtime matrix, up to the bundles),
    in its own scratch copy: it passes, and the same commit gives the same bytes: model, every variant, every
    bundle and tarball, every metric."""
    scratch = tmp_path / "gate"
    gate = subprocess.run([str(REPO / ".ci" / "gate"), *GATE_OVERRIDES], cwd=REPO, capture_output=True, text=True,
                          timeout=1800, env={**os.environ, "GATE_SCRATCH": str(scratch),
                                             "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-3000:]
    first, again = _artifact_hashes(repo), _artifact_hashes(scratch)
    assert len(first) > 15 and any("deploy/cpu_x86.tar.gz" in key for key in first)
    differing = sorted(k for k in first if first[k] != again.get(k))
    assert differing == [], f"outputs that differ between two clean runs: {differing}"


def _hand_off_through_a_dvc_remote(repo: Path, tmp_path: Path) -> None:
    """`dvc push` to a directory remote; the deployment side clones, pulls only the bundle, verifies it."""
    remote = tmp_path / "dvc-store"
    assert _dvc(repo, "remote", "add", "-d", "handoff", str(remote)).returncode == 0
    pushed = _dvc(repo, "push")
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "pipeline run"], cwd=repo, check=True, capture_output=True)
    receiver = tmp_path / "receiver"
    subprocess.run(["git", "clone", "-q", str(repo), str(receiver)], check=True)
    pulled = _dvc(receiver, "pull", "artifacts/deploy/cpu_x86.tar.gz")
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    assert not (receiver / "artifacts" / "model").exists()  # only what was asked for
    verified = run_cli("verify", str(receiver / "artifacts" / "deploy" / "cpu_x86.tar.gz"), cwd=receiver)
    assert verified.returncode == 0 and "verified cpu_x86" in verified.stdout
