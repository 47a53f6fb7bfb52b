"""Measured speed decides the front; export --best-for reads measured speeds."""

from __future__ import annotations

import optuna
import pytest

from plsearch.arch import ArchConfig
from plsearch.search.export import choose_trial
from plsearch.search.record import TrialRecord
from plsearch.search.verify import pareto_front, verify_front

ARCH = ArchConfig(num_hidden_layers=4, hidden_size=64, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, intermediate_size=128, vocab_size=256,
                  tie_word_embeddings=False)


def _study(tmp_path, points):
    study = optuna.create_study(directions=["maximize", "maximize"])
    study.set_user_attr("parent_tokens_per_s", 100.0)
    for i, (objective, predicted) in enumerate(points):
        folder = tmp_path / f"trial-{i}"
        folder.mkdir()
        record = TrialRecord(arch=ARCH.replace(num_hidden_layers=i + 1), feasible=True,
                             predicted_tokens_per_s=predicted, rung=1, rungs_total=2,
                             objective=objective, accuracy=objective, candidate_dir=str(folder))
        study.add_trial(optuna.trial.create_trial(values=[objective, predicted],
                                                  user_attrs=record.to_attrs()))
    return study


def test_a_candidate_that_joins_the_front_once_measured_is_measured_too(tmp_path):
    # predicted: 0 (0.6, 200) and 1 (0.5, 300) are the front; 2 (0.55, 190) is dominated by 0
    study = _study(tmp_path, [(0.6, 200.0), (0.5, 300.0), (0.55, 190.0)])
    measured = {"trial-0": 150.0, "trial-1": 290.0, "trial-2": 180.0, "parent": 120.0}
    calls = []

    def measure(folder: str) -> float:
        calls.append(folder.rsplit("/", 1)[-1])
        return measured[calls[-1]]

    (tmp_path / "parent").mkdir()
    summary = verify_front(study, profile=None, parent_dir=tmp_path / "parent", measure=measure,
                           pairs=2)
    # trial 0 runs at 150 measured: trial 2 (0.55 at 190 predicted) is no longer dominated,
    # so it is measured too (180), and stays on the front
    # the parent first (3 calls: the measured budget), then each candidate beside the
    # parent, one call each in turn (ABBA)
    beside = [name for c in ("trial-1", "trial-0", "trial-2") for name in ("parent", c, c, "parent")]
    assert calls == ["parent"] * 3 + beside
    assert [r.number for r in pareto_front(study)] == [1, 2, 0]  # fastest first
    assert summary["dominated_by_measurement"] == []


def test_a_candidate_dominated_by_measurement_leaves_the_front_and_is_marked(tmp_path):
    study = _study(tmp_path, [(0.6, 200.0), (0.5, 300.0)])  # both on the predicted front
    measured = {"trial-0": 250.0, "trial-1": 100.0, "parent": 120.0}
    summary = verify_front(study, profile=None, parent_dir=tmp_path / "parent",
                           measure=lambda folder: measured[folder.rsplit("/", 1)[-1]])
    records = [TrialRecord.from_trial(t, study.user_attrs) for t in study.get_trials()]
    assert [r.number for r in pareto_front(study)] == [0]
    assert records[1].dominated_by_measurement and not records[0].dominated_by_measurement
    assert summary["dominated_by_measurement"] == [1]
    from plsearch.search.record import trial_rows

    rows = {row["number"]: row for row in trial_rows(study)}
    assert rows[1]["dominated_by_measurement"] and rows[1]["measured_tokens_per_s"] == 100.0


def test_best_for_uses_measured_speed(tmp_path):
    study = _study(tmp_path, [(0.6, 160.0), (0.5, 300.0)])  # both predicted to meet 1.5x
    study.set_user_attr("parent_measured_tokens_per_s", 100.0)
    measured = {"trial-0": 140.0, "trial-1": 280.0, "parent": 100.0}
    verify_front(study, profile=None, parent_dir=tmp_path / "parent",
                 measure=lambda folder: measured[folder.rsplit("/", 1)[-1]])
    # trial 0 measured 1.4x the parent's measured speed: it misses 1.5x; trial 1 meets it
    assert choose_trial(study, best_for="1.5x").number == 1
    assert choose_trial(study, best_for="1.3x").number == 0


