"""Successive halving over the KD budget (asynchronous, multi-objective).

Optuna's pruners cannot stop multi-objective trials, so the ladder is ours. Every feasible
candidate climbs rung 0 (a short KD, a cheap score). After each rung it is compared with
every trial already scored at that rung (in this process or any other worker: the scores
live in the study as the ``rung_scores`` user attribute) and climbs on only when it is
among the best ``promotion_rate`` share, at least the single best:

    rank the competitors by Pareto front of (rung score, predicted tokens/s), both
    maximized, then by rung score within a front; promote the first max(1, floor(n * rate)).

Ranking by front rather than by score alone keeps fast candidates climbing too: the search
wants the whole accuracy/speed front, not only the most accurate (slowest) shapes. Like
Optuna's SuccessiveHalvingPruner, early trials see few competitors and climb easily.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["competitors", "is_promoted", "pareto_ranks", "promotion_order"]

Point = tuple[float, float]  # (rung score, predicted tokens/s), both maximized


def pareto_ranks(points: Sequence[Point]) -> list[int]:
    """Non-dominated sorting: 0 for the first front, 1 for the next, ...; maximize both."""
    remaining = set(range(len(points)))
    ranks = [0] * len(points)
    front = 0
    while remaining:
        current = [i for i in remaining
                   if not any(_dominates(points[j], points[i]) for j in remaining if j != i)]
        for i in current:
            ranks[i] = front
        remaining -= set(current)
        front += 1
    return ranks


def _dominates(a: Point, b: Point) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])


def promotion_order(points: Sequence[Point]) -> list[int]:
    """Indices of ``points`` from most to least deserving of promotion."""
    ranks = pareto_ranks(points)
    return sorted(range(len(points)), key=lambda i: (ranks[i], -points[i][0], -points[i][1], i))


def is_promoted(mine: Point, others: Sequence[Point], rate: float) -> bool:
    """Whether ``mine`` is among the best ``rate`` share of itself plus ``others``.

    Ties go to the trial already scored (``others`` come first in the order).
    """
    points = list(others) + [mine]
    slots = max(1, math.floor(len(points) * rate + 1e-9))
    return len(points) - 1 in promotion_order(points)[:slots]


def competitors(trials, rung: int, exclude_number: int) -> list[Point]:
    """(score, predicted tokens/s) at ``rung`` of every finished or running trial.

    ``trials`` are FrozenTrials; FAIL trials do not compete (their scores may be from a
    killed attempt that is retried under a new number).
    """
    from optuna.trial import TrialState

    out = []
    for t in trials:
        if t.number == exclude_number or t.state not in (TrialState.COMPLETE, TrialState.RUNNING):
            continue
        scores = t.user_attrs.get("rung_scores") or []
        if len(scores) > rung and scores[rung] is not None:
            out.append((float(scores[rung]), float(t.user_attrs["predicted_tokens_per_s"])))
    return out
