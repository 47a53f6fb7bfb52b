"""The trial record: one frozen dataclass, to and from Optuna attributes."""

from __future__ import annotations

import dataclasses

import optuna

from plsearch.arch import ArchConfig
from plsearch.search.record import DOMINATED_PREFIX, TrialRecord
from plsearch.search.scoring import objective_value, separated, weighted_accuracy
from plsearch.search.study import MEASURED_PREFIX

ARCH = ArchConfig(num_hidden_layers=4, hidden_size=64, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, intermediate_size=128, vocab_size=256,
                  tie_word_embeddings=False)


def _full_record() -> TrialRecord:
    return TrialRecord(
        arch=ARCH, params=123_456, recipe="pangu", predicted_tokens_per_s=812.5, feasible=True,
        constraint=-12.5, speed_bin=1, rung=1, rungs_total=2, rung_scores=(0.31, 0.42),
        rung_signals=({"objective": 0.31, "accuracy": 0.35, "kl": 0.8},
                      {"objective": 0.42, "accuracy": 0.45, "kl": 0.6}),
        build_kl=1.9, kd_steps=96, kd_tokens=49152, kd_curve=((1, 512, 2.0, 3.0, 1e-3),),
        scores={"plsearch_add": {"acc": 0.45, "acc_stderr": 0.03, "samples": 64}},
        accuracy=0.45, accuracy_stderr=0.03, objective=0.42, objective_stderr=0.031, kl=0.6,
        kl_stderr=0.02, perplexity=9.5, seconds={"build": 1.0, "kd": 5.0, "eval": 2.0,
                                                   "total": 8.0},
        candidate_dir="/tmp/x")


def test_record_round_trips_through_optuna_storage():
    record = _full_record()
    study = optuna.create_study(directions=["maximize", "maximize"])
    study.add_trial(optuna.trial.create_trial(values=[0.42, 812.5],
                                              user_attrs=record.to_attrs()))
    study.set_user_attr(f"{MEASURED_PREFIX}0", 700.0)
    study.set_user_attr(f"{DOMINATED_PREFIX}0", True)
    back = TrialRecord.from_trial(study.get_trials()[0], study.user_attrs)
    assert back.number == 0 and back.state == "COMPLETE" and back.values == (0.42, 812.5)
    assert back.measured_tokens_per_s == 700.0 and back.dominated_by_measurement
    assert back.tokens_per_s == 700.0  # measured decides where it exists
    own = dataclasses.replace(back, number=None, state=None, values=None,
                              measured_tokens_per_s=None, dominated_by_measurement=False)
    assert own == record
    assert back.fully_evaluated


def test_a_record_of_an_unbuilt_trial_has_no_scores():
    record = TrialRecord(arch=ARCH, predicted_tokens_per_s=10.0, feasible=False)
    attrs = record.to_attrs()
    assert "accuracy" not in attrs and "objective" not in attrs and attrs["rung"] == -1
    assert TrialRecord.from_attrs(attrs) == record
    assert not record.built and record.objective_interval is None


def test_intervals_propagate_through_the_weights():
    scores = {"a": {"acc": 0.5, "samples": 101}, "b": {"acc": 0.8, "acc_stderr": 0.04}}
    value, se = weighted_accuracy(scores, {"a": 1.0, "b": 3.0}, "acc")
    assert value == 0.5 / 4 + 0.8 * 3 / 4
    binomial = (0.5 * 0.5 / 100) ** 0.5  # a: no stderr given, 101 items
    assert abs(se - ((binomial / 4) ** 2 + (0.04 * 3 / 4) ** 2) ** 0.5) < 1e-12
    total, total_se = objective_value(value, se, kl=0.5, kl_se=0.1, kl_weight=0.1)
    assert abs(total - (value - 0.05)) < 1e-12
    assert abs(total_se - (se ** 2 + 0.01 ** 2) ** 0.5) < 1e-12
    assert separated(0.6, 0.01, 0.5, 0.01) and not separated(0.6, 0.04, 0.5, 0.04)