def test_a_candidate_measured_below_the_budget_leaves_the_front(tmp_path):
    # both predicted at or above 1.5x the parent's predicted 100 tokens/s
    study = _study(tmp_path, [(0.6, 160.0), (0.5, 300.0)])
    study.set_user_attr("budget", {"spec": "1.5x", "tokens_per_s": 150.0})
    measured = {"trial-0": 170.0, "trial-1": 280.0, "parent": 120.0}  # need 1.5 x 120 = 180
    summary = verify_front(study, profile=None, parent_dir=tmp_path / "parent",
                           measure=lambda folder: measured[folder.rsplit("/", 1)[-1]])
    # trial 0 is the most accurate but runs at 170 < 180 measured: it cannot be on the front
    assert [r.number for r in pareto_front(study)] == [1]
    assert summary["missed_budget_measured"] == [0]
    records = [TrialRecord.from_trial(t, study.user_attrs) for t in study.get_trials()]
    assert records[0].dominated_by_measurement and not records[1].dominated_by_measurement


def test_a_slow_spell_during_a_candidate_slows_the_parent_beside_it_too(tmp_path):
    # predicted at 1.6x and 3x the parent's 100; the parent runs 120 when the budget is set
    study = _study(tmp_path, [(0.6, 160.0), (0.5, 300.0)])
    study.set_user_attr("budget", {"spec": "1.5x", "tokens_per_s": 150.0})
    speed = {"trial-0": 200.0, "trial-1": 330.0, "parent": 120.0}  # 1.67x and 2.75x
    calls = []

    def measure(folder: str) -> float:
        name = folder.rsplit("/", 1)[-1]
        calls.append(name)
        # calls: the parent 3 times (the budget), then fastest first, each candidate beside
        # the parent: 3-6 trial 1, 7-10 trial 0, when the machine runs at half speed
        spell = 0.5 if 7 <= len(calls) - 1 <= 10 else 1.0
        return speed[name] * spell

    summary = verify_front(study, profile=None, parent_dir=tmp_path / "parent", measure=measure,
                           pairs=2)
    rows = {r["trial"]: r for r in summary["candidates"]}
    # timed alone trial 0 would read 100 < 180 (the budget); beside the parent it is 200
    assert rows[0]["measured_tokens_per_s"] == pytest.approx(200.0)
    assert summary["missed_budget_measured"] == []
    assert [r.number for r in pareto_front(study)] == [1, 0]
    assert calls[7:11] == ["parent", "trial-0", "trial-0", "parent"]


@pytest.mark.parametrize("speed, band", [(170.0, [0]), (200.0, [])])
def test_the_summary_names_front_candidates_measured_in_the_budget_band(tmp_path, caplog, speed,
                                                                       band):
    study = _study(tmp_path, [(0.6, 160.0), (0.5, 300.0)])
    study.set_user_attr("budget", {"spec": "1.5x", "tokens_per_s": 150.0})
    measured = {"trial-0": speed, "trial-1": 280.0, "parent": 100.0}  # need 150, band <= 172.5
    with caplog.at_level("WARNING", logger="plsearch.search.verify"):
        summary = verify_front(study, profile=None, parent_dir=tmp_path / "parent", pairs=3,
                               measure=lambda folder: measured[folder.rsplit("/", 1)[-1]])
    assert summary["front"] == [1, 0] and summary["band_on_front"] == band
    assert ("no front candidate was measured within 15% above the budget" in caplog.text) \
        == (not band)


def test_a_slow_start_does_not_scale_the_candidates_measured_speeds(tmp_path):
    # the parent's first 3 calls fall in a slow spell (60 instead of 120 tokens/s)
    study = _study(tmp_path, [(0.6, 160.0), (0.5, 300.0)])
    study.set_user_attr("budget", {"spec": "1.5x", "tokens_per_s": 150.0})
    speed = {"trial-0": 200.0, "trial-1": 330.0, "parent": 120.0}
    calls = []

    def measure(folder: str) -> float:
        name = folder.rsplit("/", 1)[-1]
        calls.append(name)
        return speed[name] * (0.5 if len(calls) <= 3 else 1.0)

    summary = verify_front(study, profile=None, parent_dir=tmp_path / "parent", measure=measure,
                           pairs=3)
    # the parent's speed is the median of all its 9 calls; every candidate is re-recorded
    # on that scale, so the errors against the predictions are not inflated by the spell
    assert study.user_attrs["parent_measured_tokens_per_s"] == pytest.approx(120.0)
    rows = {r["trial"]: r["measured_tokens_per_s"] for r in summary["candidates"]}
    assert rows == {0: pytest.approx(200.0), 1: pytest.approx(330.0)}
    assert summary["parent"]["measured_tokens_per_s"] == pytest.approx(120.0)


