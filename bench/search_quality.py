"""Does plsearch's default search find the best model that meets the budget?

Side by side in one run, on the built-in parent, for each budget and seed:

    default   `plsearch search` as shipped (feasible-only proposals, budget band first, the
              KD ladder with promotion within speed bins), --trials candidates built;
    random    feasible archs drawn uniformly, each fully evaluated;
    largest   the feasible archs with the most parameters first, each fully evaluated.

Every method gets the same number of full evaluations (top-rung KD and scoring): the
default's count in that run (its extra rung-0 evaluations are the ladder's cost, and are
printed). Every evaluation is the real one (prune, KD, lm-eval); an arch evaluated once
for a seed is reused by every method and budget of that seed (it is the same computation).
For each budget and method, averaged over seeds, it prints:

    winner     what `export --best-for` hands over: the best objective among the method's
               full evaluations whose measured speed-up reaches the budget (measured best
               first; the same rule for every method), with its 95% interval
    share      the winner's weighted task score over the parent's (same scoring)
    speed-up   the winner's measured tokens/s over the parent's (both timed here, alternately)
    hv         hypervolume of the full evaluations' front, (objective, predicted tokens/s)
               above (0, budget)
    /random    each of those over random's

and whether the default's winner is separated from each baseline's (95% intervals).

    .venv/bin/python bench/search_quality.py                     # 3 budgets x 3 seeds, --trials 8
    .venv/bin/python bench/search_quality.py --budgets 1.5x --seeds 0 1 2 --trials 6

Cost: each full evaluation is one candidate's top-rung KD (400 steps in the default ladder)
plus scoring, two to three minutes on a quiet 2-core CPU; a run needs about (unique archs
per seed) x seeds of them. --budgets 1.5x alone took 37 minutes, 1.25x 49 minutes.

The default search screens archs near the budget by timing them before the build, as
shipped; on a busy machine it can refuse every one, and the bench then says so for that
budget and seed and leaves it out of the means (--no-screen turns the screen off).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("default", "random", "largest")


@dataclass
class _Handle:
    """A candidate that is only built when a score is not in the cache."""

    arch: Any
    segments: list[tuple[int, int]] = field(default_factory=list)
    model: Any = None
    steps: int = 0


class CachedPipeline:
    """The real pipeline, with every (arch, KD steps, items) score computed once per seed.

    build/retrain only note what to do; a score missing from the cache builds the
    candidate and replays the KD segments, which computes exactly what the eager pipeline
    computes (same windows, same seeds)."""

    def __init__(self, inner):
        self.inner = inner
        self.recipe = inner.recipe
        self.scores: dict[tuple, Any] = {}
        self.build_kls: dict[Any, tuple[float, float]] = {}
        self.evaluations: dict[tuple, int] = {}
        self._parent = None

    def predict(self, arch):
        return self.inner.predict(arch)

    def num_params(self, arch):
        return self.inner.num_params(arch)

    def build(self, arch):
        return _Handle(arch)

    def _materialize(self, handle: _Handle) -> None:
        if handle.model is None:
            handle.model = self.inner.build(handle.arch)
        for start, end in handle.segments:
            if start >= handle.steps:
                self.inner.retrain(handle.model, start, end)
                handle.steps = end

    def heldout_kl(self, handle: _Handle):
        if handle.arch not in self.build_kls:
            self._materialize(handle)
            self.build_kls[handle.arch] = self.inner.heldout_kl(handle.model)
        return self.build_kls[handle.arch]

    def retrain(self, handle: _Handle, start_step: int, end_step: int, on_step=None):
        from plsearch.search.objective import RetrainResult

        handle.segments.append((start_step, end_step))
        kd = self.inner.space.kd
        return RetrainResult(curve=[], tokens=(end_step - start_step) * kd.batch_size * kd.seq_len,
                             seconds=0.0)

    def score(self, handle: _Handle, rung, on_task=None):
        steps = handle.segments[-1][1] if handle.segments else 0
        key = (handle.arch, steps, rung.limit)
        if key not in self.scores:
            self._materialize(handle)
            self.scores[key] = self.inner.score(handle.model, rung)
        return self.scores[key]

    def save(self, handle, out_dir: Path, meta: dict) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)  # no weights: the bench times the arch
        (out_dir / "plsearch.json").write_text(json.dumps(meta, default=str), encoding="utf-8")
        return out_dir

    def release(self, handle) -> None:
        if handle.model is not None:
            self.inner.release(handle.model)
            handle.model = None

    def parent_score(self):
        if self._parent is None:
            self._parent = self.inner.parent_score()
        return self._parent

    def full_evaluation(self, arch, space):
        """(objective, stderr, accuracy) of ``arch`` at the top rung, as the search scores it."""
        from plsearch.search.scoring import objective_value

        handle = self.build(arch)
        steps = 0
        for rung in space.ladder.rungs:
            self.retrain(handle, steps, rung.kd_steps)
            steps = rung.kd_steps
        top = space.ladder.rungs[-1]
        try:
            scored = self.score(handle, top)
        finally:
            self.release(handle)
        value, se = objective_value(scored.accuracy, scored.accuracy_stderr, scored.kl,
                                    scored.kl_stderr, space.objective.kl_weight)
        return value, se, scored.accuracy


def run_default(budget: str, seed: int, trials: int, workdir: Path, factory, where: dict, *,
                screen: bool = True):
    """The shipped search; returns the records of its full evaluations and its trial count."""
    from plsearch.search.run import SearchOptions, run_search
    from plsearch.search.study import load_existing_study, storage_url
    from plsearch.search.verify import fully_evaluated

    out = workdir / f"default-{budget}-{seed}"
    opts = SearchOptions(budget=budget, trials=trials, out=str(out), study="q", seed=seed,
                         verify=False, screen=screen, command="bench/search_quality.py",
                         **where)
    run_search(opts, pipeline_factory=factory)
    study = load_existing_study(storage_url(None, out), "q")
    return fully_evaluated(study), len(study.get_trials())


def measure_speedup(arch, pipeline, profile, cache: dict, pairs: int = 10) -> float:
    """Measured speed-up of ``arch`` (pruned from the parent, no KD: speed does not depend
    on the weights) over the parent, one generation call each in turn."""
    from plsearch.latency.engine import measure_beside

    if arch in cache:
        return cache[arch]
    model = pipeline.inner.build(arch)
    cache[arch] = measure_beside(model, pipeline.inner.parent, profile, pairs=pairs).speedup
    pipeline.inner.release(model)
    pipeline.inner.parent.to(pipeline.inner.device)
    return cache[arch]


def pick_winner(evaluated, budget: float, pipeline, profile, cache: dict):
    """What `export --best-for` would hand over: the best objective among the evaluations
    whose measured speed-up (beside the parent) reaches ``budget``, measured best first.
    Returns (evaluation, its speed-up, how many better ones measured below the budget); when
    none reaches it, the best one with its speed-up (the row says so)."""
    ranked = sorted(evaluated, key=lambda e: -e[1])
    for below, entry in enumerate(ranked):
        speedup = measure_speedup(entry[0], pipeline, profile, cache)
        if speedup >= budget:
            return entry, speedup, below
    return ranked[0], measure_speedup(ranked[0][0], pipeline, profile, cache), len(ranked)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", nargs="+", default=["1.25x", "1.5x", "2x"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--trials", type=int, default=8, help="candidates the default search builds")
    p.add_argument("--latency-db", help="latency table (default: this machine's)")
    p.add_argument("--model", help="parent folder (default: the built-in parent)")
    p.add_argument("--space", help="search space (default: the shipped default)")
    p.add_argument("--device-profile", default="cpu")
    p.add_argument("--workdir", type=Path, help="keep the run folders here")
    p.add_argument("--no-screen", dest="screen", action="store_false",
                   help="the default search builds without timing archs first")
    args = p.parse_args(argv)
    if len(args.seeds) < 3:
        p.error("use at least 3 seeds")
    os.environ.setdefault("TQDM_DISABLE", "1")

    import logging

    import optuna

    from plsearch.search.pareto import hypervolume_2d
    from plsearch.search.pipeline import load_pipeline
    from plsearch.search.run import SearchOptions, plan_search
    from plsearch.search.scoring import interval, separated

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="plsearch-quality-"))
    print(f"search quality on the built-in parent: budgets {args.budgets}, seeds {args.seeds}, "
          f"default builds {args.trials} candidates; baselines get as many full evaluations "
          "as the default made", flush=True)
    started = time.perf_counter()
    rows: list[dict] = []
    where = {"model": args.model, "space": args.space, "device_profile": args.device_profile,
             "latency_db": args.latency_db}
    for seed in args.seeds:
        plan0 = plan_search(SearchOptions(budget=args.budgets[0], seed=seed, **where))
        pipeline = CachedPipeline(load_pipeline(plan0.model_dir, plan0.space, plan0.profile,
                                                plan0.latency, seed=seed))
        parent = pipeline.parent_score()
        speedups: dict = {}

        def factory(model_dir, space, profile, latency, *, seed=seed, pipeline=pipeline):
            return pipeline

        for budget in args.budgets:
            plan = plan_search(SearchOptions(budget=budget, seed=seed, **where))
            space, feasible = plan.space, plan.feasible
            done, proposed = run_default(budget, seed, args.trials, workdir, factory, where,
                                         screen=args.screen)
            n_full = len(done)
            if not n_full:
                print(f"  {budget:>6s} seed {seed} default made no full evaluation in "
                      f"{proposed} trials (the screen timed every arch below the budget?); "
                      "left out", flush=True)
                continue
            results = {"default": [(r.arch, r.objective, r.objective_stderr, r.accuracy,
                                    r.predicted_tokens_per_s) for r in done]}
            # its own stream: Random(seed) is the default search's first draw as well
            rng = random.Random(f"random-baseline-{seed}")
            picks = {"random": rng.sample(list(feasible.archs), min(n_full, len(feasible.archs))),
                     "largest": feasible.largest_first()[:n_full]}
            for method, archs in picks.items():
                results[method] = []
                for arch in archs:
                    value, se, acc = pipeline.full_evaluation(arch, space)
                    results[method].append((arch, value, se, acc, pipeline.predict(arch)))
            for method in METHODS:
                evaluated = results[method]
                best, speedup, below = pick_winner(evaluated, plan.budget.value, pipeline,
                                                   plan.profile, speedups)
                hv = hypervolume_2d([(e[1], e[4]) for e in evaluated], (0.0, plan.need))
                row = {"budget": budget, "seed": seed, "method": method, "full": len(evaluated),
                       "arch": str(best[0]), "objective": best[1], "objective_se": best[2],
                       "share": best[3] / parent.accuracy if parent.accuracy else float("nan"),
                       "speedup": speedup, "below": below, "meets": speedup >= plan.budget.value,
                       "hv": hv, "proposed": proposed if method == "default" else len(evaluated)}
                rows.append(row)
                ci = interval(row["objective"], row["objective_se"])
                spread = f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
                print(f"  {budget:>6s} seed {seed} {method:8s} full evals {row['full']:2d}  "
                      f"winner {row['arch']:32s} objective {row['objective']:.4f}{spread}  "
                      f"share {row['share']:.1%}  speed-up {row['speedup']:.2f}x"
                      f"{'' if row['meets'] else ' (BELOW THE BUDGET: none met it)'}  "
                      f"hv {row['hv']:.2f}  (better ones measured below the budget: "
                      f"{row['below']})  ({(time.perf_counter() - started) / 60:.0f} min)",
                      flush=True)
            default = next(r for r in rows[-3:] if r["method"] == "default")
            for other in rows[-3:]:
                if other is default:
                    continue
                apart = separated(default["objective"], default["objective_se"],
                                  other["objective"], other["objective_se"])
                verdict = ("intervals separate" if apart else "intervals overlap: not told apart")
                print(f"         default vs {other['method']}: {verdict}")

    print(f"\nmeans over seeds {args.seeds} (parent score {parent.accuracy:.4f} at the top "
          "rung's items):")
    for budget in args.budgets:
        base = [r for r in rows if r["budget"] == budget and r["method"] == "random"]
        if not base:
            print(f"  {budget:>6s} no seed made a full evaluation")
            continue
        if len(base) < len(args.seeds):
            print(f"  {budget:>6s} over {len(base)} of {len(args.seeds)} seeds")
        base_obj = statistics.mean(r["objective"] for r in base)
        base_hv = statistics.mean(r["hv"] for r in base)
        base_speed = statistics.mean(r["speedup"] for r in base)
        for method in METHODS:
            mine = [r for r in rows if r["budget"] == budget and r["method"] == method]
            obj = statistics.mean(r["objective"] for r in mine)
            se = statistics.mean(r["objective_se"] or 0.0 for r in mine)
            share = statistics.mean(r["share"] for r in mine)
            speed = statistics.mean(r["speedup"] for r in mine)
            hv = statistics.mean(r["hv"] for r in mine)
            meets = sum(r["meets"] for r in mine)
            print(f"  {budget:>6s} {method:8s} winner objective {obj:.4f} +- {1.96 * se:.4f}  "
                  f"share {share:.1%}  measured speed-up {speed:.2f}x (meets the budget in "
                  f"{meets} of {len(mine)})  hv {hv:.2f}  "
                  f"| /random: objective {obj / base_obj:.3f}  hv "
                  f"{hv / base_hv if base_hv else float('nan'):.3f}  speed-up "
                  f"{speed / base_speed:.3f}")
    print(f"total {(time.perf_counter() - started) / 60:.0f} min; run folders in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
