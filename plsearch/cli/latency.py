"""`plsearch profile-npu`, `plsearch latency fit|predict|analytic|check` (check: latency_check)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

from plsearch.cli.common import add_json_arg, deprecated_alias
from plsearch.errors import ConfigError, LatencyTableError

# The shipped profile used when --device-profile is left out, per backend.
DEFAULT_PROFILES = {"cpu": "cpu", "cuda": "h200", "npu": "ascend-910b"}


def register(sub) -> None:
    p = sub.add_parser(
        "profile-npu",
        help="measure this device (npu, cuda or cpu) into the latency table",
        description="Time decoder blocks, the model head and a few whole models of the "
        "parent's family on this device; append the rows to latency_db/<device>.csv.",
    )
    p.add_argument("--device", default="auto", choices=("auto", "npu", "cuda", "cpu"),
                   help="timer backend; auto picks npu, then cuda, then cpu (default auto)")
    _profile_arg(p)
    p.add_argument("--model", help="parent HF folder whose family and widths define the "
                   "grid (default: the built-in parent)")
    p.add_argument("--space", help="search-space YAML whose arch axes define the grid "
                   "(lists of values or {min, max, step}; see latency_db/README.md)")
    p.add_argument("--quick", action="store_true",
                   help="a smaller grid, a few minutes on a CPU")
    p.add_argument("--latency-db", dest="out", metavar="CSV",
                   help="table to append to (default: <device-tag>.csv in the checkout's "
                   "latency_db/, or ~/.local/share/plsearch/latency_db when installed)")
    deprecated_alias(p, "--out", "--latency-db", dest="out", metavar="CSV")
    p.add_argument("--seed", type=int, default=0, help="order and random weights (default 0)")
    add_json_arg(p)
    p.add_argument("--max-spread", type=float, help="rounds of a row may disagree by this "
                   "fraction before it is measured again, then refused (default 0.10)")
    p.set_defaults(func=cmd_profile)

    lat = sub.add_parser("latency", help="fit the latency predictor and predict tokens/s")
    lsub = lat.add_subparsers(dest="latency_command", metavar="ACTION", required=True)
    f = lsub.add_parser("fit", help="fit the predictor; report its error on whole models")
    _db_args(f)
    f.add_argument("--out", help="predictor JSON (default: next to the table)")
    f.add_argument("--seed", type=int, default=0, help="the predictor's fitting seed")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.set_defaults(func=cmd_fit)

    pr = lsub.add_parser("predict", help="tokens/s, prefill and decode time of an arch")
    _db_args(pr)
    pr.add_argument("--predictor", help="predictor JSON from `latency fit` (default: fit "
                    "the table now)")
    which = pr.add_mutually_exclusive_group()
    which.add_argument("--arch", help="arch JSON (HF field names, see ArchConfig)")
    which.add_argument("--model", help="HF model folder (default: the built-in parent)")
    pr.add_argument("--absorbed", action="store_true", help="the arch is built as its "
                    "family's post-norm-absorbed type, as the pangu recipe exports it (a "
                    "--model folder of that type is read as such)")
    pr.add_argument("--seed", type=int, default=0, help="the predictor's fitting seed")
    pr.add_argument("--json", action="store_true", help="print one JSON object")
    pr.set_defaults(func=cmd_predict)

    an = lsub.add_parser("analytic", help="write the analytic table of a device you do not "
                         "have (roofline of the profile's published peaks)")
    an.add_argument("--device-profile", required=True, help="device profile YAML or shipped "
                    "name with peak: figures (h200, ascend-910b)")
    an.add_argument("--model", help="parent HF folder (default: the built-in parent)")
    an.add_argument("--space", help="search-space YAML whose arch axes define the grid")
    an.add_argument("--out", help="CSV to write (default latency_db/<profile>-analytic.csv)")
    an.set_defaults(func=cmd_analytic)

    from plsearch.cli.latency_check import add_check

    add_check(lsub)


def _profile_arg(p) -> None:
    p.add_argument("--device-profile", help="device profile YAML or shipped name "
                   f"({', '.join(sorted(DEFAULT_PROFILES.values()))}); default: the one for "
                   "the device")


def _db_args(p) -> None:
    p.add_argument("--latency-db", dest="db", metavar="CSV", help="latency table CSV "
                   "(default: this device's table, measured or shipped)")
    deprecated_alias(p, "--db", "--latency-db", dest="db", metavar="CSV")
    _profile_arg(p)


# ---- profile-npu --------------------------------------------------------------------------


def cmd_profile(args) -> int:
    """Measure; with --json the progress goes to stderr and stdout gets one object."""
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        result = _profile(args)
    if args.json:
        print(json.dumps(result))
    return 0


def _profile(args) -> dict:
    import torch
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from plsearch.config import load_device_profile
    from plsearch.families import get_family
    from plsearch.latency.profiler import (
        FULL,
        QUICK,
        load_space_axes,
        plan_measurements,
        profile_rows,
    )
    from plsearch.latency.table import append_rows, default_db_dir, device_tag
    from plsearch.latency.timers import get_timer, resolve_device
    from plsearch.models import read_config, resolve_model_dir

    kind = resolve_device(args.device)
    profile = load_device_profile(args.device_profile or DEFAULT_PROFILES[kind])
    if profile.kind != kind:
        raise ConfigError(
            f"device profile {profile.name!r} is for {profile.kind}, but the device is "
            f"{kind}; pass --device {profile.kind} or a {kind} profile"
        )
    if kind == "cpu" and profile.threads:
        torch.set_num_threads(profile.threads)
    timer = get_timer(kind, cpu_clock=profile.cpu_clock)
    picked = " (picked by --device auto)" if args.device == "auto" else ""
    from plsearch.latency.timers import load_average

    print(f"device: {kind}{picked}: {timer.device_name()}, {profile.dtype}, "
          f"{timer.threads()} threads, clock {timer.clock}, engine {profile.engine}; "
          f"profile {profile.name}; load average {load_average():.2f} "
          f"({os.cpu_count()} cores)")

    parent_config = read_config(resolve_model_dir(args.model))
    family = get_family(parent_config.model_type)
    parent = family.arch_from_config(parent_config)
    axes = load_space_axes(args.space, parent) if args.space else None
    settings = QUICK if args.quick else FULL
    if args.max_spread is not None:
        if not args.max_spread > 0:
            raise ConfigError(f"--max-spread must be positive, got {args.max_spread}")
        settings = dataclasses.replace(settings, max_spread=args.max_spread)
    plan = plan_measurements(parent_config, profile, settings, axes=axes, seed=args.seed)
    out = Path(args.out) if args.out else default_db_dir() / (
        device_tag(profile.name, timer.device_name()) + ".csv")  # appended to if it exists
    print(f"parent: {family.model_type} {parent}; {len(plan)} measurements "
          f"({'quick' if args.quick else 'full'} grid), workload {_workload(profile)}")

    start = time.perf_counter()
    columns = (TextColumn("profiling"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[what]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("profile", total=len(plan) * settings.rounds, what="")

        def progress(done, total, m):
            bar.update(task, completed=done, total=total,
                       what=f"{m.part} {m.phase} d{m.arch.hidden_size}")

        run = profile_rows(plan, parent_config, timer, profile, settings,
                           seed=args.seed, on_progress=progress)
    print(f"spread (median absolute deviation of the round medians / their median) over {settings.rounds} "
          f"interleaved rounds: median "
          f"{100 * run.median_spread:.1f}% of the kept rows; {run.remeasured} rows above "
          f"{100 * run.max_spread:.0f}% measured again; load average {run.load_avg[0]:.2f} "
          f"at the start, {run.load_avg[1]:.2f} at the end")
    if run.refused:
        print(f"refused {len(run.refused)} rows still spreading more than "
              f"{100 * run.max_spread:.0f}% (not written; a busy machine?):")
        for m, spread in run.refused:
            print(f"  {m.part} {m.phase} {m.arch} seq {m.seq_len} context {m.context}: "
                  f"spread {100 * spread:.0f}%")
    if not run.rows:
        raise LatencyTableError("every row was refused as too noisy; nothing written; profile "
                                "again on a quieter machine")
    table = append_rows(out, run.rows)
    seconds = time.perf_counter() - start
    print(f"wrote {len(run.rows)} rows to {out} ({len(table)} in all) in "
          f"{seconds:.0f} s; next: plsearch latency fit --latency-db {out}")
    return {"latency_db": str(out), "rows": len(run.rows), "rows_in_table": len(table),
            "refused_rows": len(run.refused), "remeasured_rows": run.remeasured,
            "median_spread": run.median_spread, "load_avg": list(run.load_avg),
            "seconds": round(seconds, 2), "device_profile": profile.name}


def _workload(profile) -> str:
    w = profile.workload
    return f"batch {w.batch_size} x prompt {w.prompt_len} + {w.generated_len} generated"


def _resolve_db(args) -> Path:
    """--latency-db, or this device's table, or the only table of the profile in latency_db/."""
    if args.db:
        return Path(args.db)
    from plsearch.config import load_device_profile
    from plsearch.latency.lookup import default_table_path
    from plsearch.latency.timers import profile_timer, resolve_device

    kind = resolve_device("auto")
    profile = load_device_profile(args.device_profile or DEFAULT_PROFILES[kind])
    path = default_table_path(profile, profile_timer(profile))
    if path is None or not path.exists():
        raise LatencyTableError(
            f"no measured latency table for profile {profile.name} ({path or 'latency_db/'}); "
            f"measure this device with `plsearch profile-npu --device-profile {profile.name}` "
            "(add --quick for a few minutes' grid), or pass --latency-db CSV")
    return path


