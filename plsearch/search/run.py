"""run_search: everything `plsearch search` does, in order, with nothing printed.

1. Read the budget, the space, the device profile and the parent's config; snap the
   space to the device; load the device's latency table (it must describe this device)
   and fit the predictor; fail at once when no arch of the space can meet the budget.
2. Open (or resume) the study; a resumed study must have been started with the same
   parent, budget, space and device. Trials a killed process left RUNNING are failed and
   their arches queued again.
3. Load the parent and what every trial shares; score the parent once.
4. Rank the budget band, then the faster speeds, by the held-out KL right after the
   build (band.py), and run trials until ``trials`` candidates have been built (arches
   that miss the budget are recorded but not built, and do not count), or the timeout
   passes. Near the budget an arch is timed before it is built (screening.py). The
   timeout counts from the search's start; the ranking stops early when it
   has used its share of it (RANKING_SHARES), so the trials keep the larger part; once
   it has passed, the trial in flight climbs no further rung (objective.py).
5. Measure the Pareto-front candidates end to end (verify.py), write trials.csv and
   run.json into the run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from plsearch import atomic, distributed
from plsearch.errors import ConfigError
from plsearch.search.objective import BAND_WIDTH, built_count
from plsearch.search.record import TrialRecord, write_trials_csv
from plsearch.search.screening import make_screener
from plsearch.search.screening import refinement as latency_refinement
from plsearch.search.study import warnings_silenced

__all__ = [
    "SearchOptions",
    "SearchPlan",
    "SearchSummary",
    "built_count",
    "plan_search",
    "run_search",
]

logger = logging.getLogger(__name__)

IDENTITY_ATTRS = ("parent_weights_hash", "budget_spec", "space", "device_profile")

# With --timeout, the band ranking stops probing once this share of it has passed since
# the search's start (loading and scoring the parent included), the spread's once the
# second share has: on a slow host (or a large band) trials keep at least 60%.
RANKING_SHARES = (0.3, 0.4)


@dataclass(frozen=True)
class SearchOptions:
    """The resolved arguments of one `plsearch search` invocation."""

    budget: str
    model: str | None = None  # None: the built-in parent
    # YAML path or shipped name; None: configs/search/default.yaml; a mapping: the space
    # itself (a run file's inline space, a replayed run.json's)
    space: str | dict | None = None
    device_profile: str = "cpu"
    latency_db: str | None = None
    trials: int = 12  # candidates built (arches that miss the budget do not count)
    timeout: float | None = None  # seconds from the start after which no new trial starts
    storage: str | None = None  # None: sqlite in the run folder
    study: str | None = None  # None: <space name>-<budget>
    out: str | None = None  # None: reports/<study>
    artifacts: str | None = None  # None: <out>/candidates
    sampler: str = "gp"
    seed: int = 0
    verify: bool = True
    # Time archs near the budget before building them (issue 13); off only where a run must
    # not depend on timings (a 1-rank vs 2-rank comparison).
    screen: bool = True
    # A screened arch is built only when its measurement clears the budget by this much
    # (relative; plsearch.latency.screen): verification times it again and must show the
    # budget itself. 0: most of the budget band lies within a few % of the budget.
    headroom: float = 0.0
    command: str = ""
    # Shared storages: seconds between heartbeats, and without one before a trial is
    # declared dead and its arch queued again.
    heartbeat_interval: int = 30
    grace_period: int = 120


@dataclass
class SearchSummary:
    study_name: str
    storage: str  # password redacted
    url: str  # the storage URL as given (may hold a password: never print it)
    run_dir: Path
    budget_tokens_per_s: float
    parent_tokens_per_s: float
    built: int
    infeasible: int
    failed: int
    front: list[int]
    verification: dict[str, Any] = field(default_factory=dict)
    recovered: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _path_safe(name: str) -> str:
    """``name`` as one harmless path component (a space named ../../x stays in reports/)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip(".-") or "study"


