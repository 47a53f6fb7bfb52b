"""`plsearch search` and `plsearch export`: the main job and its hand-off."""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import sys
from pathlib import Path

from plsearch.cli.common import add_json_arg, deprecated_alias

# plsearch.search.study.SAMPLERS, spelled out: importing it would import optuna (and tqdm)
# whenever the CLI starts.
SAMPLER_CHOICES = ("gp", "tpe", "nsga2", "random")


def register(sub) -> None:
    p = sub.add_parser(
        "search", help="search pruned architectures under a speed budget (Optuna)",
        description="Sample aligned architectures from a search space, skip those whose "
        "predicted tokens/s misses the budget, build the rest from the parent (Pangu Light), "
        "retrain them by KD on a successive-halving ladder, score them, and measure the "
        "Pareto-front candidates end to end. Running the same command again resumes.")
    p.add_argument("--config", metavar="FILE",
                   help="a run file (budget, device profile, trials, sampler, storage, seed "
                   "and the space, as YAML), or a run.json to replay that search (with --run "
                   "NEWDIR); flags given here win over the file (see "
                   "plsearch/search/runfile.py)")
    p.add_argument("--budget", metavar="SPEC",
                   help="speed budget: 1.5x (vs the parent) or 2500tok/s, on the device "
                   "profile's workload (required, here or in --config)")
    p.add_argument("--model", help="parent HF folder (default: the built-in parent)")
    p.add_argument("--space", metavar="YAML", help="search space file or shipped name "
                   "(default: configs/search/default.yaml)")
    p.add_argument("--device-profile", metavar="YAML",
                   help="device profile file or shipped name (default: cpu)")
    p.add_argument("--latency-db", metavar="CSV", help="latency table (default: "
                   "latency_db/<profile>-<device>.csv, measured by `plsearch profile-npu`)")
    p.add_argument("--trials", type=int, metavar="N",
                   help="candidates to build, all workers together; arches that miss the "
                   "budget are recorded but do not count (default 12)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="after this many seconds from the start, start no new trial and "
                   "promote none to a further rung; the pre-trial ranking may use 40%% of "
                   "them (default: no limit)")
    p.add_argument("--storage", metavar="URL", help="Optuna storage shared by workers, e.g. "
                   "postgresql://user:pw@host/db (default: sqlite in the run folder)")
    p.add_argument("--study", metavar="NAME", help="study name (default: <space>-<budget>)")
    p.add_argument("--run", dest="out", metavar="DIR",
                   help="run folder (default: reports/<study>)")
    deprecated_alias(p, "--out", "--run", dest="out", metavar="DIR")
    p.add_argument("--artifacts", metavar="DIR", help="where candidates are saved; a shared "
                   "folder when workers run on several machines (default: <run>/candidates)")
    p.add_argument("--sampler", choices=SAMPLER_CHOICES,
                   help="Optuna sampler (default gp; all but random see the budget)")
    p.add_argument("--seed", type=int, help="sampler seed (default 0)")
    add_json_arg(p)
    p.add_argument("--no-verify", dest="verify", action="store_const", const=False,
                   help="do not measure the Pareto-front candidates at the end")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not write report.html")
    p.add_argument("--no-screen", dest="screen", action="store_const", const=False,
                   help="do not time archs near the budget before building them (feasibility "
                   "then rests on the predictor alone)")
    p.add_argument("--headroom", type=float, metavar="FRACTION",
                   help="build an arch timed near the budget only when its speed clears the "
                   "budget by this much (0.03: 3%%), since verification times it again and "
                   "must show the budget itself; fewer archs near the budget get built "
                   "(default 0)")
    p.set_defaults(func=cmd_search)

    e = sub.add_parser(
        "export", help="write one searched candidate as a Hugging Face folder + model card",
        description="Copy a candidate saved by `plsearch search` to a new folder with a "
        "README.md model card (parent, arch, recipe, KD budget, scores, speeds, device).")
    src = e.add_argument_group("which search")
    src.add_argument("--run", dest="out_dir", metavar="DIR",
                     help="run folder of the search (holds study.db)")
    deprecated_alias(src, "--out-dir", "--run", dest="out_dir", metavar="DIR")
    src.add_argument("--storage", metavar="URL", help="Optuna storage URL of the search")
    src.add_argument("--study", metavar="NAME", help="study name (needed when the storage "
                     "holds several)")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", type=int, metavar="N", help="trial number")
    which.add_argument("--best-for", metavar="BUDGET",
                       help="the most accurate saved candidate meeting BUDGET (1.5x, 2500tok/s)")
    e.add_argument("--out", required=True, metavar="DIR", help="new folder to write")
    add_json_arg(e)
    e.set_defaults(func=cmd_export)


