"""Only feasible archs are proposed, built and scored; the budget band comes first."""

from __future__ import annotations

import optuna
import pytest

from plsearch.arch import ArchConfig
from plsearch.config import Alignment
from plsearch.search.objective import make_objective
from plsearch.search.proposals import FeasibleSampler, arch_params, feasible_set
from plsearch.search.space import parse_space
from plsearch.search.study import make_sampler
from plsearch.search.testing import FakeLatency, FakePipeline

PARENT = ArchConfig(num_hidden_layers=6, hidden_size=128, num_attention_heads=8,
                    num_key_value_heads=2, head_dim=16, intermediate_size=512,
                    vocab_size=256, tie_word_embeddings=False)
SPACE = parse_space({
    "axes": {"num_hidden_layers": {"min": 2, "max": 6}, "hidden_size": [64, 96, 128],
             "num_key_value_heads": [1, 2], "num_attention_heads": [2, 4, 8],
             "intermediate_size": {"min": 128, "max": 512, "step": 128}},
    "ladder": {"rungs": [{"kd_steps": 1, "limit": 2}, {"kd_steps": 2}], "band_first": 2},
    "objective": {"tasks": {"plsearch_add": 1.0}},
})


class CountingPipeline(FakePipeline):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.built, self.scored = [], []

    def build(self, arch):
        self.built.append(arch)
        return super().build(arch)

    def score(self, model, rung, on_task=None):
        self.scored.append(model["arch"])
        return super().score(model, rung, on_task)


def _setup(share: float = 0.3, pipeline_class=None):
    """Grid, latency, budget: the fastest ``share`` of the grid meets the budget."""
    latency = FakeLatency()
    grid = SPACE.resolve(PARENT, Alignment())
    speeds = sorted(latency.tokens_per_s(a) for a in grid.archs())
    need = speeds[int(len(speeds) * (1 - share))]
    pipeline = (pipeline_class or CountingPipeline)(SPACE, latency)
    feasible = feasible_set(grid, pipeline.predict, need, pipeline.num_params)
    return grid, pipeline, need, feasible


def test_feasible_set_is_counted_and_banded():
    grid, pipeline, need, feasible = _setup()
    every = list(grid.archs())
    assert feasible.enumerated and feasible.grid_size == len(every)
    assert feasible.count == sum(pipeline.predict(a) >= need for a in every) > 0
    band = feasible.band()
    assert band and all(need <= pipeline.predict(a) <= 1.15 * need for a in band)
    assert [pipeline.num_params(a) for a in band] == sorted(
        (pipeline.num_params(a) for a in band), reverse=True)
    assert "meet the budget" in feasible.describe()
    edges = feasible.bin_edges(3)
    assert len(edges) == 2 and feasible.speed_bin(need, 3) == 0


@pytest.mark.parametrize("sampler", ["gp", "tpe", "nsga2", "random"])
def test_no_infeasible_arch_is_ever_built_or_scored(sampler, tmp_path):
    grid, pipeline, need, feasible = _setup()
    first = tuple(feasible.band()[:2])
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=FeasibleSampler(
        make_sampler(sampler, 0, 14), grid, feasible, seed=0, first=first))
    objective = make_objective(pipeline, grid, SPACE, need, tmp_path / "c", feasible=feasible)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=14)
    trials = study.get_trials()
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert pipeline.built and all(pipeline.predict(a) >= need for a in pipeline.built)
    assert all(pipeline.predict(a) >= need for a in pipeline.scored)
    for t in trials:  # the params Optuna shows (and its sampler learns from) = the arch built
        assert t.user_attrs["feasible"] is True
        assert t.params == arch_params(grid, ArchConfig.from_dict(t.user_attrs["arch"]))
    assert pipeline.built[:2] == list(first)  # the budget band's largest come first
    assert len(set(pipeline.built)) == len(pipeline.built)  # nothing proposed twice


def test_a_band_arch_refused_by_the_timing_check_hands_its_place_to_the_next(tmp_path):
    grid, pipeline, need, feasible = _setup()
    band = tuple(feasible.band())
    assert len(band) >= 4
    refused = set(band[:2])  # measured below the budget before their build

    def screen(arch):
        return (0.5 * need, need, False) if arch in refused else (2.0 * need, need, True)

    sampler = FeasibleSampler(make_sampler("tpe", 0, 8), grid, feasible, seed=0, first=band,
                              first_count=2)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    objective = make_objective(pipeline, grid, SPACE, need, tmp_path / "c", feasible=feasible,
                               screen=screen)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=6)
    tried = [ArchConfig.from_dict(t.user_attrs["arch"]) for t in study.get_trials()]
    assert tried[:4] == list(band[:4])  # two refused, then the next two of the band
    assert pipeline.built[:2] == list(band[2:4])  # the largest band archs that pass, built first
    assert sampler._first_untried(sampler._records(study)) is None  # two band archs built: the sampler's turn


