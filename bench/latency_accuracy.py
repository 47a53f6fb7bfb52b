"""How well does the latency predictor hold on archs it never saw?

In one run on this machine: profile the quick grid of the built-in parent (or reuse a
table with --table), fit the predictor, then build N random hardware-aligned archs of the
parent's family whose block shapes were not profiled, time each one end to end (prefill +
decode of the profile's workload, exactly as `plsearch profile-npu` times whole models)
in two rounds of random order, and compare the median with the prediction. Prints the ratio predicted / measured per arch, the
median absolute error and the share within +-10%, and the rank correlation of tokens/s
(what the search relies on).

    .venv/bin/python bench/latency_accuracy.py                       # profile + 12 archs
    .venv/bin/python bench/latency_accuracy.py --table latency_db/cpu-amd-epyc.csv --archs 20

Target on this CPU: median <= 5% and >= 90% of archs within +-10%.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", help="reuse this latency table instead of profiling")
    parser.add_argument("--archs", type=int, default=12, help="held-out archs (default 12)")
    parser.add_argument("--device-profile", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="end-to-end repeats per arch")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds over all archs, each in a new random order (default 2)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from plsearch.config import load_device_profile
    from plsearch.families import get_family
    from plsearch.latency.predictor import fit_predictor, predict_latency, validate_predictor
    from plsearch.latency.profiler import (
        QUICK,
        axes_from_parent,
        build_random_model,
        measure_workload,
        plan_measurements,
        run_measurements,
        sample_archs,
        widths,
    )
    from plsearch.latency.table import append_rows, read_table
    from plsearch.latency.timers import get_timer
    from plsearch.models import read_config, resolve_model_dir

    profile = load_device_profile(args.device_profile)
    if profile.kind == "cpu" and profile.threads:
        torch.set_num_threads(profile.threads)
    timer = get_timer(profile.kind, cpu_clock=profile.cpu_clock)
    parent_config = read_config(resolve_model_dir(None))
    family = get_family(parent_config.model_type)
    parent = family.arch_from_config(parent_config)
    workload = profile.workload
    print(f"device {timer.device_name()} ({timer.name}, clock {timer.clock}, "
          f"{timer.threads()} threads); parent {family.model_type} {parent}; workload "
          f"batch {workload.batch_size} x prompt {workload.prompt_len} + "
          f"{workload.generated_len} generated")

    start = time.perf_counter()
    if args.table:
        table = read_table(args.table)
        print(f"table: {args.table} ({len(table)} rows)")
    else:
        plan = plan_measurements(parent_config, profile, QUICK, seed=args.seed)
        rows = run_measurements(plan, parent_config, timer, profile, QUICK, seed=args.seed)
        folder = Path(tempfile.mkdtemp(prefix="plsearch-bench-"))
        table = append_rows(folder / "quick.csv", rows)
        print(f"profiled the quick grid: {len(rows)} rows in "
              f"{time.perf_counter() - start:.0f} s -> {folder / 'quick.csv'}")
    predictor = fit_predictor(table, seed=args.seed)
    in_table = validate_predictor(predictor, table)
    print(f"table's own whole-model rows: median |error| {100 * in_table.median_ape():.1f}% "
          f"over {in_table.count()}")

    profiled = {
        (int(r.hidden_size), int(r.num_attention_heads), int(r.num_key_value_heads),
         int(r.intermediate_size))
        for r in table[table["part"].isin(["block", "model"])].itertuples()
    }
    rng = random.Random(10_000 + args.seed)
    archs = sample_archs(axes_from_parent(parent, profile), parent, args.archs, rng,
                         exclude_widths=profiled)
    assert all(widths(a) not in profiled for a in archs)
    # Each arch is timed in `rounds` rounds, the archs in a new random order each round, so
    # drift of a shared machine spreads over all archs; the round-to-round spread of the
    # measurements themselves bounds the accuracy any predictor can show here.
    dtype = {"float32": torch.float32, "float16": torch.float16,
             "bfloat16": torch.bfloat16}[profile.dtype]
    measured: dict[int, list[float]] = {i: [] for i in range(len(archs))}
    order_rng = random.Random(args.seed)
    for _ in range(args.rounds):
        order = list(range(len(archs)))
        order_rng.shuffle(order)
        for i in order:
            torch.manual_seed(args.seed + i)
            model = build_random_model(family, parent_config, archs[i], timer.device, dtype)
            generator = torch.Generator().manual_seed(args.seed + i)
            timing = measure_workload(model, timer, workload.batch_size, workload.prompt_len,
                                      workload.generated_len, warmup=1, repeats=args.repeats,
                                      generator=generator)
            measured[i].append(timing.median_ms)
            del model
    results = []
    print(f"\n{'arch':30s} {'measured ms':>12s} {'predicted ms':>13s} {'pred/meas':>10s} "
          f"{'round spread':>13s}")
    for i, arch in enumerate(archs):
        times = measured[i]
        median = float(np.median(times))
        spread = (max(times) / min(times) - 1.0) if len(times) > 1 else 0.0
        predicted = predict_latency(arch, workload, predictor)
        ratio = predicted.total_ms / median
        results.append({"arch": arch.to_dict(), "measured_ms": median, "rounds_ms": times,
                        "predicted_ms": predicted.total_ms, "ratio": ratio,
                        "measured_tokens_per_s": workload.batch_size * workload.generated_len
                        / (median / 1e3),
                        "predicted_tokens_per_s": predicted.tokens_per_s})
        print(f"{arch!s:30s} {median:12.1f} {predicted.total_ms:13.1f} {ratio:10.3f} "
              f"{100 * spread:12.1f}%")

    errors = np.abs(np.array([r["ratio"] for r in results]) - 1.0)
    rank = _spearman([r["measured_tokens_per_s"] for r in results],
                     [r["predicted_tokens_per_s"] for r in results])
    summary = {
        "archs": len(results),
        "median_abs_pct_error": float(100 * np.median(errors)),
        "share_within_10pct": float(np.mean(errors <= 0.10)),
        "max_abs_pct_error": float(100 * errors.max()),
        "tokens_per_s_spearman": rank,
        "median_round_spread_pct": float(100 * np.median(
            [max(r["rounds_ms"]) / min(r["rounds_ms"]) - 1.0 for r in results])),
        "seconds": time.perf_counter() - start,
    }
    print(f"\nheld-out archs: {summary['archs']}; median |error| "
          f"{summary['median_abs_pct_error']:.1f}% (target <= 5%); within +-10%: "
          f"{100 * summary['share_within_10pct']:.0f}% (target >= 90%); max "
          f"{summary['max_abs_pct_error']:.1f}%; tokens/s rank correlation {rank:.3f}; "
          f"measurement spread between rounds (median) "
          f"{summary['median_round_spread_pct']:.1f}%; {summary['seconds']:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "archs": results},
                                              indent=2) + "\n")
    return 0


def _spearman(a: list[float], b: list[float]) -> float:
    ranks_a = np.argsort(np.argsort(a))
    ranks_b = np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


if __name__ == "__main__":
    sys.exit(main())
