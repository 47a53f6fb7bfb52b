"""Which cheap signal best predicts a candidate's top-rung objective? (the ladder's choice)

For N archs spread over the default space (evenly by parameter count), each built from the
built-in parent and retrained exactly as a search does (same KD windows, same rungs), it
records the cheap signals the ladder could promote on:

    build_kl    held-out KL to the parent right after the build (zero KD steps)
    kl          held-out KL after rung 0's KD
    accuracy    rung 0's weighted task score (few items per task)
    objective   rung 0's objective (accuracy - kl_weight * KL)
    params      parameter count (a proxy that needs no model at all)

then continues every arch to the top rung and prints the Spearman rank correlation of each
signal with the top-rung objective (signs flipped so that higher is better for every
signal), with a bootstrap 95% interval over archs, and the same for the signals of every
middle rung (what promotes from there). It also prints what the KL weight of
the objective rests on: the spread of the top-rung accuracy and KL across archs and their
mean standard errors.

    .venv/bin/python bench/fidelity.py                        # 24 archs, ~3 min each on 2 cores
    .venv/bin/python bench/fidelity.py --archs 32 --csv fidelity.csv
    .venv/bin/python bench/fidelity.py --band 2x                # archs of the 2x budget band

--band BUDGET draws the archs from that budget's band instead (feasible, predicted at
most 15% above the budget): which signal should rank the band that the search builds
first? (The search ranks it by build KL since session 5, by parameter count before; in
session 4's 2x search-quality run the band's largest shapes, L4 d256, kept 58-70% of the
parent while deep narrow ones kept 92-96%. On 8 of that run's archs, 2026-12-01: Spearman
rho with their top-rung objective -0.79 for parameter count, +0.86 for -build KL, -0.26
for rung 0's objective.)
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import time
from pathlib import Path

SIGNALS = ("build_kl", "kl", "accuracy", "objective", "params")


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rho (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def bootstrap_interval(x: list[float], y: list[float], rounds: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of Spearman's rho over archs resampled with replacement."""
    rng = random.Random(seed)
    n, values = len(x), []
    for _ in range(rounds):
        idx = [rng.randrange(n) for _ in range(n)]
        xs, ys = [x[i] for i in idx], [y[i] for i in idx]
        if len(set(xs)) > 1 and len(set(ys)) > 1:
            values.append(spearman(xs, ys))
    values.sort()
    return values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]


def spread_archs(archs, num_params, count: int, seed: int) -> list:
    """``count`` of ``archs`` evenly spaced by parameter count (seeded choice among equals)."""
    rng = random.Random(seed)
    archs = list(archs)
    rng.shuffle(archs)
    archs.sort(key=num_params)
    if count >= len(archs):
        return archs
    step = (len(archs) - 1) / (count - 1)
    chosen = [archs[round(i * step)] for i in range(count)]
    rng.shuffle(chosen)  # measured in random order: a partial run is still a spread
    return chosen


def measure_arch(pipeline, space, arch) -> dict:
    from plsearch.search.scoring import objective_value

    rungs = space.ladder.rungs
    start = time.perf_counter()
    model = pipeline.build(arch)
    build_kl, _ = pipeline.heldout_kl(model)
    row = {"arch": str(arch), "params": pipeline.num_params(arch),
           "predicted_tokens_per_s": pipeline.predict(arch), "build_kl": build_kl}
    steps = 0
    for r, rung in enumerate(rungs):
        pipeline.retrain(model, steps, rung.kd_steps)
        steps = rung.kd_steps
        scored = pipeline.score(model, rung)
        value, value_se = objective_value(scored.accuracy, scored.accuracy_stderr, scored.kl,
                                          scored.kl_stderr, space.objective.kl_weight)
        tag = "rung0" if r == 0 else ("top" if r == len(rungs) - 1 else f"rung{r}")
        row.update({f"{tag}_accuracy": scored.accuracy,
                    f"{tag}_accuracy_stderr": scored.accuracy_stderr,
                    f"{tag}_kl": scored.kl, f"{tag}_kl_stderr": scored.kl_stderr,
                    f"{tag}_objective": value, f"{tag}_objective_stderr": value_se})
    pipeline.release(model)
    row["seconds"] = time.perf_counter() - start
    return row