def test_random_draws_spread_over_the_speed_bins_fast_end_first(tmp_path):
    grid, pipeline, need, feasible = _setup(share=0.6)
    band = tuple(feasible.band())
    assert {feasible.speed_bin(pipeline.predict(a), 3) for a in band[:2]} == {0}
    sampler = FeasibleSampler(make_sampler("random", 0, 8), grid, feasible, seed=0,
                              first=band, first_count=2, speed_bins=3)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    objective = make_objective(pipeline, grid, SPACE, need, tmp_path / "c", feasible=feasible)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=8)
    bins = [t.user_attrs["speed_bin"] for t in study.get_trials()]
    for arch, speed_bin in zip(pipeline.built, bins):  # the bin the ladder compares within
        assert feasible.speed_bin(pipeline.predict(arch), 3) == speed_bin
    # the band fills the slowest bin; then the fewest-tried bin, the faster one on a tie
    assert bins == [0, 0, 2, 1, 2, 1, 2, 1]


def test_the_spread_archs_come_after_the_band_and_before_the_sampler(tmp_path):
    grid, pipeline, need, feasible = _setup(share=0.6)
    band = tuple(feasible.band())
    fast = sorted(feasible.archs, key=pipeline.predict)[-3:]
    sampler = FeasibleSampler(make_sampler("random", 0, 8), grid, feasible, seed=0,
                              first=band, first_count=2, speed_bins=3)
    sampler.propose_then([fast[2], fast[0], fast[1]])
    assert sampler.narrow(lambda arch: arch != fast[0]) == feasible.count - 1  # ruled out
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    objective = make_objective(pipeline, grid, SPACE, need, tmp_path / "c", feasible=feasible)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=5)
    assert pipeline.built[:4] == [band[0], band[1], fast[2], fast[1]]
    assert pipeline.built[4] not in set(band[:2]) | {fast[0], fast[1], fast[2]}
    assert sampler._queued_untried(sampler._records(study)) is None


def test_narrow_leaves_out_what_the_refined_predictor_rules_out(tmp_path):
    grid, pipeline, need, feasible = _setup()
    band = tuple(feasible.band())
    sampler = FeasibleSampler(make_sampler("random", 0, 8), grid, feasible, seed=0,
                              first=band, first_count=1)
    fast = {a for a in feasible.archs if pipeline.predict(a) >= 1.3 * need}
    assert 0 < len(fast) < feasible.count and band[0] not in fast
    assert sampler.narrow(lambda arch: arch in fast) == len(fast) and not sampler.exhausted
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    objective = make_objective(pipeline, grid, SPACE, need, tmp_path / "c", feasible=feasible)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=5)
    assert pipeline.built and set(pipeline.built) <= fast  # the band's slow archs included
    # Nothing left: the proposals stay as they were and the search is told to stop.
    assert sampler.narrow(lambda arch: False) == 0 and sampler.exhausted
    assert set(sampler.feasible.archs) == fast
    assert sampler.narrow(lambda arch: True) == feasible.count and not sampler.exhausted


def test_the_search_states_the_feasible_count(tiny_dir, tmp_path):
    from plsearch.search.run import SearchOptions, run_search

    stages = []
    opts = SearchOptions(budget="1.3x", model=str(tiny_dir["model"]),
                         space=str(tiny_dir["space"]), device_profile=str(tiny_dir["profile"]),
                         trials=2, out=str(tmp_path / "run"), study="s", verify=False)
    built = []

    def factory(model_dir, space, profile, latency, *, seed=0):
        pipeline = CountingPipeline(space, latency, profile)
        built.append(pipeline)
        return pipeline

    summary = run_search(opts, on_stage=stages.append, latency=FakeLatency(),
                         pipeline_factory=factory)
    assert any("archs meet the budget" in s for s in stages)
    assert summary.infeasible == 0
    assert all(FakeLatency().tokens_per_s(a) >= summary.budget_tokens_per_s
               for a in built[0].built)
