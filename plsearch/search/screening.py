"""The search's latency checks: time archs near the budget before they are built, and
refine the predictor on what was measured.

    screen = make_screener(plan, study, sampler.narrow, stage, headroom)  # objective's screen
    screen(arch) -> (measured tokens/s, the bar, whether it clears it) or None (not timed)
    refinement(study)  # the predictor's error before and after the residual correction

Every measurement is kept in the study's attributes, one attribute each
(``latency_pairs/<id>``, ``screen_widths/<id>``: add_shared, shared_values; and
``screen_parent_tokens_per_s``), so a resumed search refines on them too, and so does each
worker of a shared study on the others' (read back at each of its own screens): no two
workers ever write the same attribute, so none loses another's measurement.
The timing itself is plsearch.latency.screen; the correction plsearch.latency.refine.
"""

from __future__ import annotations

import statistics
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from plsearch.search.run import SearchPlan

__all__ = ["add_shared", "clearing_speed", "make_screener", "refinement", "shared_values"]


def clearing_speed(bar: float, widths: list[float]) -> float:
    """The speed an arch needs for the screen to be likely to clear ``bar``: the bar over
    1 - w, w the median over the screens so far of how far below its median each one's
    95% interval would reach at the screen's pair cap (Screen.width), at most CLOSE (5%;
    the bar itself before any screen). Uncapped, one screen's interval (11% wide) ruled
    out the whole budget band (15% wide): the demo then built an arch at 2.4x scoring
    0.50, where the band's built archs scored 0.81-0.83 in the other demos."""
    from plsearch.latency.engine import CLOSE

    return bar / (1 - min(statistics.median(widths), CLOSE)) if widths else bar


def make_screener(plan: SearchPlan, study: optuna.Study, narrow=None, stage=None,
              headroom: float = 0.0):
    """Issue 13's pre-build check: near the budget, an arch is timed with random weights
    through the profile's engine (plsearch.latency.screen) and the measurement decides
    (for a relative budget: against the parent's shape timed the same way, in this run).
    Each measurement is a (predicted, measured) pair in the study's ``latency_pairs``; the
    check's predictor is refined on them as they come (plsearch.latency.refine), and
    ``narrow(keep)`` (FeasibleSampler.narrow) then leaves out of the proposals the archs
    the screen is unlikely to clear: those the refined predictor puts below the bar (the
    budget times 1 + ``headroom``) divided by 1 - w, w the median width below the median
    of the screens' 95% intervals at their pair cap, at most 5% (``screen_widths``;
    clearing_speed: an arch refused after 8 pairs has the whole range for an interval,
    11% wide in one demo, which says little about the 32 pairs a close one gets). A
    screen clears an arch only when the low end of its interval does: one predicted at
    the bar is timed, and refused, for nothing (the built-in parent's demo on a 2-vCPU VM
    refused its first 6 band archs, 23-85 s each, refined predictions 2.7% below to 1.4%
    above the bar; 320 s of its 15 minutes). When that leaves no arch, the bar alone
    decides. None when the device is not here or the latency is a stand-in (tests)."""
    latency = plan.latency
    if not getattr(latency, "local", False) or not hasattr(latency, "with_correction"):
        return None
    from plsearch.latency.engine import load_for_timing, measure_model
    from plsearch.latency.refine import fit_correction
    from plsearch.latency.screen import screen_arch
    from plsearch.models import read_config

    parent_config = read_config(plan.model_dir)
    absorbed = plan.space.recipe == "pangu"  # pangu exports the absorbed model type
    pairs = shared_values(study, "latency_pairs")
    need = plan.need
    if plan.budget.kind == "relative":
        # A relative budget is checked against the parent timed the same way, now: a busy
        # machine or an engine the table misses slows both alike. The parent as
        # verification times it: loaded from its folder.
        parent_measured = study.user_attrs.get("screen_parent_tokens_per_s")
        if parent_measured is None:
            parent_measured = measure_model(load_for_timing(plan.model_dir, plan.profile),
                                            plan.profile, repeats=3).tokens_per_s
            study.set_user_attr("screen_parent_tokens_per_s", parent_measured)
            pairs = add_shared(study, "latency_pairs", (plan.parent_tokens_per_s,
                                                        parent_measured))
            if stage is not None:  # how far the machine drifted since the table
                stage(f"the parent timed now through {plan.profile.engine}: "
                      f"{parent_measured:,.0f} tokens/s, the table predicts "
                      f"{plan.parent_tokens_per_s:,.0f} "
                      f"({parent_measured / plan.parent_tokens_per_s - 1:+.1%}); the budget "
                      "follows the measured speed, and each measurement corrects the "
                      "predictor")
        need = plan.budget.value * parent_measured
    state = {"latency": latency}
    widths = shared_values(study, "screen_widths")

    def refit() -> None:
        state["latency"] = latency.with_correction(fit_correction(pairs))
        if narrow is None:
            return
        refined = state["latency"]
        bar = need * (1 + headroom)
        speed = clearing_speed(bar, widths)
        left = narrow(lambda arch: refined.tokens_per_s(arch, plan.profile) >= speed)
        if not left and speed > bar:
            speed = bar
            left = narrow(lambda arch: refined.tokens_per_s(arch, plan.profile) >= bar)
        if stage is not None:
            stage(f"latency correction refitted on {len(pairs)} measurements: {left:,} "
                  f"archs predicted at {speed:,.0f} tokens/s or more left to propose"
                  + (f" (the bar {bar:,.0f} over 1 - {1 - bar / speed:.1%}: how far below "
                     "their medians the screens' 95% intervals reach at their pair cap)"
                     if speed > bar else "")
                  if left else
                  "no arch of the space meets the budget as measured; stopping")

    if pairs:
        refit()

    reference = (plan.parent_arch, need / plan.budget.value) \
        if plan.budget.kind == "relative" else None

    def screen(arch) -> tuple[float, float, bool] | None:
        checked = screen_arch(arch, need, state["latency"], plan.profile, parent_config,
                              absorbed=absorbed, reference=reference, headroom=headroom,
                              parent_dir=plan.model_dir)
        if checked.pair is None:  # far from the budget: the refined prediction decides
            return None if checked.feasible else (checked.refined_tokens_per_s, need, False)
        # another worker's screens (a shared study) are read back with each of this one's
        pairs[:] = add_shared(study, "latency_pairs", checked.pair)
        widths[:] = add_shared(study, "screen_widths", checked.width)
        refit()
        return checked.measured_tokens_per_s, checked.bar, checked.feasible

    return screen


