"""Does an arch that passes the screen pass verification too? Its miss rate per headroom.

    .venv/bin/python bench/screen_headroom.py [--archs 10] [--budget 1.5] [--seed 0]

The search times an arch near a relative budget before building it (random weights of
its shape beside the parent, plsearch.latency.screen) and builds it only when the whole
95% interval of its speed-up clears the budget with ``--headroom`` to spare.
Verification times the trained candidate again minutes later, beside the parent loaded
from its folder (plsearch.search.verify), and keeps it only when its own interval clears
the budget.

This bench takes ``--archs`` archs of the default space whose speed-up lies from the
budget to 12% above it (the budget band, where the search's first candidates come from)
by a cpu table's predictor, its speed-ups scaled to this machine's by ``--calibrate``
archs screened first. It screens each arch twice, in turn: beside the parent loaded from
its folder (what the search does) and beside random weights of the parent's shape (what
it did before). Once all are screened (minutes later, as after a build), it times each as
verification does, beside the loaded parent, with random weights of the candidate's
shape instead of trained ones (a trained demo candidate loaded from its folder timed
1.007x [95% 0.953, 1.039] a random-weight one of its shape on the AMD VM). It prints the
measurements, how far verification moved from each screen, then for each headroom: the
archs the screen would build, how many of those verification keeps, how many it refuses
(a trained candidate that misses the budget), and the archs the headroom refuses that
verification would have kept (accuracy lost). Every headroom reads the same screen
measurement (timed longer while its interval straddles the budget; the search times one
straddling its own bar, budget plus headroom).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", type=int, default=10)
    p.add_argument("--budget", type=float, default=1.5, help="relative budget (1.5: 1.5x)")
    p.add_argument("--seed", type=int, default=0, help="which band archs")
    p.add_argument("--calibrate", type=int, default=3,
                   help="archs screened first to scale the table's speed-ups to this host")
    p.add_argument("--headrooms", default="0,0.01,0.02,0.03,0.05")
    p.add_argument("--device-profile", default="cpu", metavar="YAML",
                   help="its workload and threads (default: the shipped cpu profile)")
    args = p.parse_args(argv)

    from plsearch.config import configs_dir, load_device_profile
    from plsearch.families import get_family
    from plsearch.latency.engine import (
        call_timer,
        load_for_timing,
        local_timer,
        random_arch_model,
        time_for_verdict,
    )
    from plsearch.latency.lookup import Latency, measured_tables
    from plsearch.latency.predictor import fit_predictor
    from plsearch.latency.screen import screen_arch
    from plsearch.latency.table import read_table
    from plsearch.models import read_config, resolve_model_dir
    from plsearch.search.objective import BAND_WIDTH
    from plsearch.search.space import load_space
    from plsearch.search.verify import VERIFY_PAIRS_FACTOR

    start = time.monotonic()
    b = args.budget
    profile = load_device_profile(args.device_profile)
    timer = local_timer(profile)
    model_dir = resolve_model_dir(None)
    config = read_config(model_dir)
    parent_arch = get_family(config).arch_from_config(config)
    space = load_space(str(configs_dir() / "search" / "default.yaml"))
    grid = space.resolve(parent_arch, profile.alignment)
    # A cpu table (the shipped one) only picks the archs; every verdict below is measured
    # here. Its speed-ups are first scaled to this machine's by --calibrate archs screened
    # here (from the band it predicts; a table of another CPU can be 10% off).
    table = measured_tables("cpu")[0]
    latency = Latency(predictor=fit_predictor(read_table(table)), table_path=table,
                      fingerprint={}, local=True, validation={}, absorbed=True)
    parent_speed = latency.predicted_tokens_per_s(parent_arch, profile)
    predicted = {a: latency.predicted_tokens_per_s(a, profile) / parent_speed
                 for a in grid.archs()}
    rng = random.Random(args.seed)

    def screen(arch, loaded: bool = True):
        """As the search's screen: random weights of the pangu recipe's model type, beside
        the parent loaded from its folder (random weights of its shape: ``loaded`` False,
        what the search did before)."""
        s = screen_arch(arch, b, latency, profile, config, margin=1e9, absorbed=True,
                        reference=(parent_arch, 1.0), parent_dir=model_dir if loaded else None)
        print(f"  screened {arch} beside the {'loaded' if loaded else 'random'} parent: "
              f"{s.measured_tokens_per_s:.3f}x [95% from {s.low:.3f}] "
              f"(predicted {predicted[arch]:.3f}x)", flush=True)
        return s

    def band(scale: float) -> list:
        return [a for a, x in predicted.items() if b <= x * scale < b * 1.12]

    if not band(1.0):
        raise SystemExit(f"no arch of the default space is predicted at {b}x-{b * 1.12:.2f}x "
                         "the parent; pick another --budget")
    first = rng.sample(band(1.0), min(args.calibrate, len(band(1.0))))
    print(f"calibrating on {len(first)} archs the table puts at {b}x-{b * 1.12:.2f}x",
          flush=True)
    scale = statistics.median(screen(a).measured_tokens_per_s / predicted[a] for a in first)
    pool = [a for a in band(scale) if a not in first]
    archs = rng.sample(pool, min(args.archs, len(pool)))
    print(f"{len(archs)} of the {len(pool)} archs at {b}x-{b * 1.12:.2f}x by the table's "
          f"speed-ups times {scale:.3f}; budget {b}x", flush=True)

    screens = {"loaded": [], "random": []}
    for i, arch in enumerate(archs):  # both ways, in turn
        for loaded in (True, False) if i % 2 == 0 else (False, True):
            screens["loaded" if loaded else "random"].append(screen(arch, loaded))
    parent = load_for_timing(model_dir, profile)
    parent_call = call_timer(parent, profile, timer=timer)
    verified = []
    for arch in archs:  # as verify_front: 10 pairs; more near the budget and the band's top
        model = random_arch_model(arch, config, profile, timer, absorbed=True)
        v = time_for_verdict(call_timer(model, profile, timer=timer), parent_call, 10,
                             [b, b * (1 + BAND_WIDTH)], budget=b,
                             max_pairs=VERIFY_PAIRS_FACTOR * 10, final=True)
        verified.append(v)
        print(f"  verified {arch}: {v.shown()} ({v.pairs} pairs)", flush=True)
        del model

    print(f"\n{'arch':32s} {'loaded':>7s} {'low':>6s} {'random':>7s} {'low':>6s} "
          f"{'verified':>9s} {'low':>6s}")
    for arch, s, r, v in zip(archs, screens["loaded"], screens["random"], verified):
        print(f"{arch!s:32s} {s.measured_tokens_per_s:7.3f} {s.low:6.3f} "
              f"{r.measured_tokens_per_s:7.3f} {r.low:6.3f} {v.speedup:9.3f} {v.low:6.3f}")
    keeps = [v.low >= b for v in verified]
    print(f"verification keeps {sum(keeps)} of {len(archs)}")
    for name, screened in screens.items():
        drift = sorted(v.speedup / s.measured_tokens_per_s - 1
                       for s, v in zip(screened, verified))
        print(f"\nscreened beside the {name} parent: verified / screened speed-up - 1: median "
              f"{statistics.median(drift):+.1%}, from {drift[0]:+.1%} to {drift[-1]:+.1%}")
        print(f"{'headroom':>8s} {'built':>6s} {'kept':>5s} {'missed':>7s} {'lost':>5s}   "
              "(missed: built, then refused by verification; lost: not built, verification "
              "would have kept it)")
        for h in (float(x) for x in args.headrooms.split(",")):
            built = [s.low >= b * (1 + h) for s in screened]
            print(f"{h:8.0%} {sum(built):6d} {sum(x and k for x, k in zip(built, keeps)):5d} "
                  f"{sum(x and not k for x, k in zip(built, keeps)):7d} "
                  f"{sum(k and not x for x, k in zip(built, keeps)):5d}")
    print(f"{time.monotonic() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
