"""Before an arch near the budget is built: measure it with random weights of its shape.

    screen = screen_arch(arch, need, latency, profile, parent_config)
    if not screen.feasible: record it infeasible (screen.measured_tokens_per_s, screen.reason)
    pairs.append(screen.pair)       # (predicted, measured) for the residual correction

The predictor decides far from the budget; near it (within ``margin`` either side of the
refined prediction) the arch is timed through the profile's engine with random weights
(plsearch.latency.engine, seconds on a CPU), and the measurement decides: no
arch measured below the budget is built. The measurement also gives a whole-model pair to
refine the predictor with (plsearch.latency.refine).

``headroom``: the arch is built only when its measurement clears the budget with that much
to spare (relative). Verification times the trained candidate again, minutes later, and
must show it meets the budget itself: on a shared host a speed-up moves between the two
(the built-in parent's demo, 2-vCPU VM: one candidate screened at 1.565x [95% interval
above 1.5x] and verified at 1.48x; another 1.52x, then 1.55x). bench/screen_headroom.py
(10 band archs, screened, then timed as verification does): of the 6 that cleared 1.5x at
the screen, verification refused 1; with 2% or 3% headroom none missed, but only 1 was
built, and 4 that verification would have kept were not. The search's default is 0: with
3% the demo on that VM refused the band's first 9 archs (medians 1.33-1.59x, no interval
clearing 1.545x), 378 s of timing, before it built the 10th (met: 1.64x [95% 1.59,
1.78], 95.9% of the parent's score); on the VM's slow days that time is the whole search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    feasible: bool  # the speed that decides (measured when timed) clears ``bar``
    reason: str  # one line for the trial's record
    # the low end of the measurement's 95% interval, in tokens/s; None: not timed
    low: float | None = None
    headroom: float = 0.0  # relative: a measured arch must clear need * (1 + headroom)
    # how far below its median the 95% interval would reach at the screen's pair cap, the
    # ratios spread as timed (relative; engine.projected_low); None: not timed
    width: float | None = None

    @property
    def bar(self) -> float:
        """What a measured arch must clear: the budget with its headroom."""
        return self.need * (1 + self.headroom)

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
                "feasible": self.feasible, "reason": self.reason, "low": self.low,
                "headroom": self.headroom, "width": self.width}


def screen_arch(arch: ArchConfig, need: float, latency, profile: DeviceProfile, parent_config,
                *, margin: float = 0.15, pairs: int = 8, seed: int = 0, absorbed: bool = False,
                headroom: float = 0.0,
                reference: tuple[ArchConfig, float] | None = None,
                parent_dir: Path | None = None) -> Screen:
    """Is ``arch`` fast enough for ``need`` tokens/s? Measured when near the budget.

    ``margin`` 0.15: the whole budget band (archs predicted at most 15% above the budget,
    the first the search builds) is measured before it is built.

    ``latency``: a plsearch.latency.lookup.Latency; its device must be here (``local``) for
    a measurement, else the refined prediction decides. ``absorbed``: time the family's
    post-norm-absorbed model type (what the pangu recipe builds).

    ``reference``: (the parent's arch, ``parent_then``: its tokens/s when ``need`` was set
    from it) for a relative budget: the arch is timed beside the parent, one call each in
    turn, and measured as its speed-up times ``parent_then``: a slow spell of the machine
    slows both sides of a pair alike. Without it (an absolute budget) the arch's calls are
    timed alone. Either way ``pairs`` calls of it (as many again within 5% of the bar;
    more, up to 4x, while the 95% interval straddles the bar with the median above it and
    the ratios, spread as they are, could clear it: engine.time_for_verdict), and it meets
    the budget only when the whole interval clears ``need * (1 + headroom)``. ``width``
    of the result: how far below the median the interval would reach at that cap.

    ``parent_dir``: the parent is loaded from there, what verification times the candidate
    beside (else random weights of its shape). On the AMD VM the built-in parent loaded
    from its folder ran 3.8% [95% 1.2, 5.5] faster than random weights of its shape
    allocated in place, and those same random weights saved and loaded again 2.8% [0.1,
    4.9] faster (20 rounds each): how a model's memory was filled moves its time.
    """
    from plsearch.latency.engine import (
        MAX_PAIRS_FACTOR,
        call_timer,
        local_timer,
        projected_low,
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
    bar = need * (1 + headroom)
    timer = local_timer(profile)

    def random_model(a: ArchConfig, ab: bool = False):
        return random_arch_model(a, parent_config, profile, timer, seed=seed, absorbed=ab)

    def calls_of(model):
        return call_timer(model, profile, seed=seed, timer=timer)

    if reference is None:  # timed beside a constant 1 tok/s: the ratios are its tokens/s
        scale, versus = 1.0, (lambda: 1.0)
    else:
        parent_arch, scale = reference
        if parent_dir is not None:  # loaded as verification loads it (verify._FolderCalls)
            from plsearch.latency.engine import load_for_timing

            versus = calls_of(load_for_timing(parent_dir, profile))
        else:
            versus = calls_of(random_model(parent_arch))
    speedup = time_for_verdict(calls_of(random_model(arch, absorbed)), versus, pairs,
                               [bar / scale], budget=bar / scale)
    del versus  # the models go with their calls
    measured, low = speedup.speedup * scale, speedup.low * scale
    width = 1 - projected_low(speedup, MAX_PAIRS_FACTOR * pairs) / speedup.speedup
    feasible = low >= bar  # the whole 95% interval
    beside = "" if reference is None else (
        f"; {speedup.shown()} the parent timed beside it, on the scale of the parent's "
        f"{scale:.1f}")
    spare = f" + {headroom:.0%} headroom = {bar:.1f}" if headroom else ""
    verdict = ">=" if feasible else ("< (its 95% interval reaches below)" if measured >= bar
                                     else "<")
    timed = f"{speedup.pairs} {'pairs' if reference else 'calls'}"
    return Screen(predicted, refined, measured, need, feasible,
                  f"measured {measured:.1f} tok/s [95% from {low:.1f}] {verdict} budget "
                  f"{need:.1f}{spare} (predicted {refined:.1f}; random weights through "
                  f"{profile.engine}, {timed}{beside})", low=low, headroom=headroom,
                  width=width)