def signal_column(rows: list[dict], signal: str, rung: str = "rung0") -> list[float]:
    """Higher is better for every signal (KLs negated)."""
    if signal == "build_kl":
        return [-r["build_kl"] for r in rows]
    if signal == "params":
        return [float(r["params"]) for r in rows]
    values = [r[f"{rung}_{signal}"] for r in rows]
    return [-v for v in values] if signal == "kl" else values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", type=int, default=24)
    p.add_argument("--space", default=None, help="search space (default: the shipped default)")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--latency-db", help="latency table (default: this machine's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--band", metavar="BUDGET",
                   help="draw the archs from this budget's band (e.g. 2x), not the whole space")
    p.add_argument("--csv", type=Path, help="write one row per arch here")
    args = p.parse_args(argv)
    if args.archs < 24:
        p.error("use at least 24 archs")
    os.environ.setdefault("TQDM_DISABLE", "1")

    import logging

    from plsearch.search.pipeline import load_pipeline
    from plsearch.search.run import SearchOptions, plan_search

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    plan = plan_search(SearchOptions(budget=args.band or "1.0x", space=args.space,
                                     device_profile=args.profile, latency_db=args.latency_db))
    space = plan.space
    pipeline = load_pipeline(plan.model_dir, space, plan.profile, plan.latency, seed=args.seed)
    pool = plan.feasible.band() if args.band else plan.grid.archs()
    archs = spread_archs(pool, pipeline.num_params, args.archs, args.seed)
    rungs = ", ".join(f"{r.kd_steps} KD steps/{r.limit or 'all'} items" for r in space.ladder.rungs)
    where = (f"the {args.band} band of space {space.name} ({len(plan.feasible.band())} archs)"
             if args.band else f"space {space.name} ({plan.grid.size()} in all)")
    print(f"fidelity: {len(archs)} archs of {where}, "
          f"rungs {rungs}, kl_weight {space.objective.kl_weight}, seed {args.seed}", flush=True)
    rows = []
    for i, arch in enumerate(archs):
        row = measure_arch(pipeline, space, arch)
        rows.append(row)
        print(f"  {i + 1:2d}/{len(archs)} {row['arch']:38s} {row['params'] / 1e6:5.2f} M  "
              f"build KL {row['build_kl']:.3f}  rung0 KL {row['rung0_kl']:.3f} acc "
              f"{row['rung0_accuracy']:.3f}  top KL {row['top_kl']:.3f} acc "
              f"{row['top_accuracy']:.3f} obj {row['top_objective']:.4f}  "
              f"({row['seconds']:.0f} s)", flush=True)
        if args.csv:
            _write_csv(args.csv, rows)

    top = [r["top_objective"] for r in rows]
    print(f"Spearman rho with the top-rung objective over {len(rows)} archs "
          "(95% bootstrap interval):")
    for signal in SIGNALS:
        x = signal_column(rows, signal)
        low, high = bootstrap_interval(x, top, seed=args.seed)
        print(f"  {signal:10s} rho {spearman(x, top):+.3f}  [{low:+.3f}, {high:+.3f}]")
    for r in range(1, len(space.ladder.rungs) - 1):  # what promotes from a middle rung
        for signal in ("kl", "accuracy", "objective"):
            x = signal_column(rows, signal, f"rung{r}")
            low, high = bootstrap_interval(x, top, seed=args.seed)
            print(f"  rung {r} {signal:10s} rho {spearman(x, top):+.3f}  "
                  f"[{low:+.3f}, {high:+.3f}]")
    acc = [r["top_accuracy"] for r in rows]
    kl = [r["top_kl"] for r in rows]
    acc_se = [r["top_accuracy_stderr"] for r in rows if r["top_accuracy_stderr"] is not None]
    kl_se = [r["top_kl_stderr"] for r in rows]
    print(f"top rung: accuracy sd across archs {statistics.stdev(acc):.4f}, mean stderr "
          f"{statistics.mean(acc_se) if acc_se else float('nan'):.4f}; KL sd across archs "
          f"{statistics.stdev(kl):.4f}, mean stderr {statistics.mean(kl_se):.4f}; "
          f"Spearman(accuracy, -KL) {spearman(acc, [-v for v in kl]):+.3f}")
    print(f"total {sum(r['seconds'] for r in rows) / 60:.1f} min")
    return 0


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
