"""Scores with error bars: per-task stderr -> weighted accuracy -> objective, and comparisons.

    acc, acc_se = weighted_accuracy(scores, {"plsearch_add": 1.0, ...}, "acc")
    value, se = objective_value(acc, acc_se, kl, kl_se, kl_weight=0.1)
    low, high = interval(value, se)                 # 95 % (normal approximation)
    separated(a, a_se, b, b_se)                     # may we say "a beats b"?

A task's stderr is lm-eval's ``<metric>_stderr`` when the scores carry it, else the binomial
standard error sqrt(p (1 - p) / (n - 1)) of a 0/1 metric over its ``samples`` documents
(what lm-eval reports for acc). The weighted accuracy's stderr propagates the tasks' (tasks
are scored on independent documents): sqrt(sum (w_i / W)^2 se_i^2). The objective adds the
KL term's: sqrt(se_acc^2 + (kl_weight se_kl)^2).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["interval", "objective_value", "separated", "task_stderr", "weighted_accuracy"]


def task_stderr(metrics: dict[str, Any], metric: str) -> float | None:
    """The standard error of ``metrics[metric]`` (None when it cannot be known)."""
    given = metrics.get(f"{metric}_stderr")
    if isinstance(given, (int, float)) and math.isfinite(given):
        return float(given)
    value, n = metrics.get(metric), metrics.get("samples")
    if not isinstance(value, (int, float)) or not isinstance(n, (int, float)) or n < 2:
        return None
    if not 0.0 <= value <= 1.0:
        return None
    return math.sqrt(value * (1.0 - value) / (n - 1))


def weighted_accuracy(scores: dict[str, dict[str, Any]], tasks: dict[str, float],
                      metric: str) -> tuple[float, float | None]:
    """(weighted mean of the tasks' metric, its standard error or None)."""
    total = sum(tasks.values())
    value = sum(w * float(scores[t][metric]) for t, w in tasks.items()) / total
    variance = 0.0
    for task, weight in tasks.items():
        se = task_stderr(scores[task], metric)
        if se is None:
            return value, None
        variance += (weight / total) ** 2 * se ** 2
    return value, math.sqrt(variance)


def objective_value(accuracy: float, accuracy_se: float | None, kl: float | None,
                    kl_se: float | None, kl_weight: float) -> tuple[float, float | None]:
    """accuracy - kl_weight * KL(parent || candidate), with its standard error."""
    if not kl_weight or kl is None or not math.isfinite(kl):
        return accuracy, accuracy_se
    value = accuracy - kl_weight * kl
    if accuracy_se is None or kl_se is None:
        return value, None
    return value, math.sqrt(accuracy_se ** 2 + (kl_weight * kl_se) ** 2)


def interval(value: float, se: float | None) -> tuple[float, float] | None:
    """The 95 % interval value +- 1.96 se (evaluate.interval95; None without a stderr)."""
    if se is None or not math.isfinite(se):
        return None
    from plsearch.evaluate import interval95

    return interval95(value, se)


def separated(a: float, a_se: float | None, b: float, b_se: float | None) -> bool:
    """True when the 95 % intervals of a and b do not overlap (then one beats the other)."""
    ia, ib = interval(a, a_se), interval(b, b_se)
    if ia is None or ib is None:
        return False
    return ia[0] > ib[1] or ib[0] > ia[1]
