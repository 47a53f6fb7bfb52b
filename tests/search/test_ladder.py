"""The successive-halving ladder: Pareto ranking and promotion."""

from __future__ import annotations

from plsearch.search.ladder import is_promoted, pareto_ranks, promotion_order


def test_pareto_ranks():
    points = [(0.9, 100.0), (0.5, 300.0), (0.4, 200.0), (0.95, 50.0), (0.3, 100.0)]
    assert pareto_ranks(points) == [0, 0, 1, 0, 2]


def test_first_trial_climbs_and_later_ones_compete():
    assert is_promoted((0.1, 100.0), [], rate=0.34)
    # one slot among two: the better (dominating) one
    assert not is_promoted((0.1, 100.0), [(0.5, 200.0)], rate=0.34)
    assert is_promoted((0.6, 200.0), [(0.5, 200.0)], rate=0.34)
    # six trials at rate 1/3: two slots
    others = [(0.5, 100.0), (0.4, 100.0), (0.3, 100.0), (0.2, 100.0), (0.1, 100.0)]
    assert is_promoted((0.45, 100.0), others, rate=1 / 3)
    assert not is_promoted((0.35, 100.0), others, rate=1 / 3)


def test_fast_trade_offs_climb_too():
    # accurate-but-slow and fast-but-weaker are both on the first front
    others = [(0.9, 100.0), (0.8, 110.0), (0.7, 120.0)]
    order = promotion_order(others + [(0.2, 500.0)])
    assert order.index(3) < 4  # on front 0, ahead of nothing it dominates
    assert is_promoted((0.2, 500.0), [(0.9, 100.0), (0.1, 90.0)], rate=0.67)


def test_ties_go_to_the_trial_scored_first():
    assert not is_promoted((0.5, 100.0), [(0.5, 100.0)], rate=0.5)
