"""Before an arch near the budget is built: measure it with random weights of its shape.

    screen = screen_arch(arch, need, latency, profile, parent_config)
    if not screen.feasible: record it infeasible (screen.measured_tokens_per_s, screen.reason)
    pairs.append(screen.pair)       # (predicted, measured) for the residual correction

The predictor decides far from the budget; near it (within ``margin`` either side of the
refined prediction) the arch is timed through the profile's engine with random weights
(plsearch.latency.engine.measure_arch, seconds on a CPU), and the measurement decides: no
arch measured below the budget is built. The measurement also gives a whole-model pair to
refine the predictor with (plsearch.latency.refine).
"""

from __future__ import annotations

from dataclasses import dataclass

from plsearch.arch import ArchConfig
from plsearch.config import DeviceProfile

__all__ = ["Screen", "screen_arch"]


@dataclass(frozen=True)
class Screen:
    """The budget check of one arch."""

    predicted_tokens_per_s: float  # the predictor's, uncorrected
    refined_tokens_per_s: float  # after the latency's residual correction
    measured_tokens_per_s: float | None  # random weights through the engine; None: not timed
    need: float  # the budget in tokens/s
    feasible: bool  # the speed that decides (measured when timed) reaches the budget
    reason: str  # one line for the trial's record

    @property
    def pair(self) -> tuple[float, float] | None:
        """(predicted, measured) tokens/s when the arch was timed, for fit_correction."""
        if self.measured_tokens_per_s is None:
            return None
        return self.predicted_tokens_per_s, self.measured_tokens_per_s

    def to_dict(self) -> dict[str, object]:
        return {"predicted_tokens_per_s": self.predicted_tokens_per_s,
                "refined_tokens_per_s": self.refined_tokens_per_s,
                "measured_tokens_per_s": self.measured_tokens_per_s, "need": self.need,
                "feasible": self.feasible, "reason": self.reason}


def screen_arch(arch: ArchConfig, need: float, latency, profile: DeviceProfile, parent_config,
                *, margin: float = 0.15, repeats: int = 3, pairs: int = 8, seed: int = 0,
                absorbed: bool = False,
                reference: tuple[ArchConfig, float] | None = None) -> Screen:
    """Is ``arch`` fast enough for ``need`` tokens/s? Measured when near the budget.

    ``margin`` 0.15: the whole budget band (archs predicted at most 15% above the budget,
    the first the search builds) is measured before it is built.

    ``latency``: a plsearch.latency.lookup.Latency; its device must be here (``local``) for
    a measurement, else the refined prediction decides. ``absorbed``: time the family's
    post-norm-absorbed model type (what the pangu recipe builds). ``reference``: (the
    parent's arch, its tokens/s when ``need`` was set from it) for a relative budget: the
    arch is timed beside the parent, one call each in turn (``pairs`` pairs; as many again
    when the speed-up lies within 5% of the budget's; more while its 95% interval
    straddles the budget: engine.time_for_verdict), and measured as its speed-up times
    ``parent_then``: a slow spell of the machine slows both sides of a pair alike. It
    meets the budget only when the whole interval does (what verification asks of the
    trained candidate). ``repeats``: timed calls of an arch timed alone (absolute budgets).
    """
    from plsearch.latency.engine import (
        call_timer,
        local_timer,
        measure_arch,
        random_arch_model,
        time_for_verdict,
    )

    predicted = latency.predicted_tokens_per_s(arch, profile)
    refined = latency.correction.apply(predicted)
    near = need * (1 - margin) <= refined < need * (1 + margin)
    if not near or not latency.local:
        feasible = refined >= need
        where = "near the budget, device not here" if near else "far from the budget"
        return Screen(predicted, refined, None, need, feasible,
                      f"predicted {refined:.1f} tok/s {'>=' if feasible else '<'} budget "
                      f"{need:.1f} ({where})")
    if reference is None:
        measured = measure_arch(arch, parent_config, profile, repeats=repeats, seed=seed,
                                absorbed=absorbed).tokens_per_s
        feasible, beside = measured >= need, ""
    else:  # both built once, then timed one call each in turn
        parent_arch, parent_then = reference
        timer = local_timer(profile)
        parent_model, model = (
            random_arch_model(a, parent_config, profile, timer, seed=seed, absorbed=ab)
            for a, ab in ((parent_arch, False), (arch, absorbed)))
        calls = [call_timer(m, profile, seed=seed, timer=timer) for m in (model, parent_model)]
        ratio = need / parent_then
        speedup = time_for_verdict(*calls, pairs, [ratio], budget=ratio)
        del parent_model, model, calls
        measured = speedup.speedup * parent_then
        feasible = speedup.low * parent_then >= need  # the whole 95% interval
        beside = (f"; {speedup.shown()} the parent timed beside it, {speedup.pairs} pairs, "
                  f"on the scale of the parent's {parent_then:.1f}")
    verdict = ">=" if feasible else ("< (its speed-up's 95% interval reaches below)"
                                     if measured >= need else "<")
    return Screen(predicted, refined, measured, need, feasible,
                  f"measured {measured:.1f} tok/s {verdict} budget {need:.1f} (predicted "
                  f"{refined:.1f}; random weights through {profile.engine}{beside})")
