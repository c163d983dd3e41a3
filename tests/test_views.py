"""What people look at, rendered in a real browser offline: `dvc plots show`, the HTML report, and the narrow
`dvc metrics show` table. Screenshots land in .cache/screenshots/ for a human to look at."""

import json
import subprocess
import sys

import pytest

from pipeline.runtimes import browser
from tests.conftest import REPO

SHOTS = REPO / ".cache" / "screenshots"
# vega-embed wraps each chart in .vega-embed; a rendered chart has its canvas or svg inside.
PLOTS_READY = "document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= 5"


def _dvc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report_page(bundles, mnist_dir, tmp_path_factory):
    """The report from the committed metrics (the full run's bench included) and the tiny bundles."""
    from pipeline.stages import report

    metrics, out = REPO / "metrics", tmp_path_factory.mktemp("report") / "report"
    report.run(metrics / "train.json", metrics / "validate.json", metrics / "bench.json",
               metrics / "plots" / "train.csv", bundles["cpu_x86"].parent, mnist_dir, out)
    return out / "index.html"


@pytest.fixture(scope="module")
def shots():
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def test_dvc_plots_render_offline_with_axes_and_labelled_points(shots):
    result = _dvc("plots", "show")
    assert result.returncode == 0, result.stderr
    page = (REPO / "dvc_plots" / "index.html").read_text()
    assert "cdn.jsdelivr.net" not in page and "../.cache/vega/node_modules/vega/build/vega.min.js" in page
    assert "labelled" not in page and '"field": "variant"' in page  # the scatter's point labels
    facts = browser.render(REPO, "dvc_plots/index.html", shots / "dvc_plots.png", PLOTS_READY)
    assert facts["refused"] == [] and facts["errors"] == [], facts
    assert (shots / "dvc_plots.png").stat().st_size > 20_000


def test_the_report_renders_in_chromium_without_overflow(report_page, shots):
    page = report_page.read_text()
    assert page.count("<svg") == 4 and "Runtime matrix" in page and "img/s vs torch eager" in page
    facts = browser.render(report_page.parent, report_page.name, shots / "report.png",
                           "document.querySelectorAll('svg').length >= 4")
    assert facts["refused"] == [] and facts["errors"] == [], facts
    assert facts["scroll_width"] <= 1200, "the report is wider than a 1200 px window"


def test_dvc_metrics_show_fits_in_200_columns():
    result = _dvc("metrics", "show")
    assert result.returncode == 0, result.stderr
    widths = [len(line) for line in result.stdout.splitlines()]
    assert widths and max(widths) <= 200, f"{max(widths)} columns"
    summaries = list((REPO / "metrics" / "summary").glob("*.json"))
    assert summaries and all(len(json.loads(p.read_text())) <= 3 for p in summaries)
