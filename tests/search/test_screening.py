"""The search's latency checks: the screen's bar and the proposals' limit, and the
refinement report on one scale."""

from __future__ import annotations

import optuna
import pytest

from plsearch.latency.refine import fit_correction
from plsearch.search.run import SearchOptions
from plsearch.search.screening import (
    add_shared,
    clearing_speed,
    make_screener,
    refinement,
    shared_values,
)


def test_the_refinement_puts_screen_and_verification_measurements_on_one_scale():
    study = optuna.create_study(directions=["maximize", "maximize"])
    # the screen measured the parent at 100 tokens/s (its pairs are speed-ups x 100) and
    # verification at 80 (the host slowed down): the screen's pairs are read x 0.8
    study.set_user_attr("screen_parent_tokens_per_s", 100.0)
    study.set_user_attr("parent_measured_tokens_per_s", 80.0)
    study.set_user_attr("latency_pairs", [[100.0, 100.0], [150.0, 150.0]])
    report = refinement(study)
    assert report["pairs"] == 2
    assert report["median_signed_before"] == pytest.approx(100.0 / 80.0 - 1.0)
    study.set_user_attr("parent_measured_tokens_per_s", 100.0)
    assert refinement(study)["median_signed_before"] == pytest.approx(0.0)


def _plan(tiny_dir, headroom: float = 0.0):
    from plsearch.config import load_device_profile
    from plsearch.search.pipeline import load_latency
    from plsearch.search.run import plan_search

    opts = SearchOptions(budget=tiny_dir["budget"], model=str(tiny_dir["model"]),
                         space=str(tiny_dir["space"]), device_profile=str(tiny_dir["profile"]),
                         headroom=headroom)
    latency = load_latency(load_device_profile(tiny_dir["profile"]), tiny_dir["table"])
    return plan_search(opts, latency=latency)


def _nearest_the_budget(plan, study):
    """(the arch the screen's refined predictor puts closest to the budget, the budget in
    tokens/s on the scale of the parent the screener timed): one the screen times."""
    import math

    then = study.user_attrs["screen_parent_tokens_per_s"]  # the loaded parent, timed now
    assert then > 0
    need = plan.budget.value * then
    # plan.latency, as the screen: candidates as the recipe builds them, post-norm absorbed
    refined = plan.latency.with_correction(fit_correction(shared_values(study, "latency_pairs")))
    near = min(plan.grid.archs(),
               key=lambda a: abs(math.log(refined.tokens_per_s(a, plan.profile) / need)))
    gap = refined.tokens_per_s(near, plan.profile) / need - 1
    assert abs(gap) < 0.15, f"no arch of the tiny space is in the budget band ({gap:+.1%})"
    return near, need


def test_the_screen_times_near_budget_archs_against_the_budget_plus_the_headroom(tiny_dir):
    """SearchOptions.headroom reaches the screen: its bar is the budget, timed beside the
    parent loaded from its folder, times 1 + headroom."""
    plan = _plan(tiny_dir, headroom=0.5)
    study = optuna.create_study(directions=["maximize", "maximize"])
    kept = []  # the proposals' filter after each refit (FeasibleSampler.narrow's ``keep``)

    def narrow(keep) -> int:
        kept.append(keep)
        return sum(map(keep, plan.grid.archs()))

    screen = make_screener(plan, study, narrow=narrow, headroom=0.5)
    near, need = _nearest_the_budget(plan, study)
    measured, bar, meets = screen(near)
    assert bar == pytest.approx(need * 1.5)
    assert not meets or measured >= bar  # cleared only at or above the bar
    assert len(shared_values(study, "latency_pairs")) == 2  # the parent's and this arch's
    # the proposals follow the bar, not the budget: archs the refined predictor puts below
    # it are left out, and so are those the screen is unlikely to clear, as wide as its
    # interval was (unless that leaves none: then the bar alone decides)
    refined = plan.latency.with_correction(fit_correction(shared_values(study, "latency_pairs")))
    speed = {a: refined.tokens_per_s(a, plan.profile) for a in plan.grid.archs()}
    (width,) = shared_values(study, "screen_widths")
    assert 0 <= width < 1  # how far below its median its interval would reach at 32 pairs
    clearing = bar / (1 - min(width, 0.05))  # at most 5% above the bar
    assert clearing == pytest.approx(clearing_speed(bar, [width])) and clearing >= bar
    limit = clearing if any(v >= clearing for v in speed.values()) else bar
    assert len(kept) == (3 if limit < clearing else 2)  # one more narrow() for the bar alone
    assert all(kept[-1](a) == (speed[a] >= limit) for a in speed)
    assert not all(map(kept[-1], speed))  # the bar is 1.5x the budget: some are left out