def cmd_search(args) -> int:
    """The search; with --json its progress goes to stderr and stdout gets one object."""
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        summary = _search(args)
    if args.json and summary is not None:
        fields = {k: v for k, v in vars(summary).items() if k != "url"}  # url: password
        print(json.dumps(fields, default=str))
    return 0


def _search(args):
    # Optuna's per-trial INFO lines repeat what _print_trial shows; lm-eval's warnings and
    # progress bars (dozens per trial, turned off in plsearch.cli.main) bury it. -v brings
    # them all back.
    import optuna

    from plsearch.search.run import SearchOptions, run_search

    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    if not args.verbose:
        logging.getLogger("lm_eval").setLevel(logging.ERROR)

    opts = SearchOptions(**_option_values(args), command=_command_line(args))
    summary = run_search(opts, on_trial=_print_trial,
                         on_stage=lambda m: print(f"== {m}", flush=True),
                         on_progress=lambda m: print(f"   .. {m}", flush=True))
    if summary is None:  # torchrun rank > 0: rank 0 prints and writes
        return None
    print(f"== done in {summary.seconds:.0f} s: {summary.built} candidates built, "
          f"{summary.infeasible} arches skipped (budget), {summary.failed} failed")
    if summary.recovered:
        print(f"   resumed: trials {summary.recovered} were left running by a killed search; "
              "their arches were queued again")
    _print_verification(summary.verification)
    print(f"   study {summary.study_name} in {summary.storage}")
    print(f"   run folder {summary.run_dir} (trials.csv, run.json)")
    if args.report:
        _write_report(summary)
    return summary


_REPRODUCE = ("config", "budget", "model", "space", "device_profile", "latency_db", "trials",
              "timeout", "study", "out", "artifacts", "sampler", "seed", "headroom")
_OPTIONS = ("budget", "model", "space", "device_profile", "latency_db", "trials", "timeout",
            "storage", "study", "out", "artifacts", "sampler", "seed", "verify", "screen",
            "headroom")


def _option_values(args) -> dict:
    """SearchOptions fields: the --config file's, overridden by the flags given."""
    from plsearch.errors import ConfigError
    from plsearch.search.runfile import read_run_file

    values, replay = read_run_file(args.config) if args.config else ({}, False)
    values.update({name: getattr(args, name) for name in _OPTIONS
                   if getattr(args, name) is not None})
    if replay and args.out is None:
        raise ConfigError(f"replaying {args.config} needs --run NEWDIR (its own run folder "
                          "would resume that search, not replay it)")
    if "budget" not in values:
        raise ConfigError("--budget is required (or budget: in the --config file), e.g. "
                          "--budget 1.5x")
    return values


def _command_line(args) -> str:
    """The search as one command line (no storage URL: it may hold a password)."""
    parts = ["plsearch", "search"]
    for name in _REPRODUCE:
        value = getattr(args, name)
        if value is not None:
            flag = "run" if name == "out" else name.replace("_", "-")
            parts += [f"--{flag}", shlex.quote(str(value))]
    if args.storage:
        parts += ["--storage", "URL"]
    parts += [f"--no-{name}" for name in ("verify", "screen") if getattr(args, name) is False]
    return " ".join(parts)


def _print_trial(trial) -> None:
    from plsearch.search.record import TrialRecord

    r = TrialRecord.from_trial(trial)
    a = r.arch
    shape = (f"L{a.num_hidden_layers} d{a.hidden_size} q{a.num_attention_heads}/"
             f"kv{a.num_key_value_heads} ffn{a.intermediate_size}") if a else "?"
    speed = f"{r.predicted_tokens_per_s or float('nan'):,.0f} tok/s"
    seconds = r.seconds.get("total", 0.0)
    if r.state == "FAIL":
        what = f"FAILED: {r.fail_reason or '?'}"
    elif r.feasible is False:
        what = "misses the budget, not built"
    elif r.duplicate_of is not None:
        what = f"same arch as trial {r.duplicate_of}: its result reused"
    elif r.surplus:
        what = "not built: other workers built the last candidates"
    else:
        ci = r.objective_interval
        spread = f" +- {(ci[1] - ci[0]) / 2:.3f}" if ci else ""
        what = (f"rung {r.rung + 1}/{r.rungs_total}  objective {r.objective:.3f}{spread}  "
                f"acc {r.accuracy or 0:.3f}  KL {r.kl if r.kl is not None else float('nan'):.3f}")
    print(f"trial {trial.number:3d}  {shape:28s} {speed:>14s}  {what}  ({seconds:.0f} s)",
          flush=True)