def default_study_name(space_name: str, budget_spec: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9.]+", "", budget_spec.replace("/", "per"))
    return f"{space_name}-{slug}"


@dataclass
class SearchPlan:
    """Step 1's result: everything resolved and checked before any weight is read."""

    budget: Any  # Budget
    space: Any  # SearchSpace
    profile: Any  # DeviceProfile
    model_dir: Path
    parent_arch: Any  # ArchConfig
    parent_params: int
    grid: Any  # SearchGrid
    latency: Any  # pipeline.Latency (or a fake with the same methods)
    parent_tokens_per_s: float
    need: float  # the budget in tokens/s
    fastest: tuple[float, Any]  # (tokens/s, arch) of the fastest arch in the grid
    feasible: Any = None  # proposals.FeasibleSet: the archs that meet the budget


def plan_search(opts: SearchOptions, latency=None) -> SearchPlan:
    """Read and check the budget, space, profile, parent config and latency table."""
    from plsearch.config import load_device_profile
    from plsearch.families import get_family
    from plsearch.models import check_weights, read_config, resolve_model_dir
    from plsearch.search.budget import check_reachable, parse_budget
    from plsearch.search.pipeline import load_latency
    from plsearch.search.proposals import feasible_set
    from plsearch.search.space import load_space
    from plsearch.search.study import SAMPLERS

    if opts.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {opts.trials}")
    if opts.timeout is not None and not opts.timeout > 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, got {opts.timeout}")
    if not 0 <= opts.headroom < 1:
        raise ConfigError(f"--headroom must be a fraction from 0 to below 1 (0.03: 3%), got "
                          f"{opts.headroom}")
    if opts.sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {opts.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    budget = parse_budget(opts.budget)
    space = load_space(opts.space)
    profile = load_device_profile(opts.device_profile)
    model_dir = resolve_model_dir(opts.model)
    config = read_config(model_dir)
    check_weights(model_dir)  # a truncated file: one line before the study is opened
    family = get_family(config)
    parent_arch = family.arch_from_config(config)
    grid = space.resolve(parent_arch, profile.alignment)
    if latency is None:
        latency = load_latency(profile, opts.latency_db, profile_name=opts.device_profile,
                               space=None if isinstance(opts.space, dict)
                               else opts.space or "configs/search/default.yaml",
                               parent_config=config)
    parent_tps = latency.tokens_per_s(parent_arch, profile)
    latency = latency.for_recipe(space.recipe)  # candidates as the recipe builds them

    def predict(arch) -> float:
        return latency.tokens_per_s(arch, profile)

    need = budget.tokens_per_s(parent_tps)
    best_tps, best_arch = fastest_arch(grid, predict, seed=opts.seed)
    check_reachable(budget, need, best_tps, best_arch, parent_tps)
    traits = family.traits(config)
    feasible = feasible_set(grid, predict, need, lambda arch: arch.num_params(traits),
                            seed=opts.seed)
    if not feasible.archs:  # a huge grid whose sample missed the few feasible archs
        feasible = dataclasses.replace(feasible, archs=(best_arch,), tokens_per_s=(best_tps,),
                                       params=(best_arch.num_params(traits),))
    return SearchPlan(budget=budget, space=space, profile=profile, model_dir=model_dir,
                      parent_arch=parent_arch, parent_params=parent_arch.num_params(traits),
                      grid=grid, latency=latency, parent_tokens_per_s=parent_tps, need=need,
                      fastest=(best_tps, best_arch), feasible=feasible)


def run_search(opts: SearchOptions, on_trial: Callable[[FrozenTrial], None] | None = None,
               on_stage: Callable[[str], None] | None = None, *, latency=None,
               pipeline_factory: Callable | None = None,
               on_progress: Callable[[str], None] | None = None) -> SearchSummary | None:
    """Run (or resume, or join) a search; see the module docstring for the steps.

    ``on_trial(frozen_trial)`` is called after every trial, ``on_stage(message)`` at each
    step, ``on_progress(message)`` during a trial (its stage: build, KD step k of n, the
    task being evaluated; and the search's ETA), at most every few seconds.
    ``latency`` and ``pipeline_factory`` replace the device's latency table and the
    model pipeline (tests and benches use fast fakes; see plsearch/search/testing.py).
    Under torchrun, ranks > 0 only mirror rank 0's model calls and return None.
    """
    from plsearch.search import study as st
    from plsearch.search.objective import make_objective
    from plsearch.search.pipeline import load_pipeline
    from plsearch.search.proposals import FeasibleSampler

    stage = on_stage or (lambda message: None)
    started = time.perf_counter()
    clock = time.monotonic()  # what --timeout counts from

    def past(share: float) -> Callable[[], bool] | None:
        """True once ``share`` of the timeout has passed (None: no timeout)."""
        if opts.timeout is None:
            return None
        return lambda: time.monotonic() - clock >= share * opts.timeout
    plan = plan_search(opts, latency)  # 1.
    if not distributed.is_main():  # torchrun ranks > 0: rank 0's model calls, no Optuna
        factory = pipeline_factory or load_pipeline
        distributed.follow(factory(plan.model_dir, plan.space, plan.profile, plan.latency,
                                   seed=opts.seed))
        distributed.shutdown()
        return None
    name = opts.study or default_study_name(plan.space.name, plan.budget.spec)
    run_dir = Path(opts.out or Path("reports") / _path_safe(name))
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run {run_dir} is a file; pass a folder for the run")
    url = st.storage_url(opts.storage, run_dir)
    artifacts = Path(opts.artifacts or run_dir / "candidates").resolve()
    lock = (st.local_locks(run_dir, url, name) if not st.is_shared(url)
            else contextlib.nullcontext())
    with lock:
        run_dir.mkdir(parents=True, exist_ok=True)
        artifacts.mkdir(parents=True, exist_ok=True)
        # 2. the study
        stage(f"study {name} in {st._redact(url)}")
        stage(f"budget {plan.budget.spec} = {plan.need:,.0f} tokens/s predicted (parent "
              f"{plan.parent_tokens_per_s:,.0f}): {plan.feasible.describe()}")
        sampler = FeasibleSampler(st.make_sampler(opts.sampler, opts.seed, opts.trials),
                                  plan.grid, plan.feasible, seed=opts.seed,
                                  speed_bins=plan.space.ladder.speed_bins)
        study = st.open_study(url, name, sampler, opts.heartbeat_interval, opts.grace_period)
        try:
            attrs = _record_study(study, plan, opts, name, run_dir, artifacts)
        except _FailedStart as start:  # never completed a trial: start it over
            stage(f"study {name} was started with another {start} but never completed a "
                  "trial; starting it again")
            optuna.delete_study(study_name=name, storage=st.open_storage(url))
            study = st.open_study(url, name, sampler, opts.heartbeat_interval,
                                  opts.grace_period)
            attrs = _record_study(study, plan, opts, name, run_dir, artifacts)
        recovered = [] if st.is_shared(url) else st.recover_stale_trials(study)
        _remove_partial_candidates(artifacts)

        # 3. the parent and the shared data
        stage("loading the parent, importance scores and KD data")
        factory = pipeline_factory or load_pipeline
        pipeline = factory(plan.model_dir, plan.space, plan.profile, plan.latency, seed=opts.seed)
        pipeline = distributed.lead(pipeline)  # torchrun: every rank mirrors the model calls
        if "parent_accuracy" not in study.user_attrs:
            stage("scoring the parent")
            parent_score = pipeline.parent_score()
            study.set_user_attr("parent_accuracy", parent_score.accuracy)
            study.set_user_attr("parent_accuracy_stderr", parent_score.accuracy_stderr)
            study.set_user_attr("parent_perplexity", parent_score.perplexity)
            study.set_user_attr("parent_scores", parent_score.scores)
        band_stop, spread_stop = (past(share) for share in RANKING_SHARES)
        _propose_band_first(sampler, plan, pipeline, study, opts.seed, stage, on_progress,
                            band_stop)
        _propose_spread(sampler, plan, pipeline, study, stage, on_progress, spread_stop)
        eta = _Eta(study, opts.trials, on_progress)
        objective = make_objective(pipeline, plan.grid, plan.space, plan.need, artifacts,
                                   feasible=plan.feasible, progress=eta.say,
                                   screen=make_screener(plan, study, sampler.narrow, stage,
                                                        opts.headroom)
                                   if opts.screen else None,
                                   candidate_meta={
            "parent": attrs["parent"], "parent_arch": plan.parent_arch.to_dict(),
            "study": name, "device_profile": plan.profile.name,
            "parent_tokens_per_s": plan.parent_tokens_per_s,
            "device_fingerprint": plan.latency.fingerprint, "budget": attrs["budget"]},
                                   max_built=opts.trials, stop=past(1.0))

        # 4. trials
        stage(f"searching: {opts.trials} candidates, budget {plan.budget.spec} = "
              f"{plan.need:,.0f} tokens/s predicted (parent {plan.parent_tokens_per_s:,.0f})"
              + (f"; an arch timed near it is built only when it clears it by "
                 f"{opts.headroom:.0%} (--headroom)" if opts.screen and opts.headroom else ""))
        eta.start()
        _optimize(study, objective, opts, on_trial, sampler, start=clock)
        distributed.stop_followers(pipeline)
        distributed.shutdown()  # the rest (verification, outputs) is rank 0's alone
        del pipeline  # frees the parent before candidates are measured

        # 5. verification and outputs
        verification, front = _finish(study, plan, opts, name, url, run_dir, stage)
    trials = study.get_trials(deepcopy=False)
    return SearchSummary(
        study_name=name, storage=st._redact(url), url=url, run_dir=run_dir,
        budget_tokens_per_s=plan.need, parent_tokens_per_s=plan.parent_tokens_per_s,
        built=built_count(trials) - _failed_builds(trials),
        infeasible=sum(1 for t in trials if TrialRecord.from_trial(t).feasible is False),
        failed=sum(1 for t in trials if t.state == TrialState.FAIL), front=front,
        verification=verification, recovered=recovered,
        seconds=time.perf_counter() - started)


def _propose_band_first(sampler, plan: SearchPlan, pipeline, study: optuna.Study, seed: int,
                        stage: Callable[[str], None], progress, stop=None) -> None:
    """Queue the budget band's best archs (band.py) ahead of the sampler; the build KLs
    are kept in the study's ``band_order`` attribute, so a resumed study measures none
    again."""
    from plsearch.search.band import band_order

    ladder = plan.space.ladder
    band = plan.feasible.band()
    count = min(ladder.band_first, len(band))
    if not count:
        return
    known = study.user_attrs.get("band_order", [])
    planned = min(ladder.band_probe, len(band))
    if ladder.band_rank == "build_kl" and len(known) < planned:
        stage(f"ranking the budget band ({len(band)} archs) by the held-out KL right after "
              f"the build ({planned} to measure)")
    order = band_order(pipeline, band, rank=ladder.band_rank, probe=ladder.band_probe,
                       seed=seed, progress=_every(progress, 5.0), known=known, stop=stop)
    if order.build_kl and len(order.build_kl) > len(known):
        study.set_user_attr("band_order", order.to_attr())
    if ladder.band_rank == "build_kl" and _cut(order.build_kl, planned, stop):
        stage(f"the band ranking stopped after {len(order.build_kl)} of {planned} archs: it "
              f"may use {RANKING_SHARES[0]:.0%} of --timeout (an even sample of the band's "
              "sizes was measured; a resumed search measures the rest)")
    sampler.propose_first(order.archs, count)
    stage(f"proposed first: {order.describe(count)}; the next ones in the place of any the "
          "timing check refuses")


def _propose_spread(sampler, plan: SearchPlan, pipeline, study: optuna.Study,
                    stage: Callable[[str], None], progress, stop=None) -> None:
    """Queue, after the band, archs of the faster speed bins spread over their speeds
    (band.spread_order), so the front reaches the fast end with capable shapes; the build
    KLs are kept in the study's ``spread_kl`` attribute for a resumed study."""
    from plsearch.search.band import spread_order

    ladder, feasible = plan.space.ladder, plan.feasible
    edges = feasible.bin_edges(ladder.speed_bins)
    floor = edges[0] if edges else feasible.need * (1 + BAND_WIDTH)
    rows = [(a, t) for a, t in zip(feasible.archs, feasible.tokens_per_s) if t >= floor]
    if not ladder.spread_first or not rows:
        return
    known = study.user_attrs.get("spread_kl", [])
    probe = min(ladder.spread_probe, len(rows))
    if len(known) < probe:
        stage(f"spreading the front: the held-out KL right after the build of {probe} of the "
              f"{len(rows)} archs faster than {floor:,.0f} tokens/s")
    speed_bin = feasible.binner(ladder.speed_bins)
    order = spread_order(pipeline, [a for a, _ in rows], [t for _, t in rows],
                         [speed_bin(t) for _, t in rows],
                         count=ladder.spread_first, probe=ladder.spread_probe,
                         progress=_every(progress, 5.0), known=known, stop=stop)
    if len(order.build_kl) > len(known):
        study.set_user_attr("spread_kl", order.to_attr())
    if _cut(order.build_kl, probe, stop):
        stage(f"the spread's probe stopped after {len(order.build_kl)} of {probe} archs: "
              f"the ranking may use {RANKING_SHARES[1]:.0%} of --timeout")
    sampler.propose_then(order.archs)
    stage(f"proposed next, spread over the faster speeds: {order.describe(dict(rows))}")


def _cut(measured: dict, planned: int, stop) -> bool:
    """Whether a probe stopped for time before measuring its ``planned`` archs."""
    return stop is not None and len(measured) < planned and stop()


def _every(sink: Callable[[str], None] | None, seconds: float):
    """``sink``, passing on at most one message every ``seconds`` (None stays None)."""
    if sink is None:
        return None
    last = [-math.inf]

    def say(message: str) -> None:
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            sink(message)

    return say


def _failed_builds(trials) -> int:
    """Trials built_count counts (they used up the trial budget) that failed on their own."""
    from plsearch.search.study import dead_trials

    dead = dead_trials(trials)
    records = {t.number: TrialRecord.from_trial(t) for t in trials}
    return sum(1 for t in trials if t.state == TrialState.FAIL and records[t.number].feasible
               and records[t.number].duplicate_of is None and not records[t.number].surplus
               and t.number not in dead)


def _record_study(study: optuna.Study, plan: SearchPlan, opts: SearchOptions, name: str,
                  run_dir: Path, artifacts: Path) -> dict[str, Any]:
    """Check a resumed study continues the same search; write the study attributes."""
    from plsearch.models import weights_hash

    identity = {
        "parent_weights_hash": weights_hash(plan.model_dir),
        "budget_spec": plan.budget.spec,
        "space": json.loads(json.dumps(plan.space.to_dict())),
        "device_profile": json.loads(json.dumps(asdict(plan.profile))),
    }
    from plsearch.search.study import is_shared, storage_url

    _check_identity(study, identity, name,
                    local=not is_shared(storage_url(opts.storage, run_dir)))
    attrs = {
        **identity,
        "parent": "builtin" if opts.model in (None, "builtin") else str(plan.model_dir),
        "parent_arch": plan.parent_arch.to_dict(),
        "parent_params": plan.parent_params,
        "parent_tokens_per_s": plan.parent_tokens_per_s,
        "budget": plan.budget.to_dict(plan.parent_tokens_per_s),
        "workload": asdict(plan.profile.workload),
        "device_fingerprint": plan.latency.fingerprint,
        "latency_db": str(plan.latency.table_path),
        "latency_validation": plan.latency.validation,
        "sampler": opts.sampler,
        "seed": opts.seed,
        "versions": versions(),
        "command": opts.command,
        "grid": plan.grid.to_dict(),
        "run_dir": str(run_dir.resolve()),
        "artifacts": str(artifacts),
    }
    existing = study.user_attrs
    for key, value in attrs.items():
        if key in ("sampler", "seed", "command") and key in existing:
            continue  # a resumed or joining worker keeps the first run's record
        if existing.get(key) != value:
            study.set_user_attr(key, value)
    return attrs


def _finish(study, plan: SearchPlan, opts: SearchOptions, name: str, url: str, run_dir: Path,
            stage) -> tuple[dict[str, Any], list[int]]:
    """Verify the front, then write trials.csv and run.json."""
    from plsearch.search.study import _redact
    from plsearch.search.verify import pareto_front, verify_front

    verification: dict[str, Any] = {}
    if opts.verify and plan.latency.local:
        stage("measuring the Pareto-front candidates end to end")
        verification = verify_front(study, plan.profile, plan.model_dir)
    elif opts.verify:
        verification = {"skipped": f"the {plan.profile.kind} device is not on this machine"}
    front = [t.number for t in pareto_front(study)]
    study.set_user_attr("pareto_front", front)
    refinement = latency_refinement(study)
    if refinement is not None:
        study.set_user_attr("latency_refinement", refinement)
        verification = {**verification, "refinement": refinement}
    write_trials_csv(study, run_dir / "trials.csv")
    best_tps, best_arch = plan.fastest
    _write_json(run_dir / "run.json", {
        "options": {**asdict(opts), "storage": _redact(opts.storage) if opts.storage else None},
        "study": name, "storage": _redact(url),
        "space": plan.space.to_dict(), "grid": plan.grid.to_dict(),
        "device_profile": asdict(plan.profile), "latency": plan.latency.to_dict(),
        "budget": plan.budget.to_dict(plan.parent_tokens_per_s),
        "parent_tokens_per_s": plan.parent_tokens_per_s,
        "fastest_arch": {"arch": best_arch.to_dict(), "tokens_per_s": best_tps},
        "versions": versions()})
    return verification, front


def fastest_arch(grid, predict, seed: int = 0, limit: int = 5000):
    """(tokens/s, arch) of the fastest arch in the grid (a sample of it when it is huge)."""
    if grid.size() <= limit:
        archs = list(grid.archs())
    else:
        rng = random.Random(seed)
        archs = [grid.smallest()] + [
            grid.arch({name: rng.choice(values) for name, values in grid.values.items()})
            for _ in range(limit)]
    best = max(archs, key=predict)
    return predict(best), best


def _optimize(study: optuna.Study, objective, opts: SearchOptions, on_trial,
              sampler=None, start: float | None = None) -> None:
    """One trial at a time until enough candidates were built (by every worker together),
    or until the sampler has no arch left that meets the budget as measured, or until
    ``opts.timeout`` seconds have passed since ``start`` (time.monotonic; default now)."""
    start = time.monotonic() if start is None else start
    max_infeasible = max(20, 5 * opts.trials)
    callbacks = [lambda s, t: on_trial(t)] if on_trial else []
    while True:
        # A dead worker's trial still RUNNING would count as built: fail it (and requeue its
        # arch, through the heartbeat callback) before counting. No-op without heartbeats.
        with warnings_silenced():  # fail_stale_trials is "experimental" in Optuna
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        if built_count(trials) >= opts.trials or getattr(sampler, "exhausted", False):
            break
        if opts.timeout is not None and time.monotonic() - start >= opts.timeout:
            logger.warning("timeout: no new trial after %.0f s", opts.timeout)
            break
        records = [TrialRecord.from_trial(t) for t in trials]
        infeasible = sum(1 for r in records if r.feasible is False)
        if infeasible >= max_infeasible:  # the pre-build check (or a hand-queued trial)
            logger.warning("%d proposed arches were found below the budget before their build "
                           "(measured or refined prediction); stopping", infeasible)
            break
        repeats = sum(1 for r in records if r.duplicate_of is not None)
        if repeats >= max_infeasible:
            logger.warning("the sampler re-proposed %d already evaluated arches; the space "
                           "looks exhausted, stopping", repeats)
            break
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)


