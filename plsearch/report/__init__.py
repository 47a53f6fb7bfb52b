"""The Pareto dashboard: a search's study and run folder -> one self-contained HTML file.

Two steps. ``load_report_data`` (data.py) reads the Optuna study (any storage URL) and the
run folder into pandas tables plus a small frozen dataclass of facts; it is tested on
numbers. ``render_report`` (render.py) only draws (plotly, SVG only, no WebGL) and
``write_report`` writes the file atomically. plotly.js is inlined once, so the file opens
with no network. ``open_in_chromium`` / ``screenshot`` (browser.py) drive headless Chromium
over the DevTools pipe (no extra package) for the browser test and the README screenshot.

Definitions the report uses (the README repeats them):
- eligible trial: COMPLETE, feasible, with an accuracy, and fully evaluated: it reached the
  top rung of the KD ladder (rung == rungs_total - 1; any rung when the study records no
  ladder). Trials stopped at a lower rung had fewer KD tokens, so their accuracy is not
  comparable; they are drawn, never put on the front.
- Pareto front: the eligible trials that no other eligible trial beats on both the search
  objective (accuracy less a weighted held-out KL to the parent) and tokens/s, measured
  wherever the candidate was measured and predicted elsewhere (both maximized; exact ties
  are all kept). This is the search's own front (plsearch.search.pareto_front): the one it
  verified and exports. A measured candidate that falls off it is "dominated once
  measured". Plots show the accuracy with its 95% interval (error bars).
- hypervolume after trial n: the area that the front of the eligible trials numbered <= n
  dominates above the reference point (accuracy 0, tokens/s = the budget; 0 when the study
  has no budget), in accuracy x tokens/s (plsearch.search.pareto.hypervolume_2d). It only
  grows; a flat tail means the search has stopped finding better trade-offs.
- best feasible accuracy after trial n: the best accuracy among those same trials.
- intervals: 95%, value +- 1.96 standard errors propagated from the tasks' (scoring.py);
  the report says one model beats another only when their intervals separate.
- predictor error: (predicted - measured) / measured tokens/s, in percent, over the verified
  candidates (trials with a measured tokens/s) and the parent when it was measured.
"""

from plsearch.report.browser import PageResult, find_chromium, open_in_chromium, screenshot
from plsearch.report.data import (
    ReportData,
    ReportFacts,
    ablation_summary,
    build_report_data,
    hypervolume_2d,
    load_report_data,
    pareto_mask,
)
from plsearch.report.render import FIGURE_IDS, export_command, render_report, write_report

__all__ = [
    "FIGURE_IDS",
    "PageResult",
    "ReportData",
    "ReportFacts",
    "ablation_summary",
    "build_report_data",
    "export_command",
    "find_chromium",
    "hypervolume_2d",
    "load_report_data",
    "open_in_chromium",
    "pareto_mask",
    "render_report",
    "screenshot",
    "write_report",
]
