"""The trial objective with FixedTrial and a fake pipeline: constraint handling and attributes."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import FixedTrial

from plsearch.arch import ArchConfig, ArchTraits
from plsearch.config import Alignment
from plsearch.search.objective import make_objective
from plsearch.search.space import parse_space
from plsearch.search.testing import FakeLatency, FakePipeline

PARENT = ArchConfig(num_hidden_layers=4, hidden_size=64, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, intermediate_size=128,
                    vocab_size=256, tie_word_embeddings=False)
SPACE = parse_space({
    "axes": {"num_hidden_layers": {"min": 2, "max": 4}, "hidden_size": [32, 64],
             "intermediate_size": [64, 128]},
    "ladder": {"rungs": [{"kd_steps": 2, "limit": 2}, {"kd_steps": 5}]},
    "objective": {"tasks": {"plsearch_add": 1.0}},
})
SMALL = {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64}
LARGE = {"num_hidden_layers": 4, "hidden_size": 64, "intermediate_size": 128}


class CountingPipeline(FakePipeline):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.built = []

    def build(self, arch):
        self.built.append(arch)
        return super().build(arch)


def _objective(tmp_path, budget_fraction_of_small: float, **kwargs):
    latency = FakeLatency()
    grid = SPACE.resolve(PARENT, Alignment())
    small = latency.tokens_per_s(grid.arch(SMALL))
    pipeline = CountingPipeline(SPACE, latency, **kwargs)
    objective = make_objective(pipeline, grid, SPACE, budget_fraction_of_small * small,
                               tmp_path / "candidates")
    return objective, pipeline


def test_infeasible_arch_is_never_built_nor_scored(tmp_path):
    """A hand-queued arch that misses the budget: pruned, with no value for any sampler."""
    objective, pipeline = _objective(tmp_path, 0.99)  # only shapes near the smallest pass
    trial = FixedTrial(LARGE)
    with pytest.raises(optuna.TrialPruned, match="misses the budget"):
        objective(trial)
    assert pipeline.built == []
    attrs = trial.user_attrs
    assert attrs["feasible"] is False and attrs["constraint"] > 0
    assert attrs["rung"] == -1 and "accuracy" not in attrs and "objective" not in attrs
    assert attrs["params"] == ArchConfig(**{**PARENT.to_dict(), **LARGE}).num_params(ArchTraits())


def test_feasible_arch_climbs_every_rung_and_records_the_contract(tmp_path):
    objective, pipeline = _objective(tmp_path, 0.99)
    trial = FixedTrial(SMALL)
    accuracy, _ = objective(trial)
    assert len(pipeline.built) == 1
    attrs = trial.user_attrs
    assert attrs["feasible"] is True and attrs["constraint"] <= 0
    assert attrs["rung"] == 1 and attrs["rungs_total"] == 2
    assert attrs["kd_steps"] == 5 and attrs["kd_tokens"] == 5 * 64
    assert [row[0] for row in attrs["kd_curve"]] == [1, 2, 3, 4, 5]  # cumulative steps
    assert len(attrs["rung_scores"]) == 2 and attrs["rung_scores"][-1] == accuracy
    assert set(attrs["seconds"]) == {"build", "kd", "eval", "total"}
    assert attrs["scores"]["plsearch_add"]["acc"] == attrs["accuracy"]
    assert (tmp_path / "candidates" / "trial-0000" / "plsearch.json").exists()
    assert attrs["candidate_dir"].endswith("trial-0000")
    assert "fail_reason" not in attrs


def test_failing_candidate_records_its_reason(tmp_path):
    objective, _ = _objective(tmp_path, 0.5, fail_when=lambda arch: True)
    trial = FixedTrial(SMALL)
    with pytest.raises(RuntimeError, match="fake build failure"):
        objective(trial)
    assert trial.user_attrs["fail_reason"].startswith("RuntimeError: fake build failure")
    assert trial.user_attrs["feasible"] is True


def test_a_repeated_arch_reuses_the_evaluated_trial(tmp_path):
    latency = FakeLatency()
    grid = SPACE.resolve(PARENT, Alignment())
    pipeline = CountingPipeline(SPACE, latency)
    objective = make_objective(pipeline, grid, SPACE, 1.0, tmp_path / "candidates")
    study = optuna.create_study(directions=["maximize", "maximize"])
    study.enqueue_trial(SMALL)
    study.enqueue_trial(SMALL)
    study.optimize(objective, n_trials=2)
    first, second = study.trials
    assert len(pipeline.built) == 1
    assert second.user_attrs["duplicate_of"] == first.number
    assert second.values == first.values
    assert second.user_attrs["accuracy"] == first.user_attrs["accuracy"]


def test_an_arch_measured_below_the_budget_before_the_build_is_never_built(tmp_path):
    latency = FakeLatency()
    grid = SPACE.resolve(PARENT, Alignment())
    pipeline = CountingPipeline(SPACE, latency)
    need = 0.5 * latency.tokens_per_s(grid.arch(SMALL))  # predicted to meet it easily
    objective = make_objective(pipeline, grid, SPACE, need, tmp_path / "c",
                               screen=lambda arch: (need * 0.9, need, False))  # below
    trial = FixedTrial(SMALL)
    with pytest.raises(optuna.TrialPruned, match="measured below the budget"):
        objective(trial)
    assert pipeline.built == []
    assert trial.user_attrs["feasible"] is False
    assert trial.user_attrs["screened_tokens_per_s"] == pytest.approx(need * 0.9)
    # measured above the budget but not shown to meet it (its interval reaches below)
    objective = make_objective(pipeline, grid, SPACE, need, tmp_path / "d",
                               screen=lambda arch: (need * 1.01, need, False))
    trial = FixedTrial(SMALL)
    with pytest.raises(optuna.TrialPruned, match="measured below the budget"):
        objective(trial)
    assert pipeline.built == [] and trial.user_attrs["feasible"] is False


def test_once_the_time_is_up_the_trial_in_flight_climbs_no_further(tmp_path):
    latency = FakeLatency()
    grid = SPACE.resolve(PARENT, Alignment())
    pipeline = CountingPipeline(SPACE, latency)
    need = 0.99 * latency.tokens_per_s(grid.arch(SMALL))
    calls = []
    objective = make_objective(pipeline, grid, SPACE, need, tmp_path / "candidates",
                               stop=lambda: calls.append(1) or True)
    trial = FixedTrial(SMALL)
    value, _ = objective(trial)  # the same trial climbs both rungs without a stop
    attrs = trial.user_attrs
    assert calls and attrs["rung"] == 0 and attrs["kd_steps"] == 2
    assert attrs["rung_scores"] == [value] and "candidate_dir" not in attrs
    assert not (tmp_path / "candidates").exists() or not any((tmp_path / "candidates").iterdir())
