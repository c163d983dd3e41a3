"""The results page is generated, never typed: docs/results.md is what `pipeline results` makes of the committed
metrics/, `--check` names every line a run would change, each section says where and when it was measured, and
the README's way to compare a run with the committed one runs as written."""

import json
import shutil
import subprocess
import sys

import pytest

from pipeline.present import results
from tests.conftest import REPO, run_cli
from tests.documented import documented


@pytest.fixture
def metrics_copy(tmp_path):
    copy = tmp_path / "metrics"
    shutil.copytree(REPO / "metrics", copy)
    return copy


def test_the_committed_page_is_what_the_committed_metrics_give():
    checked = run_cli(*documented("pipeline results --check")[1:])
    assert checked.returncode == 0, checked.stderr
    assert "docs/results.md matches metrics/" in checked.stdout


def test_results_as_documented_rewrites_the_page_from_the_metrics_beside_it(tmp_path):
    """`pipeline results` in a checkout whose metrics/ differ from the committed ones: the page follows them."""
    shutil.copytree(REPO / "metrics", tmp_path / "metrics")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text("stale\n")
    written = run_cli(*documented("pipeline results")[1:], cwd=tmp_path)
    assert written.returncode == 0 and "wrote docs/results.md from metrics/" in written.stdout, written.stderr
    assert (tmp_path / "docs" / "results.md").read_text() == (REPO / "docs" / "results.md").read_text()


def test_check_fails_on_a_changed_figure_and_shows_the_line(metrics_copy):
    report = json.loads((metrics_copy / "validate.json").read_text())
    report["torch_accuracy"] = 0.5
    (metrics_copy / "validate.json").write_text(json.dumps(report))
    checked = run_cli("results", "--check", "--metrics", str(metrics_copy))
    assert checked.returncode == 1
    assert "+PyTorch: 50.00% on" in checked.stderr and "`pipeline results` rewrites it" in checked.stderr


def test_the_page_is_written_with_each_sections_machine_and_date(metrics_copy, tmp_path):
    """A run that recorded its machine (as the stage runner now does for every stage) is named with it: CPU,
    ISA flags, logical CPUs, threads and date; one that did not is said to be unrecorded, not guessed."""
    machine = {"cpu": "Some CPU 9000", "isa": ["avx2", "avx512f", "avx512_vnni"], "logical_cpus": 8,
               "architecture": "x86_64", "measured_at": "2031-02-03T04:05:06+00:00"}
    timings = metrics_copy / "timings"
    (timings / "bench.json").write_text(json.dumps({**json.loads((timings / "bench.json").read_text()),
                                                    "machine": machine}))
    (timings / "validate.json").write_text(json.dumps({"wall_seconds": 1.0}))
    page = tmp_path / "results.md"
    written = run_cli("results", "--metrics", str(metrics_copy), "--output", str(page))
    assert written.returncode == 0 and f"wrote {page}" in written.stdout, written.stderr
    text = page.read_text()
    threads = json.loads((metrics_copy / "bench.json").read_text())["threads"]
    assert (f"Measured on Some CPU 9000 (x86_64, 8 logical CPUs; avx2, avx512f, avx512_vnni) with {threads} "
            "threads, 2031-02-03.") in text
    assert "not recorded by the run that wrote them (metrics/timings/validate.json)" in text
    assert run_cli("results", "--metrics", str(metrics_copy), "--output", str(page)).stdout.startswith("up to date")


def test_the_page_reports_every_peak_and_each_shipped_bundles_share(committed_metrics):
    bench = json.loads((committed_metrics / "bench.json").read_text())
    text = results.markdown(committed_metrics)
    for precision, peak in bench["peaks"].items():
        assert f"{precision} {peak['rate']:,.0f} {peak['unit']}, best round {peak['best']:,.0f} ({peak['backend']}" \
            in text
    for name, row in bench["variants"].items():
        if name.startswith("shipped_"):
            low, high = row["share_of_peak_ci"]
            assert f"| {row['share_of_peak']:.0%} [{low:.0%}, {high:.0%}]" in text, name
            assert row["share_of_peak"] <= 1 and low <= 1, f"{name} shown above its {row['precision']} peak"


def test_dvc_metrics_diff_as_the_readme_shows_it_runs():
    """`dvc metrics diff`: the headline figures of the workspace against HEAD's, the README's way to compare a run
    with the committed one."""
    command = documented("dvc metrics diff")
    done = subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
