"""The report's HTML from the committed metrics (present/report_page.py); the stage that gathers them:
tests/stages/test_report.py."""

import json
import re

import pytest

from pipeline.present import report_page


@pytest.fixture
def committed(committed_metrics):
    """A reader of the session's copy of metrics/ (conftest.committed_metrics)."""
    return lambda *parts: json.loads(committed_metrics.joinpath(*parts).read_text())


def _page(_committed, timings: dict) -> str:
    """The report's page from the committed metrics (no bundles, no confusion matrix)."""
    m = {"train": _committed("train.json"), "parity": _committed("validate.json"), "bench": _committed("bench.json"),
         "history": [], "targets": {}, "timings": timings}
    return report_page.render(m, None, "cpu_x86")


def test_the_pruning_front_is_a_chart_and_a_row_per_budget_saying_which_won(committed):
    sweep = committed("prune_sweep.json")
    section = report_page._pruning(sweep)
    assert section.count("<svg") == 1 and "same net from scratch" in section
    rows = re.findall(r"<tr><td class='n'>(\d+)%</td>", section)
    assert [int(r) for r in rows] == [round(100 * p["budget"]) for p in sweep["points"]]
    assert all(f"<td>{p['better']}</td>" in section for p in sweep["points"])


def test_every_target_row_has_its_latency_or_says_why_and_the_speed_names_its_machine(committed):
    _committed = committed
    machine = {"cpu": "Some CPU 9000", "logical_cpus": 8, "architecture": "x86_64",
               "measured_at": "2026-11-30T08:00:00+00:00"}
    page = _page(_committed, {"train": _committed("timings", "train.json"),
                  "package_web": _committed("timings", "package_web.json"),
                  "bench": {**_committed("timings", "bench.json"), "machine": machine}})
    train = _committed("timings", "train.json")
    assert (f"after {_committed('train.json')['epochs']} epochs ({train['training_seconds']:.0f} s of training, "
            f"{train['wall_seconds']:.0f} s for the whole stage)") in page
    assert "<b>Some CPU 9000</b> (8 logical CPUs, x86_64) with <b>2 threads</b>, on <b>2026-11-30</b>" in page
    shipped = page[page.index("What each target ships"):page.index("Every runner, fastest first")]
    rows = shipped.split("<tr>")[2:]
    assert len(rows) == len(_committed("bench.json")["targets"])
    for row in rows:
        figure = re.findall(r"<td[^>]*>(.*?)</td>", row)[3]
        assert re.fullmatch(r"[\d,]+ µs", figure) or "not timed" in figure, row
    web = next(row for row in rows if row.startswith("<td>web</td>"))
    selection = _committed("timings", "package_web.json")["selection"]
    web_ms = selection["candidates"][selection["chosen"]]["median_ms"]
    assert f"<td class='n'>{web_ms * 1000:,.0f} µs</td>" in web and "metrics/" not in web
    # The ranked table: every runner, fastest first.
    ranked = page[page.index("Every runner, fastest first"):page.index("Where INT8 pays off")]
    latencies = [float(v.replace(",", "")) for v in re.findall(r"<td class='n'>([\d,]+) µs</td>", ranked)]
    assert len(latencies) == len(_committed("bench.json")["variants"]) and latencies == sorted(latencies)
    assert "overflow-wrap:anywhere" not in page


def test_missing_observations_are_said_not_shown_as_question_marks(committed):
    page = _page(committed, {})
    assert "(? s)" not in page and "training time not recorded" in page
    assert "did not record" in page and "2 threads" in page
    web = page[page.index("<td>web</td>"):].split("</tr>")[0]
    assert "not timed here" in web and "µs" not in web
