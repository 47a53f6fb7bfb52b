"""Pareto fronts and hypervolume in two objectives, both maximized.

The one implementation the ladder, the search's front, the report and the benches use:

    pareto_ranks([(0.9, 100.0), (0.5, 300.0), (0.4, 200.0)])   # [0, 0, 1]
    pareto_mask(points)                                          # rank == 0, as booleans
    hypervolume_2d(points, reference=(0.0, budget_tokens_per_s))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["dominates", "hypervolume_2d", "pareto_mask", "pareto_ranks"]

Point = tuple[float, float]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` on both objectives and better on one."""
    return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])


def pareto_ranks(points: Sequence[Sequence[float]]) -> list[int]:
    """Non-dominated sorting: 0 for the first front, 1 for the next, ...; exact ties share."""
    pts = [(float(p[0]), float(p[1])) for p in points]
    remaining = set(range(len(pts)))
    ranks = [0] * len(pts)
    front = 0
    while remaining:
        current = [i for i in remaining
                   if not any(dominates(pts[j], pts[i]) for j in remaining if j != i)]
        for i in current:
            ranks[i] = front
        remaining -= set(current)
        front += 1
    return ranks


def pareto_mask(points: Iterable[Sequence[float]]) -> list[bool]:
    """Which points no other point dominates (exact ties are all kept)."""
    return [rank == 0 for rank in pareto_ranks(list(points))]


def hypervolume_2d(points: Iterable[Sequence[float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` above ``reference`` (both coordinates maximized)."""
    rx, ry = float(reference[0]), float(reference[1])
    kept = sorted(((float(a), float(t)) for a, t in points if a > rx and t > ry),
                  key=lambda p: p[1], reverse=True)
    area, best_a = 0.0, rx
    for a, t in kept:  # sweep from the fastest point down; each adds a new strip of accuracy
        if a > best_a:
            area += (t - ry) * (a - best_a)
            best_a = a
    return area