class _FailedStart(Exception):
    """A study with other settings but no completed trial: it may be started over."""


def _check_identity(study: optuna.Study, identity: dict[str, Any], name: str,
                    local: bool = True) -> None:
    """A resumed study must continue the same search, unless it never completed a trial
    (a start that failed: a typo in the space, truncated weights) and no worker is in one.
    ``local``: the storage is a local SQLite file whose lock this process holds, so its
    RUNNING trials are dead ones."""
    attrs = study.user_attrs
    if "budget_spec" not in attrs:
        return
    differ = [key for key in IDENTITY_ATTRS if key in attrs and attrs[key] != identity[key]]
    if differ:
        what = ", ".join(k.replace("_", " ") for k in differ)
        busy = (TrialState.COMPLETE,) if local else (TrialState.COMPLETE, TrialState.RUNNING)
        if not study.get_trials(deepcopy=False, states=busy):
            raise _FailedStart(what)
        raise ConfigError(f"study {name!r} was started with another {what}; rerun with the "
                          "same settings to resume it, or choose a new --study or --out")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("plsearch", "torch", "transformers", "optuna", "lm_eval", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package.replace("_", "-") if package == "lm_eval" else package)
    return out


def _remove_partial_candidates(artifacts: Path) -> None:
    """Temporary candidate folders a killed process left behind."""
    import shutil

    for tmp in artifacts.glob(".trial-*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


def _write_json(path: Path, data: Any) -> None:
    atomic.write_text(path, json.dumps(data, indent=2, default=str) + "\n")


class _Eta:
    """Trial stages with the search's ETA, passed on at most every ``every`` seconds
    (and at once when the stage changes: build, a new rung, a new task)."""

    def __init__(self, study: optuna.Study, target: int,
                 sink: Callable[[str], None] | None, every: float = 5.0):
        self.study, self.target, self.sink, self.every = study, target, sink, every
        self.started = time.monotonic()
        self.done_before = 0
        self.last_time, self.last_kind = 0.0, ""

    def start(self) -> None:
        self.started = time.monotonic()
        self.done_before = built_count([t for t in self.study.get_trials(deepcopy=False)
                                        if t.state != TrialState.RUNNING])

    def eta_seconds(self) -> float | None:
        """Seconds left: the mean time per candidate built in this run, times those left."""
        trials = self.study.get_trials(deepcopy=False)
        finished = built_count([t for t in trials if t.state != TrialState.RUNNING])
        done = finished - self.done_before
        if done <= 0:
            return None
        per = (time.monotonic() - self.started) / done
        return max(0.0, per * (self.target - finished))

    def say(self, message: str) -> None:
        if self.sink is None:
            return
        kind = re.sub(r"KD step \d+", "KD step", message)
        now = time.monotonic()
        if kind == self.last_kind and now - self.last_time < self.every:
            return
        self.last_time, self.last_kind = now, kind
        eta = self.eta_seconds()
        tail = (f"; search ETA ~{eta / 60:.1f} min" if eta is not None
                else "; search ETA known after the first candidate")
        self.sink(message + tail)
