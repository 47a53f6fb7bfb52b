"""The successive-halving ladder: promotion within speed bins on the chosen signal."""

from __future__ import annotations

import optuna
import pytest

from plsearch.search.ladder import competitors, is_promoted, promotion_order, signal_value
from plsearch.search.pareto import hypervolume_2d, pareto_mask, pareto_ranks
from plsearch.search.record import TrialRecord


def test_pareto_ranks_and_mask():
    points = [(0.9, 100.0), (0.5, 300.0), (0.4, 200.0), (0.95, 50.0), (0.3, 100.0)]
    assert pareto_ranks(points) == [0, 0, 1, 0, 2]
    assert pareto_mask(points) == [True, True, False, True, False]
    assert hypervolume_2d([(1, 3), (3, 1)], (0, 0)) == pytest.approx(5.0)


def test_first_trial_climbs_and_later_ones_compete():
    assert is_promoted(0.1, [], rate=0.34)
    assert not is_promoted(0.1, [0.5], rate=0.34)  # one slot among two: the better one
    assert is_promoted(0.6, [0.5], rate=0.34)
    others = [0.5, 0.4, 0.3, 0.2, 0.1]  # six trials at rate 1/3: two slots
    assert is_promoted(0.45, others, rate=1 / 3)
    assert not is_promoted(0.35, others, rate=1 / 3)


def test_promotion_order_is_by_value_then_by_who_came_first():
    assert promotion_order([0.2, 0.9, 0.5, 0.9]) == [1, 3, 2, 0]


def test_ties_go_to_the_trial_scored_first():
    assert not is_promoted(0.5, [0.5], rate=0.5)


def test_signals_read_the_record():
    record = TrialRecord(rung=0, build_kl=2.0,
                         rung_signals=({"objective": 0.4, "accuracy": 0.5, "kl": 1.5},))
    assert signal_value(record, 0, "kl") == -1.5  # lower KL is better
    assert signal_value(record, 0, "build_kl") == -2.0
    assert signal_value(record, 0, "accuracy") == 0.5
    assert signal_value(record, 0, "objective") == 0.4
    assert signal_value(record, 1, "kl") is None  # not scored at rung 1


def test_speed_does_not_carry_a_candidate_up():
    """A fast candidate with a poor signal is compared only with its own speed bin: a
    slower bin's worse candidates do not count, its own bin's better ones do."""
    study = optuna.create_study(directions=["maximize", "maximize"])
    for kl, speed_bin in ((0.5, 0), (0.6, 0), (0.4, 1)):
        record = TrialRecord(feasible=True, rung=0, speed_bin=speed_bin,
                             rung_signals=({"objective": 0.0, "accuracy": 0.0, "kl": kl},))
        study.add_trial(optuna.trial.create_trial(values=[0.0, 1.0],
                                                  user_attrs=record.to_attrs()))
    trials = study.get_trials()
    fast_bin = competitors(trials, 0, exclude_number=-1, signal="kl", speed_bin=1)
    assert fast_bin == [-0.4]
    # a fast candidate at KL 0.9 loses its bin's one slot to KL 0.4: being fast does not help
    assert not is_promoted(-0.9, fast_bin, rate=0.5)
    assert is_promoted(-0.3, fast_bin, rate=0.5)
    slow_bin = competitors(trials, 0, exclude_number=-1, signal="kl", speed_bin=0)
    assert sorted(slow_bin) == [-0.6, -0.5]
