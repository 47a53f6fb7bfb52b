"""Does the default sampler find a better accuracy/speed front than random sampling?

Side by side in one run: the same search (space, budget, number of candidates, each
fully evaluated: the bench space promotes every candidate to the last rung) with the
default sampler (gp, constraint-aware), with TPE and with random sampling, over the same
seeds (--samplers picks others). For each run, the Pareto hypervolume of the fully
evaluated candidates in (accuracy objective, predicted tokens/s), both maximized,
relative to the reference point (accuracy 0, the budget's tokens/s): the area the front
dominates inside the feasible region. Prints every run, the mean per sampler and the
ratio of each sampler to random.

    .venv/bin/python bench/search_efficiency.py                     # real pipeline, built-in parent
    .venv/bin/python bench/search_efficiency.py --seeds 0 1 2 3 --trials 10
    .venv/bin/python bench/search_efficiency.py --samplers gp random
    .venv/bin/python bench/search_efficiency.py --surrogate         # fast, NOT the real pipeline

By default every trial is real (prune, KD, lm-eval on the built-in parent), with the
tiny budgets of bench/search_efficiency.yaml so the whole bench runs in tens of minutes on
a 2-core CPU. --surrogate replaces models by plsearch.search.testing.FakePipeline
(accuracy a smooth function of size); its numbers say nothing about real searches and are
labeled SURROGATE in the output.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

SPACE = Path(__file__).with_name("search_efficiency.yaml")


def run_one(sampler: str, seed: int, args, workdir: Path, factory, latency) -> dict:
    import optuna

    from plsearch.search.pareto import hypervolume_2d
    from plsearch.search.run import SearchOptions, run_search
    from plsearch.search.study import storage_url
    from plsearch.search.verify import fully_evaluated

    out = workdir / f"{sampler}-{seed}"
    opts = SearchOptions(budget=args.budget, space=str(args.space), device_profile=args.profile,
                         latency_db=args.latency_db, trials=args.trials, out=str(out),
                         study=f"{sampler}-{seed}", sampler=sampler, seed=seed, verify=False,
                         command="bench/search_efficiency.py")
    start = time.perf_counter()
    summary = run_search(opts, latency=latency, pipeline_factory=factory)
    study = optuna.load_study(study_name=opts.study, storage=storage_url(None, out))
    done = fully_evaluated(study)
    points = [(r.objective, r.predicted_tokens_per_s) for r in done]
    reference = (0.0, summary.budget_tokens_per_s)
    trials = study.get_trials()
    return {"sampler": sampler, "seed": seed, "hypervolume": hypervolume_2d(points, reference),
            "full_evaluations": len(done), "built": summary.built,
            "proposed": len(trials), "front": len(summary.front),
            "best_accuracy": max((p[0] for p in points), default=float("nan")),
            "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--trials", type=int, default=8, help="candidates built per run")
    p.add_argument("--budget", default="1.5x")
    p.add_argument("--space", type=Path, default=SPACE)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--latency-db", help="latency table (default: this machine's in latency_db/)")
    p.add_argument("--samplers", nargs="+", default=["gp", "tpe", "random"],
                   help="samplers to compare; the first is the default's, random is the "
                        "baseline every ratio is taken against (default: gp tpe random)")
    p.add_argument("--surrogate", action="store_true",
                   help="fake objective instead of the real pipeline (labeled SURROGATE)")
    p.add_argument("--workdir", type=Path, help="keep the run folders here")
    args = p.parse_args(argv)
    if len(args.seeds) < 3:
        p.error("use at least 3 seeds")
    if "random" not in args.samplers:
        p.error("--samplers must include random (the baseline)")
    os.environ.setdefault("TQDM_DISABLE", "1")  # read when tqdm is imported: before optuna

    import optuna

    from plsearch.search.testing import FakeLatency, fake_pipeline

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    label = "SURROGATE objective (fake pipeline, not real models)" if args.surrogate else \
        "real pipeline (prune + KD + lm-eval on the built-in parent)"
    others = [name for name in args.samplers if name != "random"]
    print(f"search efficiency: {', '.join(others)} vs random, {args.trials} candidates per "
          f"run, seeds {args.seeds}, budget {args.budget}; {label}", flush=True)
    if args.surrogate:
        factory, latency = fake_pipeline, FakeLatency()
    else:
        factory, latency = _shared_real_pipeline(), None

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="plsearch-bench-"))
    rows = []
    for seed in args.seeds:
        for sampler in args.samplers:  # interleaved, so machine drift hits all alike
            row = run_one(sampler, seed, args, workdir, factory, latency)
            rows.append(row)
            print(f"  {sampler:6s} seed {seed}: hypervolume {row['hypervolume']:10.3f}  "
                  f"full evaluations {row['full_evaluations']:2d}  built {row['built']:2d}  "
                  f"proposed {row['proposed']:2d}  front {row['front']}  best accuracy "
                  f"{row['best_accuracy']:.3f}  ({row['seconds']:.0f} s)", flush=True)

    def volumes(name: str) -> list[float]:
        return [r["hypervolume"] for r in rows if r["sampler"] == name]

    for name in args.samplers:
        print(f"mean hypervolume {name}: {statistics.mean(volumes(name)):.3f} "
              f"(sd {statistics.pstdev(volumes(name)):.3f})")
    base = statistics.mean(volumes("random"))
    for name in others:
        ratio = statistics.mean(volumes(name)) / base if base else float("inf")
        wins = sum(a > b for a, b in zip(volumes(name), volumes("random")))
        print(f"ratio {name}/random: {ratio:.3f}  ({name} better on {wins} of "
              f"{len(args.seeds)} seeds){'  [SURROGATE]' if args.surrogate else ''}")
    print(f"run folders: {workdir}")
    return 0


def _shared_real_pipeline():
    """A pipeline_factory that loads the parent once for every run of the bench."""
    from plsearch.search.pipeline import load_pipeline

    cache: dict = {}

    def factory(model_dir, space, profile, latency, *, seed=0):
        key = (str(model_dir), space.source, seed)
        if key not in cache:
            cache[key] = load_pipeline(model_dir, space, profile, latency, seed=seed)
            score = cache[key].parent_score()  # scored once, reused by every run
            cache[key].parent_score = lambda: score
        return cache[key]

    return factory


if __name__ == "__main__":
    sys.exit(main())