def test_the_proposals_limit_is_the_bar_over_one_minus_the_median_width_capped_at_5pct():
    assert clearing_speed(100.0, []) == 100.0  # before any screen: the bar itself
    assert clearing_speed(100.0, [0.02, 0.04, 0.01]) == pytest.approx(100.0 / 0.98)
    # one wide interval (a screen refused after a few pairs) does not rule out the band
    assert clearing_speed(100.0, [0.111]) == pytest.approx(100.0 / 0.95)


def test_workers_sharing_a_study_keep_each_others_measurements(tiny_dir):
    """Two screeners on one study (two workers on PostgreSQL): each adds its measurements
    to the study's lists and refits on the other's too; neither overwrites the other's."""
    plan = _plan(tiny_dir)
    study = optuna.create_study(directions=["maximize", "maximize"])
    first_said = []  # the first worker times the parent and says how far it drifted
    first = make_screener(plan, study, stage=first_said.append)
    (line,) = first_said
    then = study.user_attrs["screen_parent_tokens_per_s"]
    assert f"the parent timed now through hf-generate: {then:,.0f} tokens/s" in line
    assert f"({then / plan.parent_tokens_per_s - 1:+.1%})" in line
    said = []  # the second worker's stage lines: how many measurements each refit used
    second = make_screener(plan, study, narrow=lambda keep: 1, stage=said.append)  # joins
    # later: reuses the parent the first one timed
    assert len(shared_values(study, "latency_pairs")) == 1
    near, _ = _nearest_the_budget(plan, study)
    assert first(near) is not None and second(near) is not None  # both timed it
    assert len(shared_values(study, "latency_pairs")) == 3  # the parent's and one per worker
    assert len(shared_values(study, "screen_widths")) == 2
    assert "refitted on 3 measurements" in said[-1]  # the first worker's pair included
    assert not any("the parent timed now" in x for x in said)  # it reused the first's


def test_shared_values_read_an_older_studys_list_and_every_added_value_sorted():
    study = optuna.create_study(directions=["maximize", "maximize"])
    study.set_user_attr("latency_pairs", [[100.0, 90.0]])  # as a study kept them before
    assert add_shared(study, "latency_pairs", (300.0, 310.0)) == [(100.0, 90.0), (300.0, 310.0)]
    add_shared(study, "latency_pairs", (200.0, 190.0))
    assert shared_values(study, "latency_pairs") == [(100.0, 90.0), (200.0, 190.0),
                                                     (300.0, 310.0)]
    assert add_shared(study, "screen_widths", 0.03) == [0.03]  # one key's values only
    assert shared_values(study, "latency_pair") == []  # the key whole, not a prefix of it


def test_workers_adding_at_once_lose_none_of_each_others_measurements(add_at_once, tmp_path):
    """Two processes add 40 measurements each to one SQLite study at the same time (the
    list read, appended to and written back lost 48 of 120 this way)."""
    study = add_at_once(f"sqlite:///{tmp_path / 'study.db'}")
    values = shared_values(study, "latency_pairs")
    assert sorted(values) == sorted((float(w), float(i)) for w in range(2) for i in range(40))
