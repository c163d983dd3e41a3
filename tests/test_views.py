"""What people look at, rendered in a real browser offline: `dvc plots show`, the HTML report, and the narrow
`dvc metrics show` table. Screenshots land in .cache/screenshots/ for a human to look at."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.runtimes import browser
from tests.conftest import REPO, config, copy_repository, run_stage

SHOTS = REPO / ".cache" / "screenshots"
# vega-embed wraps each chart in .vega-embed; a rendered chart has its canvas or svg inside.
PLOTS_READY = "document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= 5"


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the repository (its committed metrics/ included) to run DVC's views in: they write dvc_plots/
    and must not read a metrics/ that a `dvc repro` beside the tests is rewriting. Its .cache/ is the
    checkout's, where `make` installed vega."""
    copy = copy_repository(tmp_path_factory.mktemp("views"))
    (copy / ".cache").symlink_to(REPO / ".cache")
    return copy


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, timeout=120)


# What a reader of the report would notice, measured in the page: every word of every table cell on one line
# (a word split over two lines has two client rects), cells whose text overflows them, tables not in a
# horizontally scrolling box, and the figures the sections must name.
REPORT_FACTS = """(() => {
  const cells = [...document.querySelectorAll('td, th')];
  const broken = [], overflowing = [];
  for (const cell of cells) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(match[0]);
      }
    }
    if (cell.scrollWidth > cell.clientWidth + 1) overflowing.push(cell.textContent);
  }
  const style = el => getComputedStyle(el);
  const breaking = cells.filter(c => style(c).overflowWrap !== 'normal' || style(c).wordBreak === 'break-all')
                        .map(c => c.textContent);
  const unboxed = [...document.querySelectorAll('table')].filter(t => style(t.parentElement).overflowX !== 'auto')
                                                          .map(t => t.rows[0].textContent);
  const scrolling = [...document.querySelectorAll('.wide')].filter(b => b.scrollWidth > b.clientWidth + 1)
                                                           .map(b => b.querySelector('tr').textContent);
  const section = title => [...document.querySelectorAll('h3, h2')].find(h => h.textContent.startsWith(title));
  const table = h => { let e = h.nextElementSibling; while (e && !e.querySelector('table')) e = e.nextElementSibling;
                       return e.querySelector('table'); };
  const shipped = table(section('What each target ships'));
  const column = [...shipped.rows[0].cells].findIndex(c => c.textContent === 'batch-1 latency');
  const targets = [...shipped.rows].slice(1).map(r => [r.cells[0].textContent, r.cells[column].textContent]);
  const training = section('Training');
  const ticks = [];
  for (let e = training.nextElementSibling; e; e = e.nextElementSibling)
    if (e.tagName.toLowerCase() === 'svg')
      ticks.push([...e.querySelectorAll('g[id^="xtick"] text')].map(t => t.textContent));
  return {broken, overflowing, breaking, unboxed, scrolling, targets, ticks,
          summary: document.querySelector('p').textContent,
          machine: document.querySelector('p.machine').textContent,
          legends: [...training.parentElement.querySelectorAll('svg g[id^="legend"] text')].map(t => t.textContent),
          viewport: window.innerWidth};
})()"""


@pytest.fixture(scope="module")
def report_page(bundles, mnist_dir, committed_metrics, tmp_path_factory):
    """The report from the committed metrics (the full run's bench included) and the tiny bundles; the bench
    observations add the machine as bench now records it (the committed run predates that)."""
    from pipeline.core.machine import machine

    metrics, out = committed_metrics, tmp_path_factory.mktemp("report") / "report"
    bench_timings = out.parent / "bench_timings.json"
    bench_timings.write_text(json.dumps({**json.loads((metrics / "timings" / "bench.json").read_text()),
                                         "machine": machine()}))
    run_stage("report", config(), train_file=metrics / "train.json", parity_file=metrics / "validate.json",
              bench_file=metrics / "bench.json", train_plot=metrics / "plots" / "train.csv",
              deploy_dir=bundles["cpu_x86"].parent, data_dir=mnist_dir, out_dir=out,
              train_timings=metrics / "timings" / "train.json", bench_timings=bench_timings,
              web_timings=metrics / "timings" / "package_web.json", sweep_file=metrics / "prune_sweep.json")
    return out / "index.html"


@pytest.fixture(scope="module")
def shots():
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


# The plots' axes as vega drew them: each runner named on the latency axis, and the epoch ticks.
# (.dvc/plots/offline.html has vega draw SVG, so the text is in the page.)
PLOT_FACTS = """(async () => {
  while (document.querySelectorAll('.vega-embed svg.marks').length < 5) await new Promise(r => setTimeout(r, 100));
  const texts = (root, selector) => [...root.querySelectorAll(selector)].map(t => t.textContent);
  return Object.fromEntries([...document.querySelectorAll('.vega-embed')].map(embed => [embed.id, {
    axes: [...embed.querySelectorAll('g.role-axis')].map(axis => texts(axis, 'g.role-axis-label text')),
    legend: texts(embed, 'g.role-legend-label text')}]));
})()"""


