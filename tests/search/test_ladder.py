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
    # A fast-but-weak candidate is on the first front; (0.6, 90) scores three times higher
    # but is dominated by (0.7, 120): the fast one ranks ahead of it.
    others = [(0.9, 100.0), (0.8, 110.0), (0.7, 120.0), (0.6, 90.0)]
    fast = (0.2, 500.0)
    assert promotion_order([*others, fast]) == [0, 1, 2, 4, 3]
    assert is_promoted(fast, others, rate=0.8)  # four slots of five
    # By score alone it would come last and miss the four slots.
    by_score = sorted(range(5), key=lambda i: -[*others, fast][i][0])
    assert by_score.index(4) == 4
    assert is_promoted((0.2, 500.0), [(0.9, 100.0), (0.1, 90.0)], rate=0.67)


def test_ties_go_to_the_trial_scored_first():
    assert not is_promoted((0.5, 100.0), [(0.5, 100.0)], rate=0.5)
