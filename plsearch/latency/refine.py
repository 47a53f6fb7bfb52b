"""A residual correction of the predictor, fitted on whole-model measurements.

    pairs = [(predicted_tps, measured_tps), ...]       # measure_arch / verification
    correction = fit_correction(pairs)
    correction.apply(predicted_tps)                    # refined tokens/s
    refinement_report(pairs)                           # error before / after (leave-one-out)

The predictor is composed from block and head rows; what it misses on whole models
(engine overheads it did not see, absorbed model types, a machine busier than when the
table was measured) shows as a ratio measured / predicted that is nearly constant over
the archs of one search, drifting slowly with the arch's speed. The correction models

    log(measured / predicted) = a + b * (log(predicted) - center)

``a`` alone until ``min_pairs_for_slope`` pairs exist (the median residual: robust to one
bad measurement), then a least-squares line with the slope kept within ``max_slope``.
The reported "after" error is leave-one-out: each pair is corrected by a fit on the others,
so it says how well the correction predicts archs it has not seen.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Correction", "fit_correction", "refinement_report"]


@dataclass(frozen=True)
class Correction:
    """refined = predicted * exp(a + b * (log(predicted) - center))."""

    a: float = 0.0
    b: float = 0.0
    center: float = 0.0
    pairs: int = 0  # whole-model measurements it was fitted on

    def factor(self, predicted: float) -> float:
        return math.exp(self.a + self.b * (math.log(predicted) - self.center))

    def apply(self, predicted: float) -> float:
        """Refined tokens/s for a predicted tokens/s."""
        return predicted * self.factor(predicted) if predicted > 0 else predicted

    def to_dict(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b, "center": self.center, "pairs": self.pairs}


IDENTITY = Correction()


def fit_correction(pairs: Sequence[tuple[float, float]], *, min_pairs_for_slope: int = 5,
                   max_slope: float = 0.5) -> Correction:
    """The correction for (predicted, measured) tokens/s pairs; identity without pairs."""
    usable = [(p, m) for p, m in pairs if p > 0 and m > 0]
    if not usable:
        return IDENTITY
    x = [math.log(p) for p, _ in usable]
    r = [math.log(m / p) for p, m in usable]
    center = statistics.fmean(x)
    if len(usable) < min_pairs_for_slope:
        return Correction(a=statistics.median(r), center=center, pairs=len(usable))
    dx = [xi - center for xi in x]
    sxx = sum(d * d for d in dx)
    slope = sum(d * ri for d, ri in zip(dx, r)) / sxx if sxx > 0 else 0.0
    slope = max(-max_slope, min(max_slope, slope))
    return Correction(a=statistics.fmean(r), b=slope, center=center, pairs=len(usable))


def refinement_report(pairs: Sequence[tuple[float, float]], **fit_kwargs) -> dict[str, object]:
    """Errors (predicted / measured - 1) before and after the correction, leave-one-out.

    ``median_abs_*`` and ``median_signed_*`` are fractions; None where there is nothing
    to compute (after needs at least two pairs).
    """
    usable = [(p, m) for p, m in pairs if p > 0 and m > 0]
    before = [p / m - 1.0 for p, m in usable]
    after = []
    for i, (p, m) in enumerate(usable):
        others = usable[:i] + usable[i + 1:]
        if others:
            after.append(fit_correction(others, **fit_kwargs).apply(p) / m - 1.0)

    def med(values, signed=False):
        if not values:
            return None
        return statistics.median(values if signed else [abs(v) for v in values])

    return {
        "pairs": len(usable),
        "median_abs_before": med(before), "median_abs_after": med(after),
        "median_signed_before": med(before, True), "median_signed_after": med(after, True),
        "correction": fit_correction(usable, **fit_kwargs).to_dict(),
    }
