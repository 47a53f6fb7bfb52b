"""One trial: arch -> predicted speed -> build, KD per rung, score (feasible archs only).

    objective = make_objective(pipeline, grid, space, budget_tokens_per_s, candidates_dir,
                               feasible=feasible_set(...), progress=print)
    study.optimize(objective, n_trials=1, catch=(Exception,))

The search's sampler (proposals.FeasibleSampler) proposes only archs that meet the budget.
An arch that misses it anyway (a hand-enqueued trial, a FixedTrial) is never built and
never scored: the trial records ``feasible=False`` and is pruned, so no sampler ever sees a
made-up accuracy. A candidate that fails (out of memory, NaN loss, any error) raises out of
the objective after recording ``fail_reason``; ``optimize(catch=...)`` turns it into a FAIL
trial and the search goes on.

A trial's work is three plain steps, ``build`` -> ``retrain`` -> ``score`` (per rung), all
through a ``Pipeline`` (pipeline.py builds the real one), so the ladder and the record are
tested with a fake in a blink, and a distributed pipeline can stand in for the real one.
Everything a trial stores is one ``TrialRecord`` (record.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from plsearch.arch import ArchConfig
from plsearch.search.ladder import competitors, is_promoted, signal_value
from plsearch.search.record import TrialRecord, write_record
from plsearch.search.scoring import objective_value
from plsearch.search.space import Rung, SearchGrid, SearchSpace

__all__ = ["BAND_WIDTH", "Pipeline", "RetrainResult", "RungScore", "built_count",
           "make_objective"]

logger = logging.getLogger(__name__)

BAND_WIDTH = 0.15  # the budget band: feasible archs at most 15% above the budget


@dataclass(frozen=True)
class RungScore:
    """What scoring a candidate at one rung gave."""

    scores: dict[str, dict[str, float]]  # {task: {metric: value, metric_stderr, samples}}
    accuracy: float  # weighted task score
    perplexity: float  # held-out token perplexity
    seconds: float = 0.0
    accuracy_stderr: float | None = None  # propagated from the tasks' stderr
    kl: float | None = None  # held-out KL(parent || candidate), nats per token
    kl_stderr: float | None = None


@dataclass(frozen=True)
class RetrainResult:
    curve: list[list[float]]  # [step, tokens, kd_loss, ce_loss, lr], steps counted from 0
    tokens: int
    seconds: float


Progress = Callable[[str], None]


class Pipeline(Protocol):
    """What a trial needs from models; pipeline.RealPipeline is the implementation."""

    recipe: str

    def predict(self, arch: ArchConfig) -> float: ...  # predicted tokens/s

    def num_params(self, arch: ArchConfig) -> int: ...

    def build(self, arch: ArchConfig) -> Any: ...  # a candidate model

    def heldout_kl(self, model: Any) -> tuple[float, float]: ...  # (KL, stderr) to the parent

    def retrain(self, model: Any, start_step: int, end_step: int,
                on_step: Callable[[int], None] | None = None) -> RetrainResult: ...

    def score(self, model: Any, rung: Rung,
              on_task: Callable[[str], None] | None = None) -> RungScore: ...

    def save(self, model: Any, out_dir: Path, meta: dict) -> Path: ...

    def release(self, model: Any) -> None: ...


def _evaluated_twin(trial, arch: ArchConfig, recipe: str):
    """A COMPLETE, built, original trial of the same arch (None without a study)."""
    if not hasattr(trial, "study"):
        return None
    from optuna.trial import TrialState

    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        r = TrialRecord.from_trial(other)
        if r.arch == arch and r.feasible and r.built and r.duplicate_of is None \
                and r.recipe == recipe:
            return other
    return None


def built_count(trials) -> int:
    """Candidates built so far (or being built): feasible, not a repeat of an evaluated arch,
    not lost to a dead worker, not a surplus trial."""
    from plsearch.search.study import dead_trials

    dead = dead_trials(trials)
    n = 0
    for t in trials:
        r = TrialRecord.from_trial(t)
        if not r.feasible or r.duplicate_of is not None or r.surplus:
            continue
        if t.state.name in ("COMPLETE", "RUNNING") or (
                t.state.name == "FAIL" and t.number not in dead):
            n += 1
    return n


def _surplus(trial, max_built: int | None, wait_s: float = 30.0) -> bool:
    """True when trials numbered before this one already build ``max_built`` candidates.

    Workers sharing a study each check the count before asking for a trial, so two of
    them may start the last one together. Trial numbers are handed out by the storage in
    order, so the earlier number wins: this trial first waits (briefly) until every earlier
    running trial has recorded whether its arch is feasible, then counts them.
    """
    if max_built is None or not hasattr(trial, "study"):
        return False
    from optuna.trial import TrialState

    deadline = time.monotonic() + wait_s
    while True:
        earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
        undecided = [t for t in earlier
                     if t.state == TrialState.RUNNING and TrialRecord.from_trial(t).feasible is None]
        if not undecided or time.monotonic() > deadline:
            return built_count(earlier) >= max_built
        time.sleep(0.2)


def _band_top_missing(trial, need: float, last: int) -> bool:
    """True when no other trial of the budget band has reached the top rung."""
    if not hasattr(trial, "study"):
        return False
    for t in trial.study.get_trials(deepcopy=False):
        if t.number == trial.number or t.state.name not in ("COMPLETE", "RUNNING"):
            continue
        r = TrialRecord.from_trial(t)
        if (r.duplicate_of is None and r.rung == last and r.predicted_tokens_per_s is not None
                and r.predicted_tokens_per_s <= need * (1 + BAND_WIDTH)):
            return False
    return True


def make_objective(pipeline: Pipeline, grid: SearchGrid, space: SearchSpace,
                   budget_tokens_per_s: float, candidates_dir: Path,
                   candidate_meta: dict | None = None, max_built: int | None = None,
                   feasible=None, progress: Progress | None = None,
                   screen: Callable[[ArchConfig], tuple[float, float, bool] | None]
                   | None = None,
                   stop: Callable[[], bool] | None = None):
    """The Optuna objective: trial -> (accuracy objective, predicted tokens/s).

    ``feasible`` (proposals.FeasibleSet) defines the speed bins of the ladder; it is
    computed from the grid when not given. ``progress(message)`` hears every stage of a
    trial (build, each KD step, each task). ``screen(arch)`` measures an arch before it is
    built (random weights through the device profile's engine) and returns (measured
    tokens/s, the bar it must clear: the budget timed the same way, plus any headroom,
    whether the measurement shows the arch clears it), or None when it does not measure
    (far from the budget): an arch not shown to clear it is recorded infeasible with that
    speed and pruned, never built. With ``max_built``, a feasible trial that finds that many
    candidates already built or being built by earlier trials (another worker won the race
    for the last one) is not built: it records ``surplus`` and is pruned. ``stop()`` true
    (the search's --timeout has passed) ends the ladder of the trial in flight at the rung
    it has reached, unless it is the budget band's first to climb: a promotion can cost
    minutes of KD.
    """
    import optuna

    from plsearch.search.proposals import feasible_set

    rungs = space.ladder.rungs
    last = len(rungs) - 1
    ladder = space.ladder
    need = budget_tokens_per_s
    if feasible is None:
        feasible = feasible_set(grid, pipeline.predict, need, pipeline.num_params)
    say = progress or (lambda message: None)

    def objective(trial) -> tuple[float, float]:
        start = time.perf_counter()
        arch = grid.suggest(trial)
        predicted = float(pipeline.predict(arch))
        written: dict[str, Any] = {}
        record = TrialRecord(
            arch=arch, params=int(pipeline.num_params(arch)), recipe=pipeline.recipe,
            predicted_tokens_per_s=predicted, constraint=need - predicted,
            feasible=predicted >= need, rungs_total=len(rungs),
            speed_bin=feasible.speed_bin(predicted, ladder.speed_bins))

        def save(**changes: Any) -> None:
            nonlocal record
            record = record.replace(**changes)
            write_record(trial, record, written)

        def took() -> dict[str, float]:
            return {**seconds, "total": time.perf_counter() - start}

        seconds = {"build": 0.0, "kd": 0.0, "eval": 0.0}
        save(seconds=took())  # every attribute is (re)written here: a retried trial starts clean
        if not record.feasible:
            logger.warning("trial %d: %s predicts %.0f tokens/s < budget %.0f; not built",
                           trial.number, arch, predicted, need)
            raise optuna.TrialPruned("misses the budget: not built, not scored")
        screened = screen(arch) if screen is not None else None
        if screened is not None:
            measured, threshold, meets = screened
            save(screened_tokens_per_s=float(measured))
            if not meets:
                save(feasible=False, seconds=took())
                logger.warning("trial %d: %s at %.0f tokens/s, not shown to clear %.0f (the "
                               "budget, plus any --headroom) before the build (timed with "
                               "random weights near the budget, else the refined "
                               "prediction); not built",
                               trial.number, arch, measured, threshold)
                raise optuna.TrialPruned("measured below the budget (or not shown to meet it): "
                                         "not built, not scored")

        twin = _evaluated_twin(trial, arch, pipeline.recipe)
        if twin is not None:  # another worker raced to the same arch: reuse, not rebuild
            theirs = TrialRecord.from_trial(twin)
            save(**{k: v for k, v in theirs.to_attrs().items() if k not in ("seconds", "arch")},
                 arch=arch, duplicate_of=twin.number)
            logger.info("trial %d: %s was evaluated by trial %d; reusing its result",
                        trial.number, arch, twin.number)
            return twin.values[0], predicted

        if _surplus(trial, max_built):
            save(surplus=True)
            logger.info("trial %d: %d candidates are already built; not built", trial.number,
                        max_built)
            raise optuna.TrialPruned("enough candidates")

        label = f"trial {trial.number} ({arch})"
        model = None
        try:
            say(f"{label}: building")
            t0 = time.perf_counter()
            model = pipeline.build(arch)
            build_kl, _ = pipeline.heldout_kl(model)
            seconds["build"] = time.perf_counter() - t0
            save(build_kl=build_kl, seconds=took())
            curve: list[list[float]] = []
            steps, tokens = 0, 0
            for r, rung in enumerate(rungs):
                begin = steps

                def on_step(k: int, begin=begin, end=rung.kd_steps, r=r) -> None:
                    say(f"{label}: rung {r + 1}/{len(rungs)}, KD step {begin + k} of {end}")

                kd = pipeline.retrain(model, steps, rung.kd_steps, on_step)
                curve += [[row[0] + steps, row[1] + tokens, *row[2:]] for row in kd.curve]
                steps, tokens = rung.kd_steps, tokens + kd.tokens
                seconds["kd"] += kd.seconds

                def on_task(what: str, r=r, rung=rung) -> None:
                    items = (f", {rung.limit} items each"
                             if rung.limit and not what.startswith("held-out") else "")
                    say(f"{label}: rung {r + 1}/{len(rungs)}, evaluating {what}{items}")

                scored = pipeline.score(model, rung, on_task)
                seconds["eval"] += scored.seconds
                value, value_se = objective_value(scored.accuracy, scored.accuracy_stderr,
                                                  scored.kl, scored.kl_stderr,
                                                  space.objective.kl_weight)
                save(rung=r, rung_scores=(*record.rung_scores, value),
                     rung_signals=(*record.rung_signals, {"objective": value,
                                                          "accuracy": scored.accuracy,
                                                          "kl": scored.kl}),
                     kd_steps=steps, kd_tokens=tokens, kd_curve=tuple(map(tuple, curve)),
                     scores=scored.scores, accuracy=scored.accuracy,
                     accuracy_stderr=scored.accuracy_stderr, objective=value,
                     objective_stderr=value_se, kl=scored.kl, kl_stderr=scored.kl_stderr,
                     perplexity=scored.perplexity, seconds=took())
                if r == last:
                    break
                mine = signal_value(record, r, ladder.signal)
                others = competitors(trial.study.get_trials(deepcopy=False), r, trial.number,
                                     ladder.signal, record.speed_bin) \
                    if hasattr(trial, "study") else []
                in_band = predicted <= need * (1 + BAND_WIDTH)
                if in_band and _band_top_missing(trial, need, last):
                    logger.info("trial %d climbs: first of the budget band", trial.number)
                elif stop is not None and stop():
                    logger.info("trial %d stops at rung %d: the search's time is up",
                                trial.number, r)
                    break
                elif mine is None or not is_promoted(mine, others, ladder.promotion_rate):
                    logger.info("trial %d stops at rung %d (%s %s, bin %s)", trial.number, r,
                                ladder.signal, mine, record.speed_bin)
                    break
            if record.rung == last:
                meta = {**(candidate_meta or {}), "trial": trial.number,
                        "arch": arch.to_dict(), "recipe": pipeline.recipe,
                        "kd_steps": steps, "kd_tokens": tokens, "scores": record.scores,
                        "accuracy": record.accuracy, "accuracy_stderr": record.accuracy_stderr,
                        "objective": record.objective,
                        "objective_stderr": record.objective_stderr, "kl": record.kl,
                        "perplexity": record.perplexity, "predicted_tokens_per_s": predicted}
                say(f"{label}: saving")
                out = pipeline.save(model, Path(candidates_dir) / f"trial-{trial.number:04d}", meta)
                save(candidate_dir=str(Path(out).resolve()))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".strip()
            save(fail_reason=reason[:2000], seconds=took())
            logger.warning("trial %d (%s) failed: %s", trial.number, arch, reason)
            raise
        finally:
            if model is not None:
                pipeline.release(model)
        save(seconds=took())
        return record.rung_scores[-1], predicted

    return objective