@pytest.mark.parametrize("speed, pairs", [(155.0, 6), (240.0, 3)])
def test_a_speed_up_close_to_the_budget_is_timed_over_twice_the_pairs(tmp_path, speed, pairs):
    study = _study(tmp_path, [(0.6, 160.0)])
    study.set_user_attr("budget", {"spec": "1.5x", "tokens_per_s": 150.0})
    calls = []

    def measure(folder: str) -> float:
        name = folder.rsplit("/", 1)[-1]
        calls.append(name)
        return {"trial-0": speed, "parent": 100.0}[name]

    summary = verify_front(study, profile=None, parent_dir=tmp_path / "parent", measure=measure,
                           pairs=3)
    # 1.55x is within 5% of the 1.5x budget: 3 more pairs; 2.4x is far from 1.5x and 1.725x
    assert calls.count("trial-0") == pairs and calls.count("parent") == 3 + pairs
    assert summary["candidates"][0]["measured_tokens_per_s"] == pytest.approx(speed)


def test_a_slow_start_below_the_budget_is_timed_on_while_its_interval_reaches_it(tmp_path):
    # its first 10 pairs read 1.39x, with the interval reaching 1.55x (a slow spell); the
    # rest 1.65x: timed on until the interval clears 1.5x, and it stays on the front
    study = _study(tmp_path, [(0.6, 160.0)])
    study.set_user_attr("budget", {"spec": "1.5x", "tokens_per_s": 150.0})
    slow = [130.0, 155.0, 135.0, 152.0, 138.0, 158.0, 140.0, 132.0, 142.0, 136.0]
    calls = {"trial-0": 0, "parent": 0}

    def measure(folder: str) -> float:
        name = folder.rsplit("/", 1)[-1]
        calls[name] += 1
        if name == "trial-0":
            return slow[calls[name] - 1] if calls[name] <= len(slow) else 165.0
        return 100.0

    summary = verify_front(study, profile=None, parent_dir=tmp_path / "parent",
                           measure=measure, pairs=10)
    record = TrialRecord.from_trial(study.get_trials()[0], study.user_attrs)
    assert 10 < calls["trial-0"] <= 80 and record.measured_speedup_low >= 1.5
    assert summary["front"] == [0] and summary["missed_budget_measured"] == []


def test_a_speed_up_whose_interval_straddles_the_budget_is_timed_longer_and_then_left_off(
        tmp_path):
    from plsearch.search.verify import VERIFY_PAIRS_FACTOR

    # trial 0: the most accurate, its speed-ups spread 1.35-1.70x around a median above
    # 1.5x; trial 1: steady at 1.52x
    study = _study(tmp_path, [(0.6, 160.0), (0.5, 155.0)])
    study.set_user_attr("budget", {"spec": "1.5x", "tokens_per_s": 150.0})
    spread = [140.0, 150.0, 145.0, 160.0, 155.0, 148.0, 152.0, 170.0, 135.0, 158.0, 153.0]
    calls = {"trial-0": 0, "trial-1": 0, "parent": 0}

    def measure(folder: str) -> float:
        name = folder.rsplit("/", 1)[-1]
        calls[name] += 1
        if name == "trial-0":
            return spread[calls[name] % len(spread)]
        return {"trial-1": 152.0, "parent": 100.0}[name]

    summary = verify_front(study, profile=None, parent_dir=tmp_path / "parent",
                           measure=measure, pairs=5)
    records = {r.number: r for r in (TrialRecord.from_trial(t, study.user_attrs)
                                     for t in study.get_trials())}
    noisy, steady = records[0], records[1]
    assert calls["trial-0"] == VERIFY_PAIRS_FACTOR * 5  # timed as long as allowed
    assert noisy.measured_tokens_per_s >= 150.0 > 100.0 * noisy.measured_speedup_low
    assert summary["missed_budget_measured"] == [0] and noisy.dominated_by_measurement
    assert steady.measured_speedup_low == pytest.approx(1.52) and calls["trial-1"] == 10
    assert [r.number for r in pareto_front(study)] == [1]
    assert choose_trial(study, best_for="1.5x").number == 1  # shown to meet it
    assert choose_trial(study, best_for="1.3x").number == 0  # its whole interval is above
    from plsearch.search.record import trial_rows

    rows = {row["number"]: row for row in trial_rows(study)}
    assert rows[0]["measured_speedup_ci_low"] == pytest.approx(noisy.measured_speedup_low)