def shared_values(study: optuna.Study, key: str) -> list:
    """Every value added under ``key`` (add_shared), by any worker, sorted (the order the
    workers wrote them in is not kept; the correction and the medians do not depend on
    it); pairs come back as tuples. A study written before values had an attribute each
    kept them as one list under ``key`` itself: read too."""
    attrs = study.user_attrs
    added = [v for k, v in attrs.items() if k.startswith(f"{key}/")]
    return [tuple(v) if isinstance(v, list) else v for v in [*attrs.get(key, []),
                                                              *sorted(added)]]


def add_shared(study: optuna.Study, key: str, value) -> list:
    """Add ``value`` under ``key`` as an attribute of its own (``key/<random id>``) and
    return shared_values. Workers sharing a study (PostgreSQL) never write the same
    attribute, so none overwrites another's: one list read back, appended to and written
    (what this did before) lost 48 of 120 values to two processes adding at once on SQLite.
    The id only names the attribute: it takes no part in any result."""
    study.set_user_attr(f"{key}/{uuid.uuid4().hex}",
                        list(value) if isinstance(value, tuple) else value)
    return shared_values(study, key)


def refinement(study: optuna.Study) -> dict[str, Any] | None:
    """The predictor's error before and after the residual correction (leave-one-out), on
    every whole-model measurement of the search: pre-build checks and verification, on the
    scale of the parent's speed measured at verification."""
    from plsearch.latency.refine import refinement_report
    from plsearch.search.verify import fully_evaluated

    attrs = study.user_attrs
    # The screen's measurements are speed-ups times the parent's speed when the search
    # began; verification's, times the parent's speed then: one scale for both.
    then, now = (attrs.get("screen_parent_tokens_per_s"),
                 attrs.get("parent_measured_tokens_per_s"))
    rescale = now / then if then and now else 1.0
    pairs = [(p[0], p[1] * rescale) for p in shared_values(study, "latency_pairs")]
    pairs += [(r.predicted_tokens_per_s, r.measured_tokens_per_s)
              for r in fully_evaluated(study) if r.measured_tokens_per_s]
    return refinement_report(pairs) if pairs else None
