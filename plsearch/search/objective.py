"""One trial: arch -> predicted speed -> (if it meets the budget) build, KD per rung, score.

    objective = make_objective(pipeline, grid, space, budget_tokens_per_s, candidates_dir)
    study.optimize(objective, n_trials=1, catch=(Exception,))

Trial attributes follow the search <-> report contract (see plsearch/search/__init__.py).
An arch that misses the budget is never built: the trial completes at once with
``feasible=False``, accuracy 0 and its positive ``constraint``, which the sampler's
constraints_func reads. A candidate that fails (out of memory, NaN loss, any error) raises
out of the objective after recording ``fail_reason``; ``optimize(catch=...)`` turns it into
a FAIL trial and the search goes on.

The objective talks to models only through a ``Pipeline`` (pipeline.py builds the real
one), so the ladder and the attribute bookkeeping are tested with a fake in a blink.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from plsearch.arch import ArchConfig
from plsearch.search.ladder import competitors, is_promoted
from plsearch.search.space import Rung, SearchGrid, SearchSpace

__all__ = ["Pipeline", "RungScore", "built_count", "make_objective", "objective_value"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RungScore:
    """What scoring a candidate at one rung gave."""

    scores: dict[str, dict[str, float]]  # {task: {metric: value}}
    accuracy: float  # weighted task score
    perplexity: float  # held-out token perplexity
    seconds: float = 0.0


@dataclass(frozen=True)
class RetrainResult:
    curve: list[list[float]]  # [step, tokens, kd_loss, ce_loss, lr], steps counted from 0
    tokens: int
    seconds: float


class Pipeline(Protocol):
    """What a trial needs from models; pipeline.RealPipeline is the implementation."""

    recipe: str

    def predict(self, arch: ArchConfig) -> float: ...  # predicted tokens/s

    def num_params(self, arch: ArchConfig) -> int: ...

    def build(self, arch: ArchConfig) -> Any: ...  # a candidate model

    def retrain(self, model: Any, start_step: int, end_step: int) -> RetrainResult: ...

    def score(self, model: Any, rung: Rung) -> RungScore: ...

    def save(self, model: Any, out_dir: Path, meta: dict) -> Path: ...

    def release(self, model: Any) -> None: ...


def objective_value(accuracy: float, perplexity: float, perplexity_weight: float) -> float:
    """The accuracy objective: the weighted task score, ln(perplexity) breaking ties."""
    if perplexity_weight and math.isfinite(perplexity) and perplexity > 0:
        return accuracy - perplexity_weight * math.log(perplexity)
    return accuracy


@dataclass
class _TrialRecord:
    """The user attributes of one trial, written to the study as they become known."""

    trial: Any
    attrs: dict[str, Any] = field(default_factory=dict)

    def set(self, **values: Any) -> None:
        for key, value in values.items():
            self.attrs[key] = value
            self.trial.set_user_attr(key, value)


def _evaluated_twin(trial, arch: ArchConfig):
    """A COMPLETE, built, original trial of the same arch (None without a study)."""
    if not hasattr(trial, "study"):
        return None
    from optuna.trial import TrialState

    wanted = arch.to_dict()
    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a = other.user_attrs
        if (a.get("arch") == wanted and a.get("feasible") and "duplicate_of" not in a
                and a.get("recipe") == trial.user_attrs.get("recipe")):
            return other
    return None


def built_count(trials) -> int:
    """Candidates built so far (or being built): feasible, not a repeat of an evaluated arch,
    not lost to a dead worker, not a surplus trial."""
    from optuna.trial import TrialState

    from plsearch.search.study import dead_trials

    dead = dead_trials(trials)
    n = 0
    for t in trials:
        a = t.user_attrs
        if not a.get("feasible") or "duplicate_of" in a or a.get("surplus"):
            continue
        if t.state in (TrialState.COMPLETE, TrialState.RUNNING) or (
                t.state == TrialState.FAIL and t.number not in dead):
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
                     if t.state == TrialState.RUNNING and "feasible" not in t.user_attrs]
        if not undecided or time.monotonic() > deadline:
            return built_count(earlier) >= max_built
        time.sleep(0.2)


def make_objective(pipeline: Pipeline, grid: SearchGrid, space: SearchSpace,
                   budget_tokens_per_s: float, candidates_dir: Path,
                   candidate_meta: dict | None = None, max_built: int | None = None):
    """The Optuna objective: trial -> (accuracy objective, predicted tokens/s).

    With ``max_built``, a feasible trial that finds that many candidates already built or
    being built by earlier trials (another worker won the race for the last one) is not
    built: it records ``surplus`` and is pruned.
    """
    import optuna

    rungs = space.ladder.rungs
    last = len(rungs) - 1
    weight = space.objective.perplexity_weight

    def objective(trial) -> tuple[float, float]:
        start = time.perf_counter()
        arch = grid.suggest(trial)
        predicted = float(pipeline.predict(arch))
        constraint = budget_tokens_per_s - predicted
        record = _TrialRecord(trial)
        # Every attribute is (re)written here: a retried trial starts clean.
        record.set(arch=arch.to_dict(), params=int(pipeline.num_params(arch)),
                   predicted_tokens_per_s=predicted, constraint=constraint,
                   feasible=constraint <= 0, recipe=pipeline.recipe, rung=-1,
                   rungs_total=len(rungs), rung_scores=[])
        if constraint > 0:
            logger.info("trial %d: %s predicts %.0f tokens/s < budget %.0f; not built",
                        trial.number, arch, predicted, budget_tokens_per_s)
            record.set(seconds={"build": 0.0, "kd": 0.0, "eval": 0.0,
                                "total": time.perf_counter() - start})
            return 0.0, predicted

        twin = _evaluated_twin(trial, arch)
        if twin is not None:  # samplers re-propose arches of small grids: reuse, not rebuild
            copied = {k: v for k, v in twin.user_attrs.items()
                      if k not in record.attrs and k != "seconds"}
            record.set(**copied, duplicate_of=twin.number,
                       seconds={"build": 0.0, "kd": 0.0, "eval": 0.0,
                                "total": time.perf_counter() - start})
            logger.info("trial %d: %s was evaluated by trial %d; reusing its result",
                        trial.number, arch, twin.number)
            return twin.values[0], predicted

        if _surplus(trial, max_built):
            record.set(surplus=True, seconds={"build": 0.0, "kd": 0.0, "eval": 0.0,
                                              "total": time.perf_counter() - start})
            logger.info("trial %d: %d candidates are already built; not built", trial.number,
                        max_built)
            raise optuna.TrialPruned("enough candidates")

        seconds = {"build": 0.0, "kd": 0.0, "eval": 0.0}
        model = None
        try:
            t0 = time.perf_counter()
            model = pipeline.build(arch)
            seconds["build"] = time.perf_counter() - t0
            curve: list[list[float]] = []
            steps, tokens, rung_scores = 0, 0, []
            for r, rung in enumerate(rungs):
                kd = pipeline.retrain(model, steps, rung.kd_steps)
                curve += [[row[0] + steps, row[1] + tokens, *row[2:]] for row in kd.curve]
                steps, tokens = rung.kd_steps, tokens + kd.tokens
                seconds["kd"] += kd.seconds
                scored = pipeline.score(model, rung)
                seconds["eval"] += scored.seconds
                value = objective_value(scored.accuracy, scored.perplexity, weight)
                rung_scores.append(value)
                record.set(rung=r, rung_scores=rung_scores, kd_steps=steps, kd_tokens=tokens,
                           kd_curve=curve, scores=scored.scores, accuracy=scored.accuracy,
                           perplexity=scored.perplexity,
                           seconds={**seconds, "total": time.perf_counter() - start})
                if r == last:
                    break
                others = competitors(trial.study.get_trials(deepcopy=False), r, trial.number) \
                    if hasattr(trial, "study") else []
                if not is_promoted((value, predicted), others, space.ladder.promotion_rate):
                    logger.info("trial %d stops at rung %d (score %.4f)", trial.number, r, value)
                    break
            if record.attrs["rung"] == last:
                meta = {**(candidate_meta or {}), "trial": trial.number,
                        "arch": arch.to_dict(), "recipe": pipeline.recipe,
                        "kd_steps": steps, "kd_tokens": tokens,
                        "scores": record.attrs["scores"],
                        "accuracy": record.attrs["accuracy"],
                        "perplexity": record.attrs["perplexity"],
                        "predicted_tokens_per_s": predicted}
                out = pipeline.save(model, Path(candidates_dir) / f"trial-{trial.number:04d}", meta)
                record.set(candidate_dir=str(Path(out).resolve()))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".strip()
            record.set(fail_reason=reason[:2000],
                       seconds={**seconds, "total": time.perf_counter() - start})
            logger.warning("trial %d (%s) failed: %s", trial.number, arch, reason)
            raise
        finally:
            if model is not None:
                pipeline.release(model)
        seconds["total"] = time.perf_counter() - start
        record.set(seconds=seconds)
        return rung_scores[-1], predicted

    return objective
