"""Does an arch that passes the screen pass verification too? Its miss rate per headroom.

    .venv/bin/python bench/screen_headroom.py [--archs 10] [--budget 1.5] [--seed 0]

The search times an arch near a relative budget before building it (random weights of
its shape beside the parent's shape, plsearch.latency.screen) and builds it only when the
whole 95% interval of its speed-up clears the budget with ``--headroom`` to spare.
Verification times the trained candidate again minutes later, beside the real parent
(plsearch.search.verify), and keeps it only when its own interval clears the budget.

This bench takes ``--archs`` archs of the default space whose speed-up the shipped cpu
predictor puts from the budget to 12% above it (the budget band, where the search's
first candidates come from), screens each as the search does, then, once all are
screened (minutes later, as after a build), times each as verification does: the
absorbed arch beside the real built-in parent. The verification side uses random weights
of the candidate's shape instead of trained ones (a weight's value does not change the
time of a dense model; a trained demo candidate timed beside a random-weight one of its
shape measured 1.007x [95% 0.953, 1.039] on the AMD VM). It prints each arch's two
measurements, then for each headroom: the archs it would build, how many of those
verification keeps, how many it refuses (a trained candidate that misses the budget),
and the archs the headroom refuses that verification would have kept (accuracy lost).
Every headroom reads the same screen measurement (timed longer while its interval
straddles the budget; the search times one straddling its own bar, budget plus headroom).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--budget", type=float, default=1.5, help="relative budget (1.5: 1.5x)")
    p.add_argument("--seed", type=int, default=0, help="which band archs")
    p.add_argument("--headrooms", default="0,0.01,0.02,0.03,0.05")
    p.add_argument("--device-profile", default="cpu", metavar="YAML",
                   help="its workload and threads (default: the shipped cpu profile)")
    args = p.parse_args(argv)

    from plsearch.config import configs_dir, load_device_profile
    from plsearch.families import get_family
    from plsearch.latency.engine import (
        call_timer,
        local_timer,
        random_arch_model,
        time_for_verdict,
    )
    from plsearch.latency.lookup import Latency
    from plsearch.latency.predictor import fit_predictor
    from plsearch.latency.screen import screen_arch
    from plsearch.latency.table import read_table
    from plsearch.models import load_model, read_config, resolve_model_dir
    from plsearch.search.space import load_space

    start = time.monotonic()
    b = args.budget
    profile = load_device_profile(args.device_profile)
    timer = local_timer(profile)
    model_dir = resolve_model_dir(None)
    config = read_config(model_dir)
    parent_arch = get_family(config).arch_from_config(config)
    space = load_space(str(configs_dir() / "search" / "default.yaml"))
    grid = space.resolve(parent_arch, profile.alignment)
    # A cpu table (the shipped one) only picks the archs (speed-ups near the budget); every verdict
    # below is measured here.
    shipped = min((Path(__file__).resolve().parents[1] / "latency_db").glob("cpu-*.csv"))
    latency = Latency(predictor=fit_predictor(read_table(shipped)), table_path=shipped,
                      fingerprint={}, local=True, validation={}, absorbed=True)
    parent_speed = latency.predicted_tokens_per_s(parent_arch, profile)
    band = [a for a in grid.archs()
            if b <= latency.predicted_tokens_per_s(a, profile) / parent_speed < b * 1.12]
    archs = random.Random(args.seed).sample(band, min(args.archs, len(band)))
    print(f"{len(archs)} of the {len(band)} archs the shipped predictor puts at {b}x-"
          f"{b * 1.12:.2f}x the parent; budget {b}x", flush=True)

    screens = []
    for arch in archs:  # as the search's screen: both random, the pangu recipe's model type
        s = screen_arch(arch, b, latency, profile, config, margin=1e9, absorbed=True,
                        reference=(parent_arch, 1.0))
        screens.append(s)
        print(f"  screened {arch}: {s.measured_tokens_per_s:.3f}x [95% from {s.low:.3f}]",
              flush=True)
    parent, _, _ = load_model(model_dir)
    parent_call = call_timer(parent, profile, timer=timer)
    verified = []
    for arch in archs:  # as verify_front: 10 pairs; more near the budget and the band's top
        model = random_arch_model(arch, config, profile, timer, absorbed=True)
        v = time_for_verdict(call_timer(model, profile, timer=timer), parent_call, 10,
                             [b, b * 1.15], budget=b)
        verified.append(v)
        print(f"  verified {arch}: {v.shown()} ({v.pairs} pairs)", flush=True)
        del model

    print(f"\n{'arch':32s} {'screen':>8s} {'low':>7s} {'verified':>9s} {'low':>7s}")
    for arch, s, v in zip(archs, screens, verified):
        print(f"{arch!s:32s} {s.measured_tokens_per_s:8.3f} {s.low:7.3f} "
              f"{v.speedup:9.3f} {v.low:7.3f}")
    keeps = [v.low >= b for v in verified]
    drift = sorted(v.speedup / s.measured_tokens_per_s - 1 for s, v in zip(screens, verified))
    print(f"\nverified / screened speed-up - 1: median {drift[len(drift) // 2]:+.1%}, "
          f"from {drift[0]:+.1%} to {drift[-1]:+.1%}")
    print(f"verification keeps {sum(keeps)} of {len(archs)}")
    print(f"{'headroom':>8s} {'built':>6s} {'kept':>5s} {'missed':>7s} {'lost':>5s}   "
          "(missed: built, then refused by verification; lost: not built, verification "
          "would have kept it)")
    for h in (float(x) for x in args.headrooms.split(",")):
        built = [s.low >= b * (1 + h) for s in screens]
        print(f"{h:8.0%} {sum(built):6d} {sum(x and k for x, k in zip(built, keeps)):5d} "
              f"{sum(x and not k for x, k in zip(built, keeps)):7d} "
              f"{sum(k and not x for x, k in zip(built, keeps)):5d}")
    print(f"{time.monotonic() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
