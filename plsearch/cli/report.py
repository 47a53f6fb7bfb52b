"""`plsearch report`: the self-contained HTML Pareto dashboard of a search."""

from __future__ import annotations

import re
from pathlib import Path

from plsearch.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("report", help="write the Pareto dashboard of a search as one HTML file",
                       description="Read a search's study (and run folder) and write one "
                       "self-contained HTML file that opens offline.")
    p.add_argument("--run", metavar="DIR", help="run folder of a search (its --run; holds study.db)")
    p.add_argument("--study", metavar="NAME", help="study name (needed when the storage holds "
                   "several studies)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage URL, e.g. sqlite:///x.db or "
                   "postgresql://user@host/db")
    p.add_argument("--out", metavar="FILE", help="HTML file to write (default: <run>/report.html, "
                   "or reports/<study>/report.html)")
    p.add_argument("--screenshot", metavar="PNG", help="also save a PNG of the report drawn by "
                   "headless Chromium (the README screenshot)")
    p.add_argument("--screenshot-size", metavar="WxH", default="1280x900",
                   help="viewport of the screenshot (default 1280x900)")
    p.add_argument("--full-page", action="store_true",
                   help="screenshot the whole page, not only the first screen")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from plsearch.report import load_report_data, screenshot, write_report

    if args.run and args.storage:
        raise ConfigError("give either --run DIR or --storage URL, not both")
    if not args.run and not args.storage:
        raise ConfigError("give --run DIR (a search's run folder) or --storage URL [--study NAME]")
    size = re.fullmatch(r"(\d+)x(\d+)", args.screenshot_size or "")
    if args.screenshot and not size:
        raise ConfigError(f"--screenshot-size must look like 1280x900, got {args.screenshot_size!r}")
    if args.out and Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out} is a folder; name the HTML file to write, e.g. "
                          f"{Path(args.out) / 'report.html'}")
    data = load_report_data(storage_url=args.storage, study_name=args.study, run_dir=args.run)
    if args.out:
        out = Path(args.out)
    elif data.facts.run_dir:
        out = Path(data.facts.run_dir) / "report.html"
    else:
        out = Path("reports") / data.facts.study_name / "report.html"
    write_report(data, out=out)
    facts = data.facts
    best = ("none" if facts.best_feasible_accuracy is None else
            f"{facts.best_feasible_accuracy:.4f} (trial {facts.best_feasible_trial})")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {facts.n_trials} trials, "
          f"{len(data.front)} on the Pareto front, best feasible accuracy {best}")
    if args.screenshot:
        width, height = int(size.group(1)), int(size.group(2))
        png = screenshot(out, args.screenshot, width=width, height=height,
                         full_page=args.full_page)
        print(f"wrote {png}")
    return 0