# ---- latency fit / predict ----------------------------------------------------------------


def cmd_fit(args) -> int:
    import pandas as pd

    from plsearch.latency.predictor import (
        ValidationReport,
        fit_predictor,
        save_predictor,
        validate_predictor,
    )
    from plsearch.latency.table import read_table

    db = _resolve_db(args)
    table = read_table(db)
    predictor = fit_predictor(table, seed=args.seed)
    try:
        report = validate_predictor(predictor, table)
    except LatencyTableError as exc:  # a table without whole-model rows still fits
        print(f"warning: {exc}")
        report = ValidationReport(pd.DataFrame(columns=["arch", "phase", "measured_ms",
                                                        "predicted_ms", "error"]))
    out = Path(args.out) if args.out else db.with_suffix(".predictor.json")
    save_predictor(predictor, out)
    warnings = _fingerprint_warnings(table, predictor)
    result = {
        "db": str(db),
        "predictor": str(out),
        "fitted_rows": predictor.meta["fitted_rows"],
        "engine": predictor.engine,
        "analytic": predictor.analytic,
        "validation_models": report.count("workload"),
        "median_abs_pct_error": _number(100 * report.median_ape("workload")),
        "share_within_10pct": _number(report.share_within(0.10, "workload")),
        "prefill_median_abs_pct_error": _number(100 * report.median_ape("prefill")),
        "prefill_share_within_10pct": _number(report.share_within(0.10, "prefill")),
        "warnings": warnings,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    for line in warnings:
        print(f"warning: {line}")
    kind = "ANALYTIC (computed from published peaks, not measured)" if predictor.analytic \
        else "measured"
    print(f"fitted on {result['fitted_rows']} block/head rows of {db} ({kind}, engine "
          f"{predictor.engine}); predictor -> {out}")
    m = predictor.in_model
    layer, head = m.units
    print(f"a layer inside the whole model: prefill x {m.prefill_scale:.3f}, each decode step "
          f"{m.decode_overhead_ms:+.3f} ms{layer}; each decode step of a model with layers "
          f"+{m.step_overhead_ms:.3f} ms{head} (fitted on the table's whole-model rows"
          + ("" if m.step_overhead_ms else "; 0 without models that differ in depth only")
          + ")")
    print("whole-model validation (each arch predicted with the in-model layer cost fitted on "
          "the other archs; block and head fits never see model rows):")
    for _, r in report.rows.sort_values(["phase", "arch"]).iterrows():
        print(f"  {r['phase']:8s} {r['arch']:28s} measured {r['measured_ms']:9.1f} ms  "
              f"predicted {r['predicted_ms']:9.1f} ms  error {100 * r['error']:+6.1f}%")
    for phase, label in (("workload", "workload (prefill + decode)"),
                         ("prefill", "prefill alone")):
        if report.count(phase):
            print(f"{label}: median |error| {100 * report.median_ape(phase):.1f}%, within "
                  f"+-10%: {100 * report.share_within(0.10, phase):.0f}% of "
                  f"{report.count(phase)}")
    return 0


def _number(value: float) -> float | None:
    """JSON has no NaN: a statistic over zero rows is null."""
    return None if math.isnan(value) else value


def cmd_predict(args) -> int:
    from plsearch.arch import ArchConfig
    from plsearch.config import load_device_profile
    from plsearch.latency.predictor import fit_predictor, load_predictor, predict_latency
    from plsearch.latency.table import read_table

    if args.predictor:
        predictor, source = load_predictor(args.predictor), args.predictor
    else:
        db = _resolve_db(args)
        predictor, source = fit_predictor(read_table(db), seed=args.seed), str(db)
    backend = str(predictor.fingerprint["backend"])
    profile = load_device_profile(args.device_profile or DEFAULT_PROFILES.get(backend, "cpu"))
    absorbed = args.absorbed
    if args.arch:
        arch, what = ArchConfig.from_json(args.arch), args.arch
    else:
        from plsearch.families import get_family
        from plsearch.models import read_config, resolve_model_dir

        config = read_config(resolve_model_dir(args.model))
        arch = get_family(config.model_type).arch_from_config(config)
        what = args.model or "built-in parent"
        family = get_family(predictor.model_type)
        absorbed = absorbed or config.model_type == family.absorbed_model_type
    pred = predict_latency(arch, profile.workload, predictor, absorbed=absorbed)
    if args.json:
        print(json.dumps({"arch": arch.to_dict(), "profile": profile.name,
                          "workload": _workload_dict(profile), "source": source,
                          "engine": predictor.engine, "analytic": predictor.analytic,
                          "absorbed": absorbed, **pred.to_dict()}))
        return 0
    kind = ", ANALYTIC table" if predictor.analytic else ""
    kind += ", absorbed model type" if absorbed else ""
    print(f"{what}: {arch} on {profile.name} ({_workload(profile)}), engine "
          f"{predictor.engine}{kind}, from {source}")
    print(f"  tokens/s            {pred.tokens_per_s:10.1f}")
    print(f"  prefill             {pred.prefill_ms:10.2f} ms")
    print(f"  decode per token    {pred.decode_ms_per_token:10.3f} ms")
    print(f"  total               {pred.total_ms:10.1f} ms")
    for name, value in pred.breakdown.items():
        print(f"    {name:18s}{value:10.2f}")
    return 0


def cmd_analytic(args) -> int:
    from plsearch.config import load_device_profile
    from plsearch.families import get_family
    from plsearch.latency.analytic import analytic_rows
    from plsearch.latency.lookup import ANALYTIC, db_folder
    from plsearch.latency.profiler import load_space_axes
    from plsearch.latency.table import device_tag, write_table
    from plsearch.models import read_config, resolve_model_dir

    profile = load_device_profile(args.device_profile)
    config = read_config(resolve_model_dir(args.model))
    parent = get_family(config.model_type).arch_from_config(config)
    axes = load_space_axes(args.space, parent) if args.space else None
    out = Path(args.out) if args.out else db_folder() / f"{device_tag(profile.name, ANALYTIC)}.csv"
    table = write_table(out, analytic_rows(config, profile, axes))
    peak = profile.peak
    print(f"wrote {len(table)} ANALYTIC rows (roofline of {peak.compute_tflops:g} TFLOPS, "
          f"{peak.memory_bandwidth_gbs:g} GB/s in {profile.dtype}; source: {peak.source}) to "
          f"{out}; measured rows of `plsearch profile-npu` replace them")
    return 0


def _workload_dict(profile) -> dict:
    w = profile.workload
    return {"batch_size": w.batch_size, "prompt_len": w.prompt_len,
            "generated_len": w.generated_len}


def _fingerprint_warnings(table, predictor) -> list[str]:
    """Say so when the table was measured on another device or software than this one.

    Threads, clock and dtype are settings of the run, not facts of the device: they are
    taken from the table, and only the device name and versions are compared.
    """
    from plsearch.errors import PlsearchError
    from plsearch.latency.table import fingerprint_mismatches
    from plsearch.latency.timers import get_timer

    backend = str(predictor.fingerprint["backend"])
    try:
        timer = get_timer(backend)
    except PlsearchError as exc:  # the device is not here; the fit itself is still valid
        return [f"the table was measured on {backend}, which is not usable here ({exc})"]
    current = {**predictor.fingerprint, "device_name": timer.device_name(),
               **timer.software_versions()}
    mismatches = fingerprint_mismatches(table, current)
    if mismatches:
        return ["the table was measured on another setup: " + "; ".join(mismatches)]
    return []
