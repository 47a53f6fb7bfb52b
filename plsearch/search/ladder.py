"""Successive halving over the KD budget (asynchronous), compared within speed bins.

Optuna's pruners cannot stop multi-objective trials, so the ladder is ours. Every feasible
candidate climbs rung 0 (a short KD, a cheap score). After each rung it is compared with
the trials already scored at that rung *in the same speed bin* (in this process or any
other worker: the values live in the study's trial attributes) and climbs on only when it
is among the best ``promotion_rate`` share of them, at least the single best:

    value = the ladder's promotion signal at this rung (higher is better)
    promote the first max(1, floor(n * rate)) by value; ties go to the trial scored first

Comparing within a speed bin (the feasible set cut into bins of equal count by predicted
speed) means speed alone carries no one up, and every region of the front gets its most
accurate candidates fully evaluated. The signal is the one that best predicts the top-rung
objective (bench/fidelity.py measures each):

- ``kl``: minus the held-out KL to the parent after the rung's KD (continuous, low noise);
- ``build_kl``: minus the KL right after the build, before any KD (costs nothing);
- ``accuracy``: the rung's weighted task score (few items: noisy);
- ``objective``: the rung's objective value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from plsearch.search.record import TrialRecord

__all__ = ["SIGNALS", "competitors", "is_promoted", "promotion_order", "signal_value"]

SIGNALS = ("kl", "build_kl", "accuracy", "objective")


def signal_value(record: TrialRecord, rung: int, signal: str) -> float | None:
    """The promotion value of ``record`` at ``rung`` (higher is better; None: not scored)."""
    if signal not in SIGNALS:
        raise ValueError(f"unknown promotion signal {signal!r}; choose one of {SIGNALS}")
    if len(record.rung_signals) <= rung:
        return None
    if signal == "build_kl":
        return None if record.build_kl is None else -record.build_kl
    value = record.rung_signals[rung].get(signal)
    if value is None or not math.isfinite(value):
        return None
    return -value if signal == "kl" else float(value)


def promotion_order(values: Sequence[float]) -> list[int]:
    """Indices from most to least deserving (ties: the earlier index first)."""
    return sorted(range(len(values)), key=lambda i: (-values[i], i))


def is_promoted(mine: float, others: Sequence[float], rate: float) -> bool:
    """Whether ``mine`` is among the best ``rate`` share of itself plus ``others``.

    Ties go to the trials already scored (``others`` come first in the order).
    """
    values = list(others) + [mine]
    slots = max(1, math.floor(len(values) * rate + 1e-9))
    return len(values) - 1 in promotion_order(values)[:slots]


def competitors(trials, rung: int, exclude_number: int, signal: str,
                speed_bin: int | None) -> list[float]:
    """Signal values at ``rung`` of every finished or running trial of the same speed bin.

    ``trials`` are FrozenTrials; FAIL trials do not compete (their scores may be from a
    killed attempt that is retried under a new number), nor do repeats of an arch.
    """
    out = []
    for t in trials:
        if t.number == exclude_number or t.state.name not in ("COMPLETE", "RUNNING"):
            continue
        record = TrialRecord.from_trial(t)
        if record.duplicate_of is not None:
            continue
        if speed_bin is not None and record.speed_bin != speed_bin:
            continue
        value = signal_value(record, rung, signal)
        if value is not None:
            out.append(value)
    return out
