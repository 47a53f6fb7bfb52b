"""The report in a real browser: headless Chromium draws every figure, with no console error
and no network request. The screenshot is kept in reports/test-artifacts/ (CI artifact).

.ci/run installs Debian's chromium; without it this test skips, saying why.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_report import make_fixture_study  # tests/ is on sys.path (pytest prepend import mode)

from plsearch.report import FIGURE_IDS, find_chromium, open_in_chromium, screenshot, write_report

pytestmark = [
    pytest.mark.ci_required,
    pytest.mark.skipif(find_chromium() is None, reason="Chromium not installed (Debian: "
                       "apt-get install chromium; .ci/run installs it)"),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "reports" / "test-artifacts"

# For each figure div: plotly's SVG, its traces, and trace paths with real geometry; then
# sort the trials table by accuracy (click twice: descending, then ascending).
INSPECT = """JSON.stringify((function () {
  var ids = %s, figures = {};
  ids.forEach(function (id) {
    var div = document.getElementById(id);
    if (!div) { figures[id] = null; return; }
    var drawn = Array.prototype.filter.call(
      div.querySelectorAll("g.trace path, g.trace .point, g.points path"),
      function (p) { return (p.getAttribute("d") || "").length > 4; });
    figures[id] = {svg: div.querySelectorAll("svg.main-svg").length,
                   traces: div.querySelectorAll("g.trace").length, drawn: drawn.length,
                   height: div.getBoundingClientRect().height};
  });
  var th = document.querySelectorAll("#trials th")[2];
  function column() {
    return Array.prototype.map.call(document.querySelectorAll("#trials tbody tr"),
      function (r) { return r.cells[2].textContent; });
  }
  th.click(); var desc = column(); th.click(); var asc = column();
  return {figures: figures, header: th.textContent, desc: desc, asc: asc,
          nodata: document.querySelectorAll(".nodata").length};
})())"""


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    run = tmp_path_factory.mktemp("browser") / "run"
    make_fixture_study(run, n_trials=10, seed=2)
    return write_report(out=run / "report.html", run_dir=run)


def test_report_draws_in_headless_chromium(report_page, tmp_path):
    page = report_page
    png = tmp_path / "report.png"
    result = open_in_chromium(page, evaluate=INSPECT % json.dumps(list(FIGURE_IDS)),
                              png_path=png, width=1280, height=900, full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(png, ARTIFACTS / "report-browser.png")
    print(f"screenshot: {ARTIFACTS / 'report-browser.png'}")

    assert result.console_errors == []
    assert [u for u in result.requests if not u.startswith(("file:", "data:"))] == []
    assert result.ready, "figures never finished drawing (window.plsearchReady)"
    inspected = json.loads(result.value)
    for fig_id, seen in inspected["figures"].items():
        assert seen is not None, f"{fig_id} missing"
        assert seen["svg"] >= 1 and seen["traces"] >= 1 and seen["drawn"] >= 1, (fig_id, seen)
        assert seen["height"] > 200, (fig_id, seen)
    assert inspected["nodata"] == 0
    accuracies = [float(v) for v in inspected["desc"] if v]
    assert inspected["header"].startswith("accuracy") and accuracies == sorted(accuracies,
                                                                                reverse=True)
    assert [v for v in inspected["asc"] if v] == sorted(v for v in inspected["asc"] if v)
    assert png.stat().st_size > 20_000  # a drawn page, not a blank one


def test_blank_page_fails_the_checks(report_page, tmp_path):
    """The checks above catch a page whose plotting script broke."""
    text = report_page.read_text(encoding="utf-8")
    page = tmp_path / "broken.html"
    page.write_text(text.replace("Plotly.newPlot(", "Plotly.noSuchFunction("), encoding="utf-8")
    result = open_in_chromium(page, evaluate=INSPECT % json.dumps(list(FIGURE_IDS)))
    assert result.console_errors and not result.ready
    figures = json.loads(result.value)["figures"]
    assert all(seen is None or seen["drawn"] == 0 for seen in figures.values())


def test_screenshot_writes_a_png(report_page, tmp_path):
    png = screenshot(report_page, tmp_path / "shot.png", width=800, height=600)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = (int.from_bytes(png.read_bytes()[16:24][i:i + 4], "big") for i in (0, 4))
    assert (width, height) == (800, 600)