def _print_verification(verification: dict) -> None:
    if not verification:
        return
    if "skipped" in verification:
        print(f"   verification skipped: {verification['skipped']}")
        return
    if "parent" not in verification:  # not verified (--no-verify): nothing measured to show
        return
    print("   Pareto front, predicted vs measured tokens/s:")
    parent = verification["parent"]
    rows = [("parent", parent["predicted_tokens_per_s"], parent["measured_tokens_per_s"])]
    rows += [(f"trial {r['trial']}", r["predicted_tokens_per_s"], r["measured_tokens_per_s"])
             for r in verification["candidates"]]
    for label, predicted, measured in rows:
        error = (predicted / measured - 1) * 100 if predicted and measured else float("nan")
        print(f"     {label:10s} predicted {predicted:10,.0f}  measured {measured:10,.0f}  "
              f"({error:+.1f}%)")
    if verification.get("dominated_by_measurement"):
        print(f"   dominated once measured (left off the front): trials "
              f"{verification['dominated_by_measurement']}")
    if verification.get("missed_budget_measured"):
        print("   of those, not shown to meet the budget (measured below it, or its speed-up's "
              f"95% interval reaches below): trials {verification['missed_budget_measured']}")
    if "band_on_front" in verification:
        band = verification["band_on_front"]
        print("   on the front and measured within 15% above the budget: "
              + (f"trials {band}" if band else "none"))
    refined = verification.get("refinement")
    if refined and refined.get("median_abs_after") is not None:
        print(f"   predictor on {refined['pairs']} whole-model measurements: median |error| "
              f"{refined['median_abs_before']:.1%} before refinement, "
              f"{refined['median_abs_after']:.1%} after (leave-one-out)")
    if verification.get("median_abs_error") is not None:
        print(f"   prediction error on the front: median {verification['median_abs_error']:.1%}, "
              f"max {verification['max_abs_error']:.1%}")


def _write_report(summary) -> None:
    try:
        from plsearch.report import write_report
    except ImportError:
        print("   (report step not available in this install: no report.html)")
        return
    from plsearch.errors import ConfigError
    from plsearch.search.study import storage_url

    # The run folder's own study.db is found from the folder; any other storage (an SQLite
    # file elsewhere included) is passed on.
    in_run = summary.url == storage_url(None, Path(summary.run_dir))
    storage = None if in_run else summary.url
    try:
        out = write_report(storage_url=storage, study_name=summary.study_name,
                           run_dir=str(summary.run_dir),
                           out=Path(summary.run_dir) / "report.html")
    except OSError as exc:  # disk full, read-only folder: the search itself is recorded
        raise ConfigError(f"the search finished but report.html could not be written "
                          f"({exc.strerror or exc}); free space or fix the folder, then run "
                          f"`plsearch report --run {summary.run_dir}`") from None
    print(f"   report {out}")


def cmd_export(args) -> int:
    from plsearch.search.export import choose_trial, export_candidate, open_for_export
    from plsearch.search.scoring import interval

    study = open_for_export(out_dir=args.out_dir, storage=args.storage, study=args.study)
    record = choose_trial(study, number=args.trial, best_for=args.best_for)
    out = export_candidate(study, record, args.out)
    ci = interval(record.accuracy, record.accuracy_stderr) if record.accuracy is not None \
        else None
    if args.json:
        print(json.dumps({"trial": record.number, "out": str(out),
                          "accuracy": record.accuracy,
                          "accuracy_stderr": record.accuracy_stderr,
                          "accuracy_ci95": list(ci) if ci else None,
                          "objective": record.objective,
                          "objective_stderr": record.objective_stderr,
                          "params": record.params,
                          "predicted_tokens_per_s": record.predicted_tokens_per_s,
                          "measured_tokens_per_s": record.measured_tokens_per_s}))
        return 0
    spread = f" (95% interval {ci[0]:.4f} to {ci[1]:.4f})" if ci else ""
    print(f"exported trial {record.number} to {out}: accuracy {record.accuracy or 0:.4f}"
          f"{spread}, {record.params or 0:,} params, predicted "
          f"{record.predicted_tokens_per_s:,.0f} tok/s"
          + (f", measured {record.measured_tokens_per_s:,.0f} tok/s"
             if record.measured_tokens_per_s else ""))
    return 0
