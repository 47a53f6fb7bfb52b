"""`plsearch latency check`: does the table still hold on this machine now?"""

from __future__ import annotations

import json

from plsearch.errors import ConfigError


def add_check(lsub) -> None:
    from plsearch.cli.latency import _db_args

    c = lsub.add_parser("check", help="time the table's own whole models again: how far this "
                        "machine drifted since it was profiled")
    _db_args(c)
    c.add_argument("--model", help="the parent the table was profiled for (default: the "
                   "built-in parent)")
    c.add_argument("--rounds", type=int, default=3,
                   help="rounds over the models, each in a new order (default 3)")
    c.add_argument("--max-drift", type=float, default=0.10, help="exit 1 when the median "
                   "drift is larger than this fraction either way (default 0.10)")
    c.add_argument("--seed", type=int, default=0, help="order and random weights (default 0)")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from plsearch.cli.latency import DEFAULT_PROFILES, _resolve_db
    from plsearch.config import load_device_profile
    from plsearch.latency.drift import check_drift
    from plsearch.latency.table import latest_fingerprint, read_table
    from plsearch.models import read_config, resolve_model_dir

    if args.rounds < 1 or not args.max_drift >= 0:
        raise ConfigError(f"--rounds must be at least 1 and --max-drift at least 0, got "
                          f"{args.rounds} and {args.max_drift}")
    db = _resolve_db(args)
    table = read_table(db)
    backend = str(latest_fingerprint(table)["backend"])
    profile = load_device_profile(args.device_profile or DEFAULT_PROFILES.get(backend, "cpu"))
    report = check_drift(table, read_config(resolve_model_dir(args.model)), profile,
                         rounds=args.rounds, seed=args.seed)
    drift = report.median_drift
    within = abs(drift) <= args.max_drift
    if args.json:
        print(json.dumps({"db": str(db), "profile": profile.name, "rounds": args.rounds,
                          "max_drift": args.max_drift, "within": within,
                          **report.to_dict()}))
        return 0 if within else 1
    print(f"{db}: its {len(report.models)} whole models (profiled {report.run_id} on "
          f"{report.device_name}), timed again now through {profile.engine}, {args.rounds} "
          "rounds:")
    for m in report.models:
        kind = " (absorbed type)" if m.model.absorbed else ""
        print(f"  {str(m.model.arch) + kind:46s} table {m.model.median_ms:9.1f} ms   now "
              f"{m.now_ms:9.1f} ms   {100 * m.drift:+6.1f}%")
    way = "slower" if drift > 0 else "faster"
    print(f"this machine runs them {100 * abs(drift):.1f}% {way} than the table says "
          f"(median): ", end="")
    if within:
        print(f"within the {100 * args.max_drift:.0f}% allowed (--max-drift)")
        return 0
    print(f"beyond the {100 * args.max_drift:.0f}% allowed (--max-drift); predictions from "
          f"this table are off by about as much: re-profile with `plsearch profile-npu "
          f"--device-profile {profile.name}` (a search corrects for drift on its own as it "
          "measures)")
    return 1