def test_dvc_plots_render_offline_with_axes_legible_labels_and_whole_epochs(repo, shots):
    result = _dvc(repo, "plots", "show")
    assert result.returncode == 0, result.stderr
    page = (repo / "dvc_plots" / "index.html").read_text()
    assert "cdn.jsdelivr.net" not in page and "../.cache/vega/node_modules/vega/build/vega.min.js" in page
    assert "<DVC_METRIC" not in page and "label-smoothed" in page
    facts = browser.render(repo, "dvc_plots/index.html", shots / "dvc_plots.png", PLOTS_READY, probe=PLOT_FACTS)
    assert facts["refused"] == [] and facts["errors"] == [], facts
    assert (shots / "dvc_plots.png").stat().st_size > 20_000
    plots = facts["probe"]
    # What DVC plotted: the copy's metrics/ (dvc plots show reads it).
    runners = {line.split(",")[0] for line in (repo / "metrics" / "plots" / "bench.csv").read_text().split()[1:]}
    # Every runner is named on the latency axis, one row each (no overprinted point labels).
    names = [t for axis in plots["accuracy_vs_latency"]["axes"] for t in axis if t in runners]
    assert sorted(names) == sorted(runners), plots["accuracy_vs_latency"]
    for plot in ("training_loss", "training_accuracy"):
        # The epoch axis ticks whole epochs only: 1, 2, 3, 4 (no 1.5).
        epochs = next(axis for axis in plots[plot]["axes"] if axis and all(t.isdigit() for t in axis))
        assert epochs == [str(e) for e in range(int(epochs[0]), int(epochs[-1]) + 1)], plots[plot]
    legend = " ".join(plots["training_loss"]["legend"])
    assert "train loss: label-smoothed" in legend and "test loss: plain" in legend, legend


@pytest.mark.parametrize("width", [1280, 375])
def test_the_report_reads_right_in_chromium(report_page, shots, width):
    page = report_page.read_text()
    # speed, the pruning front, two training curves
    assert page.count("<svg") == 4 and "Runtime matrix" in page and "vs torch eager</th>" in page
    facts = browser.render(report_page.parent, report_page.name, shots / f"report_{width}.png",
                           "document.querySelectorAll('svg').length >= 4", width=width, probe=REPORT_FACTS)
    assert facts["refused"] == [] and facts["errors"] == [], facts
    assert facts["scroll_width"] <= width, f"the report is wider than a {width} px window"
    seen = facts["probe"]
    # No word or number breaks inside a cell; wide tables scroll in their own box instead.
    assert seen["broken"] == [] and seen["breaking"] == [], seen
    assert seen["overflowing"] == [] and seen["unboxed"] == [], seen
    # At 1280 px every table fits: none scrolls in its box (a phone scrolls the wide ones).
    assert width < 1280 or seen["scrolling"] == [], seen["scrolling"]
    # The training time is a number of seconds.
    assert re.search(r"after \d+ epochs \(\d+ s of training", seen["summary"]), seen["summary"]
    # Every target row has its batch-1 latency, or says why there is none (not a file path).
    assert seen["targets"] and all(re.fullmatch(r"[\d,]+ µs", latency) or latency.startswith("not timed")
                                   for _, latency in seen["targets"]), seen["targets"]
    assert "/" not in "".join(latency for _, latency in seen["targets"])
    assert re.fullmatch(r"[\d,]+ µs", dict(seen["targets"])["web"]), seen["targets"]
    # The speed section names the machine: CPU model, threads, date.
    machine = browser_machine()
    assert machine["cpu"] in seen["machine"] and re.search(r"\d+ threads", seen["machine"]), seen["machine"]
    assert re.search(r"\d{4}-\d{2}-\d{2}", seen["machine"]), seen["machine"]
    # Epoch ticks are whole numbers; the losses say what they are.
    assert len(seen["ticks"]) == 2 and all(t and all(x.isdigit() for x in t) for t in seen["ticks"]), seen["ticks"]
    assert any("label-smoothed" in t for t in seen["legends"]) and any("plain" in t for t in seen["legends"])


def browser_machine() -> dict:
    from pipeline.core.machine import machine

    return machine()


def test_dvc_metrics_show_fits_in_200_columns(repo):
    result = _dvc(repo, "metrics", "show")
    assert result.returncode == 0, result.stderr
    widths = [len(line) for line in result.stdout.splitlines()]
    assert widths and max(widths) <= 200, f"{max(widths)} columns"
    summaries = list((repo / "metrics" / "summary").glob("*.json"))
    assert summaries and all(len(json.loads(p.read_text())) <= 3 for p in summaries)
